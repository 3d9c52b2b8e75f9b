//! Property tests of [`TaskMessage::decode`]: whatever a queue holds, decoding gives `Ok` or `Err`,
//! never a panic and never a large allocation, and every `Ok` is a task this crate could have written.
//!
//! Inputs come from a fixed-seed generator, so a failure reproduces: random bytes, mutations and
//! truncations of a valid body, wrong types and huge numbers per field, invalid identifiers, deep
//! nesting, long strings and oversize bodies.
//!
//! A counting allocator records, per thread and only while [`decode`] runs, the largest single
//! allocation and the peak of live bytes; tests run on parallel threads, so their own buffers (which
//! may be far larger than the limit) are never counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use lucid_proto::ids::validate_identifier;
use lucid_proto::spec::RenderSettings;
use lucid_proto::task::{TASK_SCHEMA_VERSION, task_id};
use lucid_proto::{DecodeError, Document, ModelLocation, TaskMessage};
use lucid_testkit::fuzz::{Rng, damage};
use serde_json::{Value, json};

// ------------------------------------------------------------------------------ counting allocator

thread_local! {
    /// Whether this thread is inside a measured [`decode`] call.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Largest single allocation (or reallocation target) of the current measurement.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed since the measurement started (may go negative).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Highest value of `LIVE` during the measurement.
    static PEAK_LIVE: Cell<isize> = const { Cell::new(0) };
}

/// Runs `f` on the thread's measurement state unless the thread is not measuring (or is exiting).
fn if_measuring(f: impl FnOnce()) {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        f();
    }
}

fn record_alloc(size: usize) {
    if_measuring(|| {
        LARGEST.set(LARGEST.get().max(size));
        let live = LIVE.get() + size as isize;
        LIVE.set(live);
        PEAK_LIVE.set(PEAK_LIVE.get().max(live));
    });
}

