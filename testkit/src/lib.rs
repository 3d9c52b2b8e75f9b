//! What every test of lucid-sweep does when something it needs is not there: a test service
//! (RabbitMQ, SeaweedFS, Prometheus, named by the `LUCID_TEST_*` variables that
//! `scripts/services.sh env` prints) or a program (Chromium, Node).
//!
//! One policy for every crate: under CI ([`in_ci`]) such a test fails, with a message naming what is
//! missing and how to provide it, because CI always provides it and a test that passes without running
//! proves nothing. Anywhere else it prints `SKIPPED: <test>: <what>; <how to fix>` to stderr and the
//! caller returns, so a developer without the services still sees which tests did not run. Set
//! `CI=true` to see locally what CI would report.
//!
//! [`fuzz`] is the fuzz tests' seeded generator and byte damage, one for every decoder attacked;
//! [`browser`] the gallery's check in headless Chromium, for every suite that builds a gallery.
//!
//! Nothing here installs or starts anything: `scripts/services.sh start all` (run by `make test`)
//! does, before `cargo test`.
//!
//! ```no_run
//! let Some(settings) = lucid_testkit::require(&[lucid_testkit::RABBITMQ]) else {
//!     return; // skipped (outside CI) with a SKIPPED line on stderr
//! };
//! let uri = settings.get("LUCID_TEST_AMQP_URI");
//! # let _ = uri;
//! ```

pub mod browser;
pub mod fixtures;
pub mod fuzz;
mod program;
mod service;

use std::io::Write as _;

pub use program::require_program;
pub use service::{
    PROMETHEUS, RABBITMQ, RABBITMQ_MANAGEMENT, SEAWEEDFS, Service, Settings, require,
};

/// Whether the tests run under CI: `CI` is set to anything but empty, `0` or `false` (CI systems
/// set `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
    })
}

/// The name of the running test: libtest names the thread of each test after it (a `#[tokio::test]`
/// body runs on that thread too).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("this test")
        .to_owned()
}

/// Reports that the running test cannot run because `what` (e.g. "RabbitMQ (AMQP) unreachable");
/// `fix` says how to provide it. Under CI this panics, failing the test; elsewhere it prints
/// `SKIPPED: <test>: <what>; <fix>` to stderr, visible in `cargo test`'s output although the test
/// passes, and returns; the caller returns at once.
pub fn skip_or_fail(what: &str, fix: &str) {
    let test = current_test();
    if in_ci() {
        panic!(
            "{test}: {what}; {fix}. (CI is set: under CI a test that cannot run fails instead of \
             being skipped)"
        );
    }
    // straight to the process's stderr: libtest captures `eprintln!` of a passing test and would
    // hide the line, which is what makes a skip look like a pass
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {what}; {fix}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_test_is_the_libtest_thread_name() {
        assert_eq!(
            current_test(),
            "tests::current_test_is_the_libtest_thread_name"
        );
    }
}
