//! The gallery's browser check, for every crate whose tests build a gallery: headless Chromium
//! (Debian's `chromium`) opens pages from disk through `scripts/gallery-browser-check.mjs` (Node,
//! no packages) and reports, per page, that every image decoded and nothing logged an error.
//!
//! Chromium and Node come from `scripts/services.sh start` (`make test` runs it before
//! `cargo test`). Without them, or with `LUCID_SKIP_BROWSER=1`, [`Browser::find`] follows the one
//! policy of this crate: fail under CI, skip loudly elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs the check runs.
pub struct Browser {
    chromium: PathBuf,
    node: PathBuf,
}

impl Browser {
    /// Chromium (`LUCID_CHROMIUM` or `chromium` on `PATH`) and Node, or `None` when the check
    /// cannot run (failing under CI). `LUCID_SKIP_BROWSER=1` skips it outside CI only: under CI it
    /// fails, since CI must run the check.
    pub fn find() -> Option<Browser> {
        if std::env::var("LUCID_SKIP_BROWSER").as_deref() == Ok("1") {
            crate::skip_or_fail(
                "LUCID_SKIP_BROWSER=1 asks to skip the browser check",
                "unset it to run the check",
            );
            return None;
        }
        let install = "install it with scripts/services.sh start tools";
        let chromium = crate::require_program("chromium", Some("LUCID_CHROMIUM"), install)?;
        let node = crate::require_program("node", None, install)?;
        Some(Browser { chromium, node })
    }

    /// Opens `pages` (relative to the folder `gallery`), optionally saving a 1280 px wide
    /// screenshot of the first; panics with the script's report unless every page passed; returns
    /// each page's report (`ok`, `url`, `images`, …) in page order.
    pub fn check(
        &self,
        gallery: &Path,
        pages: &[&str],
        screenshot: Option<&Path>,
    ) -> Vec<serde_json::Value> {
        let script = crate::fixtures::workspace_root().join("scripts/gallery-browser-check.mjs");
        let mut cmd = Command::new(&self.node);
        cmd.arg(&script).arg("--chromium").arg(&self.chromium);
        if let Some(shot) = screenshot {
            cmd.arg("--screenshot")
                .arg(shot)
                .args(["--screenshot-page", "0"]);
        }
        for page in pages {
            cmd.arg(file_url(&gallery.join(page)));
        }
        let out = cmd
            .output()
            .expect("run node scripts/gallery-browser-check.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}{stderr}");
        assert!(
            out.status.success(),
            "browser check failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        // one JSON object per page, then a summary line
        let results: Vec<serde_json::Value> = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad result line {l:?}: {e}"))
            })
            .collect();
        assert_eq!(results.len(), pages.len(), "{stdout}");
        for (result, page) in results.iter().zip(pages) {
            assert_eq!(result["ok"], true, "{page}: {result}");
            assert!(
                result["url"].as_str().is_some_and(|u| u.ends_with(page)),
                "{page}: {result}"
            );
        }
        results
    }
}

/// The `file://` URL of `path`, every byte outside `[A-Za-z0-9/._-~]` percent-encoded.
pub fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}