fn record_free(size: usize) {
    if_measuring(|| LIVE.set(LIVE.get() - size as isize));
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record_free(layout.size());
        // SAFETY: `ptr` was returned by `System` for this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record_free(layout.size());
        record_alloc(new_size);
        // SAFETY: `ptr` was returned by `System` for `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What one measured decode allocated.
#[derive(Debug, Clone, Copy)]
struct Allocs {
    largest: usize,
    peak_live: usize,
}

/// Decodes `body` with limit `max`, catching a panic and measuring this thread's allocations.
fn measured_decode(
    body: &[u8],
    max: usize,
) -> (
    std::thread::Result<Result<TaskMessage, DecodeError>>,
    Allocs,
) {
    LARGEST.set(0);
    LIVE.set(0);
    PEAK_LIVE.set(0);
    MEASURING.set(true);
    let result = catch_unwind(AssertUnwindSafe(|| TaskMessage::decode(body, max)));
    MEASURING.set(false);
    let allocs = Allocs {
        largest: LARGEST.get(),
        peak_live: usize::try_from(PEAK_LIVE.get()).unwrap_or(0),
    };
    (result, allocs)
}

// ------------------------------------------------------------------------------ generator

/// The default `queue.max_message_bytes`.
const MAX: usize = 65_536;

/// The allocation bound the brief and the checkpoint fuzz tests use: 4 × limit + 1 MiB.
fn alloc_bound(max: usize) -> usize {
    4 * max + (1 << 20)
}

fn sample(rng: &mut Rng) -> TaskMessage {
    let settings = RenderSettings {
        steps: 1 + rng.below(2048) as u32,
        size: 16 + rng.below(1024) as u32,
        run_seed: rng.next_u64(),
        lr: short_decimal_lr(rng),
        ..RenderSettings::default()
    };
    let model = match rng.below(3) {
        0 => "s3://models/training_seed_01".to_owned(),
        1 => "/data/checkpoints/seed ünïcode/ckpt".to_owned(),
        _ => "s3://bucket-1.x".to_owned(),
    };
    TaskMessage::new(
        valid_identifier(rng).parse().expect("run id"),
        valid_identifier(rng).parse().expect("seed id"),
        valid_identifier(rng).parse().expect("layer"),
        rng.next_u64() as u32 >> rng.below(32),
        settings,
        ModelLocation::parse(&model).expect("model location"),
    )
}

/// A learning rate with at most 7 significant digits, like the ones specs are written with
/// (`0.05`, `0.0125`); these survive a JSON round trip exactly, and so do arbitrary ones since
/// serde_json's `float_roundtrip` (see [`arbitrary_lr_round_trips_exactly`]).
fn short_decimal_lr(rng: &mut Rng) -> f64 {
    let digits = 1 + rng.below(9_999_999) as u32;
    let scale = 10f64.powi(3 + rng.below(6) as i32);
    (f64::from(digits) / scale).min(10.0)
}

/// A random identifier that passes validation (1 to 64 of `[A-Za-z0-9._-]`, no leading `.`).
fn valid_identifier(rng: &mut Rng) -> String {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
    let len = if rng.below(8) == 0 {
        64
    } else {
        1 + rng.below(20)
    };
    let mut s = String::with_capacity(len);
    s.push(*rng.pick(FIRST) as char);
    for _ in 1..len {
        s.push(*rng.pick(REST) as char);
    }
    s
}

/// Identifiers that break the rules in different ways.
fn invalid_identifiers() -> Vec<String> {
    let mut bad: Vec<String> = [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "/",
        "../../etc",
        "a\\b",
        "a b",
        "é",
        "a\u{0}b",
        "a\nb",
        "\u{1b}[31m",
        "x\u{7f}",
        "a:b",
        "a*b",
        "\u{202e}abc",
        "a%2fb",
        "\u{feff}x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    bad.push("a".repeat(65));
    bad.push("é".repeat(33));
    bad.push("a".repeat(10_000));
    bad
}

/// Values of every JSON type, and numbers that do not fit the fields' Rust types.
fn wrong_values(rng: &mut Rng) -> Value {
    let huge_int: Value =
        serde_json::from_str("184467440737095516160000000000").expect("parses as a float");
    let choices = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(-9_223_372_036_854_775_808_i64),
        json!(u64::MAX),
        json!(4_294_967_296_u64),
        json!(1.5),
        json!(1e300),
        json!(-0.0),
        json!(f64::MIN_POSITIVE),
        huge_int,
        json!(""),
        json!("1"),
        json!("s3://"),
        json!("s3://UPPER/x"),
        json!("s3://b/a//c"),
        json!("http://example.com/x"),
        json!([]),
        json!([1, 2, 3]),
        json!({}),
        json!({"steps": 1}),
        json!("x".repeat(1000)),
    ];
    rng.pick(&choices).clone()
}

/// Field paths of a task body, nested ones as `settings.x`.
const FIELDS: &[&str] = &[
    "schema_version",
    "task_id",
    "run_id",
    "seed",
    "layer",
    "channel",
    "settings",
    "model",
    "settings.steps",
    "settings.size",
    "settings.objective",
    "settings.run_seed",
    "settings.param",
    "settings.decorrelate",
    "settings.transforms",
    "settings.lr",
    "settings.precision",
];

fn field_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.')
        .try_fold(v, |v, key| v.as_object_mut()?.get_mut(key))
}

/// Recomputes `task_id` from the (possibly changed) identifier fields, so that a body gets past the
/// id check to whatever else is wrong with it.
fn fix_task_id(v: &mut Value) {
    let part = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if let (Some(run), Some(seed), Some(layer), Some(channel)) = (
        part("run_id"),
        part("seed"),
        part("layer"),
        v.get("channel").and_then(Value::as_u64),
    ) {
        v["task_id"] = format!("{run}/{seed}/{layer}/{channel:04}").into();
    }
}

