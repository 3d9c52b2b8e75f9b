//! Stopping and restarting shared services in fault tests, and keeping other tests out meanwhile.

use std::process::Command;

use crate::workspace_root;

static SERVICES_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held for its whole run by a test that stops or restarts a shared service (RabbitMQ, SeaweedFS):
/// no other test of its binary that holds [`shared_services`] runs meanwhile. Tests in other test
/// binaries never overlap (cargo runs binaries one by one).
pub fn exclusive_services() -> std::sync::RwLockWriteGuard<'static, ()> {
    SERVICES_LOCK
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held for its whole run by a test, in a binary with [`exclusive_services`] tests, that needs the
/// shared services up; such tests run alongside each other.
pub fn shared_services() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVICES_LOCK
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `scripts/services.sh ACTION SERVICE` and panics if it fails.
pub fn services_script(action: &str, service: &str) {
    let script = workspace_root().join("scripts/services.sh");
    run_checked(
        Command::new(script).args([action, service]),
        &format!("scripts/services.sh {action} {service}"),
    );
}

/// Runs `rabbitmqctl ARGS` and panics if it fails.
pub fn rabbitmqctl(args: &[&str]) {
    run_checked(
        Command::new("rabbitmqctl").args(args),
        &format!("rabbitmqctl {args:?}"),
    );
}

/// Runs `command` to its end; panics naming it as `what`, with its stderr, unless it succeeds.
fn run_checked(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Restarts what a fault test stopped when it is dropped, even if the test panicked.
pub struct Restore {
    action: Option<Box<dyn FnOnce()>>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Restore")
    }
}

impl Restore {
    /// Calls `action` on drop.
    pub fn new(action: impl FnOnce() + 'static) -> Self {
        Self {
            action: Some(Box::new(action)),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action();
        }
    }
}
