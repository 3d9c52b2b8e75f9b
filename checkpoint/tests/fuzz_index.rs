//! Random damage to `.index` files must give `Ok` or `Err`, never a panic, and never a large
//! allocation. A counting allocator records the largest single allocation made while parsing and
//! reading.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use lucid_checkpoint::ModelFile;
use lucid_checkpoint::tf::Checkpoint;
use lucid_testkit::fuzz::{Rng, damage};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// No allocation may exceed this (the largest fixture shard is well under 1 MB).
const MAX_ALLOC: usize = 8 << 20;

/// Opens `index` as the index of the real seed-02 checkpoint (two shards) and reads every
/// tensor it lists; every outcome but a panic is fine.
fn exercise(prefix: &std::path::Path, index: &[u8]) -> usize {
    let Ok(ckpt) = Checkpoint::from_index_bytes(prefix, index) else {
        return 0;
    };
    let names: Vec<String> = ckpt.entries().map(|(n, _)| n.to_owned()).collect();
    let mut ok = 0;
    for name in names {
        let _ = ckpt.info(&name);
        if ckpt.read_f32(&name).is_ok() {
            ok += 1;
        }
        let _ = ckpt.read_bytes(&name);
    }
    ok
}

/// Damage for a protobuf index: a run of 0xff, whose varints then never end.
// a `Damage`, whose other kinds grow or shrink the bytes, so the `Vec`
#[allow(clippy::ptr_arg)]
fn huge_varints(rng: &mut Rng, bytes: &mut Vec<u8>, at: usize) {
    let end = (at + 1 + rng.below(10)).min(bytes.len());
    bytes[at..end].fill(0xff);
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    damage(rng, original, &[huge_varints])
}

#[test]
fn raw_index_mutations_never_panic() {
    let prefix = common::prefix("training_seed_02");
    let original =
        std::fs::read(common::with_suffix(&prefix, ".index")).expect("read fixture index");
    assert_eq!(
        exercise(&prefix, &original),
        33 - 1,
        "all but global_step read"
    );
    let mut rng = Rng::new(0x5eed_0001);
    LARGEST.store(0, Ordering::Relaxed);
    for _ in 0..3000 {
        let bytes = mutate(&mut rng, &original);
        exercise(&prefix, &bytes);
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= MAX_ALLOC, "largest allocation {largest} bytes");
}

#[test]
fn crc_valid_record_mutations_never_panic() {
    // Mutate the protobuf records themselves and rebuild a table with valid CRCs, so the damage
    // reaches the entry decoder and the data reader instead of stopping at a block CRC.
    let prefix = common::prefix("training_seed_02");
    let ckpt = match ModelFile::open(&prefix).expect("fixture opens") {
        ModelFile::Tf(c) => c,
        ModelFile::Safetensors(_) => panic!("expected a TF checkpoint"),
    };
    let records = common::records(&ckpt);
    let mut rng = Rng::new(0x5eed_0002);
    LARGEST.store(0, Ordering::Relaxed);
    let mut opened = 0;
    for _ in 0..3000 {
        let mut recs = records.clone();
        let i = rng.below(recs.len());
        recs[i].1 = mutate(&mut rng, &recs[i].1);
        if rng.below(8) == 0 {
            let j = rng.below(recs.len());
            recs[j].0 = mutate(&mut rng, &recs[j].0);
            recs.sort();
            recs.dedup_by(|a, b| a.0 == b.0);
        }
        let table = common::build_table(&recs, 1 + rng.below(8), 0);
        if Checkpoint::from_index_bytes(&prefix, &table).is_ok() {
            opened += 1;
        }
        exercise(&prefix, &table);
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= MAX_ALLOC, "largest allocation {largest} bytes");
    // The mutations must mostly get past the table layer to test anything.
    assert!(opened > 300, "only {opened} mutated indexes opened");
}
