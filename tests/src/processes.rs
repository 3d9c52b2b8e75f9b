//! The processes a test starts: the workspace binaries, a guard that kills a child on drop and keeps
//! its output, and what a finished command left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `<target dir>/<profile>`: the folder holding this test executable's `deps/` folder, where cargo
/// puts the workspace binaries. Found from the executable itself, so it holds wherever the target
/// folder is (`CARGO_TARGET_DIR`, `--target-dir`, a `--target` triple) and whichever the profile.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    let deps = exe.parent().expect("the test executable has a folder");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent folder")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of workspace binary `name` (`lucid-worker`, `lucid-coordinator`) in this test
/// executable's profile folder.
///
/// # Panics
/// When it is not there, saying how to build it: the test command builds the binaries before
/// `cargo test` (`make unit` does), a test never builds them itself.
pub fn binary(name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => String::new(),
            Some("release") => " --release".to_owned(),
            Some(other) => format!(" --profile {other}"),
        };
        panic!(
            "{} is missing: build the binaries before running the tests, with the same target \
             folder and profile: `cargo build --workspace --bins{profile}` (`make unit` builds them, \
             then tests)",
            path.display()
        );
    }
    path
}

/// A child process that is killed (SIGKILL) on drop, with its stdout and stderr in files. When the
/// thread is panicking, drop prints the end of both so the failure shows what the process said.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl ProcessGuard {
    /// Starts `command` with stdout and stderr going to `{log_dir}/{name}.stdout|.stderr`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    /// The process name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is kept until drop")
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let name = self.name.clone();
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {name}: {e}"))
    }

    /// Panics, with the end of its stderr, if the process has exited: for a wait whose condition
    /// a dead process can never meet. `what` says what was awaited ("before it was ready").
    pub fn assert_alive(&mut self, what: &str) {
        if let Some(status) = self.try_wait() {
            panic!(
                "{} exited with {status} {what}; stderr:\n{}",
                self.name,
                tail(&self.stderr(), 40)
            );
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.try_wait().is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the pid of our own child, which we have not reaped (try_wait saw it
        // running), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) of {} failed: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits up to `timeout` for exit and returns status and output; panics naming the process on
    /// timeout (the process is killed by drop).
    pub fn finish(mut self, timeout: Duration) -> CommandOutput {
        let status = self.wait_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {} to exit; stderr:\n{}",
                self.name,
                tail(&self.stderr(), 40)
            )
        });
        CommandOutput {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} stdout (end) ----\n{}\n---- {} stderr (end) ----\n{}",
                self.name,
                tail(&self.stdout(), 30),
                self.name,
                tail(&self.stderr(), 60)
            );
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the workspace binary `name` with `args` to its end (logging at `warn`), as a test that
/// reads its exit and output runs a one-shot command.
pub fn run_binary(name: &str, args: &[&str]) -> CommandOutput {
    let out = Command::new(binary(name))
        .args(args)
        .env("LUCID_LOG", "warn")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    CommandOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl CommandOutput {
    /// Panics with both streams unless the command succeeded; returns stdout.
    pub fn expect_success(&self, what: &str) -> &str {
        assert!(
            self.status.success(),
            "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr, 60)
        );
        &self.stdout
    }
}