/// One structural change of a valid body's JSON.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    let field = *rng.pick(FIELDS);
    match rng.below(6) {
        0 => {
            if let Some(slot) = field_mut(v, field) {
                *slot = wrong_values(rng);
            }
        }
        1 => {
            let (parent, key) = field.rsplit_once('.').unwrap_or(("", field));
            let parent = if parent.is_empty() {
                Some(&mut *v)
            } else {
                field_mut(v, parent)
            };
            if let Some(Value::Object(map)) = parent {
                map.remove(key);
            }
        }
        2 => {
            v["unknown_field"] = wrong_values(rng);
        }
        3 => {
            let key = *rng.pick(&["run_id", "seed", "layer"]);
            v[key] = rng.pick(&invalid_identifiers()).clone().into();
            fix_task_id(v);
        }
        4 => {
            let key = *rng.pick(&["run_id", "seed", "layer"]);
            v[key] = valid_identifier(rng).into();
            if rng.below(4) != 0 {
                fix_task_id(v);
            }
        }
        _ => {
            v["schema_version"] = rng
                .pick(&[
                    json!(0),
                    json!(2),
                    json!(TASK_SCHEMA_VERSION),
                    json!(u64::MAX),
                    json!(1.0),
                    json!(-1),
                    json!("1"),
                ])
                .clone();
        }
    }
}

/// JSON tokens and bytes that are not UTF-8, inserted by [`insert_token`].
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"1e999",
    b"-",
    b"0",
    b"99999999999999999999999",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\0",
];

fn insert_token(rng: &mut Rng, bytes: &mut Vec<u8>, at: usize) {
    let token = *rng.pick(TOKENS);
    bytes.splice(at..at, token.iter().copied());
}

/// Duplicates a stretch: repeated keys, doubled values.
fn duplicate_stretch(rng: &mut Rng, bytes: &mut Vec<u8>, at: usize) {
    let end = (at + 1 + rng.below(32)).min(bytes.len());
    let copy = bytes[at..end].to_vec();
    bytes.splice(end..end, copy);
}

/// Byte-level damage: the generic mutations plus JSON tokens and duplicated stretches.
fn mutate_bytes(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    damage(rng, original, &[insert_token, duplicate_stretch])
}

// ------------------------------------------------------------------------------ properties

/// Outcome counts, to check that the inputs reached every branch.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    too_large: usize,
    malformed: usize,
    version: usize,
    identifier: usize,
    field: usize,
    largest: usize,
    peak_live: usize,
}

impl Tally {
    /// Decodes `body` with limit `max` and checks every property; panics naming the input if one fails.
    fn check(&mut self, body: &[u8], max: usize) -> Result<TaskMessage, DecodeError> {
        let (result, allocs) = measured_decode(body, max);
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let result = result.unwrap_or_else(|_| {
            panic!(
                "decode panicked on a {}-byte body starting {shown:?}",
                body.len()
            )
        });
        assert!(
            allocs.largest <= alloc_bound(max),
            "decode made a {}-byte allocation (bound {}) for a {}-byte body starting {shown:?}",
            allocs.largest,
            alloc_bound(max),
            body.len()
        );
        self.largest = self.largest.max(allocs.largest);
        self.peak_live = self.peak_live.max(allocs.peak_live);
        match &result {
            Ok(task) => {
                self.ok += 1;
                check_ok(task, max, &shown);
            }
            Err(DecodeError::TooLarge {
                document,
                len,
                max: limit,
            }) => {
                assert_eq!((*document, *len, *limit), (Document::Task, body.len(), max));
                assert!(body.len() > max);
                self.too_large += 1;
            }
            Err(DecodeError::Malformed { .. }) => self.malformed += 1,
            Err(DecodeError::UnsupportedVersion { found, .. }) => {
                assert_ne!(*found, u64::from(TASK_SCHEMA_VERSION));
                self.version += 1;
            }
            Err(DecodeError::InvalidIdentifier { source: e, .. }) => {
                assert!(validate_identifier(e.kind, &e.value).is_err(), "{e}");
                self.identifier += 1;
            }
            Err(DecodeError::InvalidField { .. }) => self.field += 1,
        }
        if let Err(e) = &result {
            // the property error_messages_escape_control_characters pins, on every input
            let msg = e.to_string();
            assert!(
                !msg.chars().any(char::is_control),
                "raw control character in {msg:?} from {shown:?}"
            );
        }
        result
    }
}

