//! What the broker tests and the publish benchmark share: the test broker's URI and queues of their own.

#![allow(dead_code)] // each test binary uses a different subset

use lucid_queue::Topology;

/// The value of `name`, which `lucid_testkit::require` found set.
pub fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: require the broker first"))
}

/// The test broker's AMQP URI.
pub fn amqp_uri() -> String {
    test_var("LUCID_TEST_AMQP_URI")
}

/// Queues and an exchange no other test (or earlier run) uses, named after `test`.
pub fn topology(test: &str, delivery_limit: u32) -> Topology {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = format!("{test}.{}.{nanos}", std::process::id());
    Topology {
        tasks: format!("lucid-test.tasks.{suffix}"),
        dead_letter_exchange: format!("lucid-test.dlx.{suffix}"),
        dead_letter_queue: format!("lucid-test.dead.{suffix}"),
        delivery_limit,
        max_message_bytes: 65_536,
    }
}
