//! Reading and writing the AMQP header values this crate cares about.

use lapin::types::{AMQPValue, FieldTable, LongString};

/// Header set by [`crate::Delivery::dead_letter`]: why the task was given up (at most 1 KiB).
pub const REASON_HEADER: &str = "x-lucid-reason";
/// Header set by [`crate::Delivery::dead_letter`]: the task id (the message id).
pub const TASK_ID_HEADER: &str = "x-lucid-task-id";
/// Header a quorum queue adds to redeliveries: how many times the message was delivered before.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Header the broker adds when it dead-letters a message: an array of tables with `reason`, `count`, ...
pub const DEATH_HEADER: &str = "x-death";

/// Longest `x-lucid-reason` value, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

pub(crate) fn string(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub(crate) fn unsigned(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::ShortShortInt(i) => u64::try_from(i).ok(),
        AMQPValue::ShortShortUInt(i) => Some(u64::from(i)),
        AMQPValue::ShortInt(i) => u64::try_from(i).ok(),
        AMQPValue::ShortUInt(i) => Some(u64::from(i)),
        AMQPValue::LongInt(i) => u64::try_from(i).ok(),
        AMQPValue::LongUInt(i) => Some(u64::from(i)),
        AMQPValue::LongLongInt(i) => u64::try_from(i).ok(),
        _ => None,
    }
}

/// `x-delivery-count`, 0 when absent (a first delivery).
pub(crate) fn delivery_count(headers: Option<&FieldTable>) -> u32 {
    headers
        .and_then(|h| h.inner().get(DELIVERY_COUNT_HEADER))
        .and_then(unsigned)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn deaths(headers: Option<&FieldTable>) -> Vec<&FieldTable> {
    match headers.and_then(|h| h.inner().get(DEATH_HEADER)) {
        Some(AMQPValue::FieldArray(entries)) => entries
            .as_slice()
            .iter()
            .filter_map(|e| match e {
                AMQPValue::FieldTable(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `reason` of the most recent `x-death` entry (`delivery_limit`, `rejected`, `expired`, `maxlen`).
pub(crate) fn death_reason(headers: Option<&FieldTable>) -> Option<String> {
    deaths(headers)
        .first()
        .and_then(|t| string(Some(t), "reason"))
}

/// Sum of the `count` fields of all `x-death` entries.
pub(crate) fn death_count(headers: Option<&FieldTable>) -> u32 {
    let total: u64 = deaths(headers)
        .iter()
        .filter_map(|t| t.inner().get("count").and_then(unsigned))
        .sum();
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// A copy of `headers` without the keys in `drop`.
pub(crate) fn without(headers: Option<&FieldTable>, drop: &[&str]) -> FieldTable {
    let mut out = FieldTable::default();
    if let Some(headers) = headers {
        for (key, value) in headers.inner() {
            if !drop.contains(&key.as_str()) {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

pub(crate) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate(&"x".repeat(2000), MAX_REASON_BYTES).len(), 1024);
    }

    #[test]
    fn reads_x_death() {
        let mut death = FieldTable::default();
        death.insert("reason".into(), long_string("delivery_limit"));
        death.insert("count".into(), AMQPValue::LongLongInt(2));
        let mut headers = FieldTable::default();
        headers.insert(
            DEATH_HEADER.into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        headers.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongInt(3));
        assert_eq!(
            death_reason(Some(&headers)).as_deref(),
            Some("delivery_limit")
        );
        assert_eq!(death_count(Some(&headers)), 2);
        assert_eq!(delivery_count(Some(&headers)), 3);
        assert_eq!(delivery_count(None), 0);
        let stripped = without(Some(&headers), &[DELIVERY_COUNT_HEADER]);
        assert!(!stripped.contains_key(DELIVERY_COUNT_HEADER));
        assert!(stripped.contains_key(DEATH_HEADER));
    }
}