/// An accepted task is one this crate could have built: valid identifiers, derived id, valid
/// settings, and it survives encode → decode unchanged (and encoding is then a fixpoint).
fn check_ok(task: &TaskMessage, max: usize, shown: &str) {
    assert_eq!(task.schema_version, TASK_SCHEMA_VERSION, "{shown:?}");
    for (kind, value) in [
        ("run id", task.run_id.as_str()),
        ("model id", task.model_id.as_str()),
        ("layer name", task.layer.as_str()),
    ] {
        assert!(
            validate_identifier(kind, value).is_ok(),
            "accepted invalid {kind} {value:?} from {shown:?}"
        );
    }
    assert_eq!(
        task.task_id,
        task_id(
            &task.run_id,
            &task.model_id,
            &task.layer,
            task.channel,
            task.view
        )
    );
    assert_eq!(task.settings.objective, task.view.objective(), "{shown:?}");
    assert!(task.settings.validate("settings").is_ok(), "{shown:?}");
    let encoded = task.encode();
    let again = TaskMessage::decode(&encoded, max.max(encoded.len()))
        .unwrap_or_else(|e| panic!("re-encoded task does not decode: {e}; from {shown:?}"));
    assert_eq!(
        &again, task,
        "round trip changed the task decoded from {shown:?}"
    );
    assert_eq!(again.encode(), encoded, "encoding is not a fixpoint");
}

// ------------------------------------------------------------------------------ tests

#[test]
fn valid_random_tasks_round_trip() {
    let mut rng = Rng::new(0x7a5c_0001);
    let mut tally = Tally::default();
    for _ in 0..3000 {
        let task = sample(&mut rng);
        let decoded = tally
            .check(&task.encode(), MAX)
            .expect("a valid task decodes");
        assert_eq!(decoded, task);
    }
    assert_eq!(tally.ok, 3000);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x7a5c_0002);
    let mut tally = Tally::default();
    const JSONISH: &[u8] = b"{}[]\":,0123456789-.eE+ truefalsnul\\\n";
    for i in 0..5000 {
        let len = rng.below(600);
        let body: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.byte()).collect()
        } else {
            (0..len).map(|_| *rng.pick(JSONISH)).collect()
        };
        let _ = tally.check(&body, MAX);
    }
    assert!(tally.malformed > 4000, "{tally:?}");
}

#[test]
fn byte_mutations_of_a_valid_body_never_panic() {
    let mut rng = Rng::new(0x7a5c_0003);
    let mut tally = Tally::default();
    for _ in 0..10_000 {
        let original = sample(&mut rng).encode();
        let body = mutate_bytes(&mut rng, &original);
        let _ = tally.check(&body, MAX);
        // also every truncation point of some bodies
        if rng.below(50) == 0 {
            for end in 0..original.len() {
                let _ = tally.check(&original[..end], MAX);
            }
        }
    }
    // a flipped bit inside a number or a model path often still decodes: the Ok path is exercised
    // (the strict parse rejects duplicate keys that a loose one accepted, so fewer mutations pass)
    assert!(tally.ok > 50, "{tally:?}");
    assert!(tally.malformed > 1000, "{tally:?}");
    assert!(tally.identifier + tally.field > 100, "{tally:?}");
}

#[test]
fn json_mutations_reach_every_error_kind() {
    let mut rng = Rng::new(0x7a5c_0004);
    let mut tally = Tally::default();
    for _ in 0..10_000 {
        let mut v: Value = serde_json::from_slice(&sample(&mut rng).encode()).expect("valid json");
        for _ in 0..1 + rng.below(3) {
            mutate_json(&mut rng, &mut v);
        }
        let body = serde_json::to_vec(&v).expect("serialises");
        let _ = tally.check(&body, MAX);
    }
    for (what, n) in [
        ("ok", tally.ok),
        ("malformed", tally.malformed),
        ("unsupported version", tally.version),
        ("invalid identifier", tally.identifier),
        ("invalid field", tally.field),
    ] {
        assert!(n > 100, "only {n} {what} outcomes: {tally:?}");
    }
}

