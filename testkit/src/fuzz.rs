//! The fuzz tests' random source and byte-level damage, shared so that every decoder is attacked the
//! same way (the checkpoint index, task messages): one SplitMix64 generator, so a seed names one
//! sequence of inputs on every machine and no crate is needed, and one set of generic byte mutations,
//! which each test extends with the damage its format is weak to.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014):
/// tiny, seedable, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    /// The generator whose sequence `seed` names.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A format-specific mutation of `bytes` at index `at` (< `bytes.len()`).
pub type Damage = fn(&mut Rng, &mut Vec<u8>, usize);

/// `original` with one to four mutations, each at a random place: a bit flip, a byte replaced, the
/// rest cut off, up to 16 bytes deleted, up to 16 random bytes inserted, or one of `extra`, all
/// equally likely.
pub fn damage(rng: &mut Rng, original: &[u8], extra: &[Damage]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(5 + extra.len()) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = rng.byte(),
            2 => bytes.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.byte()).collect();
                bytes.splice(at..at, junk);
            }
            other => extra[other - 5](rng, &mut bytes, at),
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of SplitMix64 seeded with 0, from the reference implementation
    /// (prng.di.unimi.it/splitmix64.c).
    #[test]
    fn rng_matches_the_splitmix64_reference() {
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn damage_changes_the_bytes_and_calls_the_extra_mutations() {
        #[allow(clippy::ptr_arg)] // a `Damage`
        fn mark(_: &mut Rng, bytes: &mut Vec<u8>, at: usize) {
            bytes[at] = b'!';
        }
        let original = vec![b'a'; 64];
        let mut rng = Rng::new(7);
        let damaged: Vec<Vec<u8>> = (0..200)
            .map(|_| damage(&mut rng, &original, &[mark]))
            .collect();
        assert!(damaged.iter().filter(|bytes| **bytes != original).count() > 150);
        assert!(
            damaged.iter().any(|bytes| bytes.contains(&b'!')),
            "extra never used"
        );
        assert!(
            damaged.iter().any(|bytes| bytes.len() < 64),
            "never shortened"
        );
        assert!(
            damaged.iter().any(|bytes| bytes.len() > 64),
            "never lengthened"
        );
    }
}