#[test]
fn invalid_identifiers_are_rejected_in_every_position() {
    let mut rng = Rng::new(0x7a5c_0005);
    let mut tally = Tally::default();
    for bad in invalid_identifiers() {
        for key in ["run_id", "seed", "layer"] {
            let mut v: Value = serde_json::from_slice(&sample(&mut rng).encode()).expect("json");
            v[key] = bad.clone().into();
            fix_task_id(&mut v);
            let body = serde_json::to_vec(&v).expect("serialises");
            if body.len() > MAX {
                continue;
            }
            match tally.check(&body, MAX) {
                Err(DecodeError::InvalidIdentifier { source, .. }) => assert_eq!(source.value, bad),
                other => panic!("{key} = {bad:?}: expected an invalid identifier, got {other:?}"),
            }
        }
    }
    // a bad identifier inside task_id only, with valid fields, is a task_id mismatch
    let mut v: Value = serde_json::from_slice(&sample(&mut rng).encode()).expect("json");
    v["task_id"] = "../../etc/passwd".into();
    let body = serde_json::to_vec(&v).expect("serialises");
    assert!(matches!(
        tally.check(&body, MAX),
        Err(DecodeError::InvalidField { source, .. }) if source.to_string().starts_with("task_id: ")
    ));
}

#[test]
fn huge_numbers_are_errors() {
    let mut tally = Tally::default();
    let valid: Value = serde_json::from_slice(&sample(&mut Rng::new(6)).encode()).expect("json");
    let numbers = [
        "1e400",
        "-1e400",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        &"9".repeat(5000),
        &format!("0.{}1", "0".repeat(5000)),
        "4294967296",
        "-1",
        "1.0",
        "1e2",
        "0.0",
    ];
    for field in [
        "schema_version",
        "channel",
        "settings.steps",
        "settings.size",
        "settings.run_seed",
        "settings.lr",
    ] {
        for number in numbers {
            let mut v = valid.clone();
            *field_mut(&mut v, field).expect("field exists") = Value::Null;
            let body = serde_json::to_string(&v)
                .expect("serialises")
                .replacen("null", number, 1);
            let result = tally.check(body.as_bytes(), MAX);
            // only in-range values of the right type may be accepted
            if let Ok(task) = &result {
                let fits = match field {
                    "settings.lr" => number.parse::<f64>().is_ok_and(|x| x == task.settings.lr),
                    "schema_version" => false,
                    _ => number.parse::<u64>().is_ok(),
                };
                assert!(fits, "{field} = {number}: accepted as {task:?}");
            }
            if field == "schema_version" {
                assert!(result.is_err(), "schema_version {number} accepted");
            }
        }
    }
    assert!(tally.ok > 0 && tally.malformed > 0, "{tally:?}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut tally = Tally::default();
    for depth in [127, 128, 129, 1000, 100_000] {
        let max = 4 * depth + 1024;
        let bodies: Vec<Vec<u8>> = vec![
            "[".repeat(depth).into_bytes(),
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
            "{\"a\":".repeat(depth).into_bytes(),
            format!("{{\"schema_version\":1,\"settings\":{}", "[".repeat(depth)).into_bytes(),
            format!(
                "{{\"schema_version\":1,\"x\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes(),
        ];
        for body in bodies {
            let result = tally.check(&body, max);
            assert!(result.is_err(), "depth {depth} accepted");
        }
    }
    assert!(tally.malformed > 0, "{tally:?}");
}

#[test]
fn long_strings_are_bounded_by_the_limit() {
    let mut rng = Rng::new(0x7a5c_0007);
    let mut tally = Tally::default();
    let valid: Value = serde_json::from_slice(&sample(&mut rng).encode()).expect("json");
    for len in [1000, 60_000, MAX, 10 * MAX] {
        for field in [
            "task_id",
            "run_id",
            "model",
            "unknown",
            "settings.objective",
        ] {
            for filler in ["a", "\\u0000", "é", "\\ud83d\\ude00"] {
                let mut v = valid.clone();
                let text = filler.repeat(len / filler.len());
                match field_mut(&mut v, field) {
                    Some(slot) => *slot = "PLACEHOLDER".into(),
                    None => v[field] = "PLACEHOLDER".into(),
                }
                let body = serde_json::to_string(&v).expect("serialises").replacen(
                    "PLACEHOLDER",
                    &text,
                    1,
                );
                let result = tally.check(body.as_bytes(), MAX);
                // a model location is a path, not an identifier: any length under the limit is a
                // legitimate task (and went through check_ok's round trip)
                assert!(
                    result.is_err() || field == "model",
                    "{field} of {len} × {filler:?} accepted"
                );
            }
        }
    }
    // a long model path under the limit is a legitimate task
    let mut v = valid;
    v["model"] = format!("/data/{}", "p".repeat(50_000)).into();
    let body = serde_json::to_vec(&v).expect("serialises");
    assert!(tally.check(&body, MAX).is_ok());
    assert!(tally.too_large > 0, "{tally:?}");
}

#[test]
fn oversize_bodies_are_rejected_before_parsing() {
    let mut tally = Tally::default();
    let valid = sample(&mut Rng::new(8)).encode();
    for (body, max) in [
        (valid.clone(), valid.len() - 1),
        (vec![b'['; 10 << 20], MAX),
        (vec![0xff; MAX + 1], MAX),
        (vec![b' '; 64 << 20], 1024),
    ] {
        let (result, allocs) = measured_decode(&body, max);
        assert!(matches!(
            result.expect("no panic"),
            Err(DecodeError::TooLarge { len, .. }) if len == body.len()
        ));
        // the size check comes first: nothing is allocated but the error
        assert!(allocs.largest < 1024, "{allocs:?}");
        let _ = tally.check(&body, max);
    }
    assert_eq!(tally.too_large, 4);
}

/// Bodies exactly at the limit that maximise what the JSON parser builds: many small values. At the
/// default limit the largest allocation stays under the bound; the peak of live bytes is reported.
#[test]
fn worst_case_bodies_at_the_default_limit() {
    let mut tally = Tally::default();
    let fill = |unit: &str, open: &str, close: &str| {
        let n = (MAX - open.len() - close.len()) / (unit.len() + 1);
        let mut s = String::with_capacity(MAX);
        s.push_str(open);
        s.push_str(&vec![unit; n].join(","));
        s.push_str(close);
        assert!(s.len() <= MAX);
        s.into_bytes()
    };
    let mut report = BTreeMap::new();
    for (name, body) in [
        ("array of 0", fill("0", "[", "]")),
        ("array of []", fill("[]", "[", "]")),
        ("array of {}", fill("{}", "[", "]")),
        ("array of {\"a\":0}", fill("{\"a\":0}", "[", "]")),
        ("array of \"\"", fill("\"\"", "[", "]")),
        (
            "versioned array field",
            fill("0", "{\"schema_version\":1,\"x\":[", "]}"),
        ),
        ("object keys", {
            let mut s = String::from("{\"schema_version\":1");
            let mut i = 0;
            while s.len() < MAX - 16 {
                s.push_str(&format!(",\"{i:x}\":0"));
                i += 1;
            }
            s.push('}');
            s.into_bytes()
        }),
    ] {
        let (result, allocs) = measured_decode(&body, MAX);
        assert!(result.expect("no panic").is_err(), "{name}");
        report.insert(name, allocs);
        let _ = tally.check(&body, MAX);
    }
    for (name, a) in &report {
        println!(
            "{name:>24}: largest allocation {:>9} B ({:.1} × body), peak live {:>9} B ({:.1} × body)",
            a.largest,
            a.largest as f64 / MAX as f64,
            a.peak_live,
            a.peak_live as f64 / MAX as f64
        );
    }
}

/// The largest allocation for the worst body at a few limits up to the default: always within
/// 4 × limit + 1 MiB. (Limits above the default: see
/// [`allocation_bound_holds_at_limits_above_the_default`].)
#[test]
fn allocation_bound_holds_up_to_the_default_limit() {
    assert_allocation_bound_at(&[1024, 4096, 16_384, MAX]);
}

/// Decodes the worst body, `[0,0,…]` filling each limit in `limits`, and asserts that its largest
/// allocation stays within [`alloc_bound`].
fn assert_allocation_bound_at(limits: &[usize]) {
    for &max in limits {
        let n = (max - 2) / 2;
        let body = format!("[{}]", vec!["0"; n].join(","));
        let (result, allocs) = measured_decode(body.as_bytes(), max);
        assert!(result.expect("no panic").is_err());
        assert!(
            allocs.largest <= alloc_bound(max),
            "limit {max}: largest allocation {} > {}",
            allocs.largest,
            alloc_bound(max)
        );
    }
}

// ------------------------------------------------------------------------------ issues found by fuzzing
//
// Each of these failed before its fix (docs/RELIABILITY.md tells the story); they stay so that the
// fix stays covered.

/// The largest allocation for the worst body stays within 4 × limit + 1 MiB at limits far above the
/// default too (`queue.max_message_bytes` may be set up to 128 MiB). It did not while `decode`
/// parsed the body into a `serde_json::Value` (32 bytes a value: an array of one-byte numbers cost
/// 16 × the body in one `Vec`); reading only `schema_version` with a struct that ignores the other
/// fields, then the strict struct from the bytes, keeps it near 1 × the body.
#[test]
fn allocation_bound_holds_at_limits_above_the_default() {
    assert_allocation_bound_at(&[256 << 10, 1 << 20, 8 << 20]);
}

/// A task whose `lr` is an arbitrary `f64` decodes to exactly that `lr` (and so the same settings
/// fingerprint). Without serde_json's `float_roundtrip` feature (enabled for the workspace) some 16
/// and 17 digit decimals parsed one ULP off; spec-written rates like `0.05` never were.
#[test]
fn arbitrary_lr_round_trips_exactly() {
    let mut rng = Rng::new(0x7a5c_0009);
    let mut changed = Vec::new();
    for _ in 0..10_000 {
        let mut task = sample(&mut rng);
        task.settings.lr =
            ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 10.0).max(f64::MIN_POSITIVE);
        let decoded = TaskMessage::decode(&task.encode(), MAX).expect("valid task");
        if decoded.settings.lr != task.settings.lr {
            changed.push((task.settings.lr, decoded.settings.lr));
        }
    }
    assert!(
        changed.is_empty(),
        "{} of 10000 lr values changed, e.g. {:?}",
        changed.len(),
        &changed[..changed.len().min(3)]
    );
}

/// A decode error's message holds no raw control character, even when the body smuggles escaped
/// ones (`\u001b`, `\n`) into an enum value or a key. serde's messages quote the offending input as
/// is (`unknown variant`, `unknown field`), and the worker logs `DecodeError::Malformed` and puts it
/// in the `x-lucid-reason` header: raw, that was a log-injection vector (forged lines, terminal
/// escapes), so decode errors escape them.
#[test]
fn error_messages_escape_control_characters() {
    let valid: Value = serde_json::from_slice(&sample(&mut Rng::new(10)).encode()).expect("json");
    let mut bodies = Vec::new();
    let mut v = valid.clone();
    v["settings"]["objective"] = "x\n2026-01-01T00:00:00Z INFO forged \u{1b}[31mline".into();
    bodies.push(serde_json::to_vec(&v).expect("serialises"));
    let mut v = valid;
    v["unknown\u{1b}]0;title\u{7}"] = 1.into();
    bodies.push(serde_json::to_vec(&v).expect("serialises"));
    for body in bodies {
        let msg = TaskMessage::decode(&body, MAX)
            .expect_err("invalid body")
            .to_string();
        assert!(
            !msg.chars().any(char::is_control),
            "raw control character in {msg:?}"
        );
    }
}
