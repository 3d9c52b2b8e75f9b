//! Loading the sweep spec for a command: the TOML file, `LUCID__…` environment variables and `--set`
//! overrides, in that order of strength (see [`lucid_proto::spec`]).
//!
//! Overrides come from the command line, where they end up in shell history and process listings, so
//! [`parse_overrides`] ([`lucid_proto::spec::parse_overrides`], shared with the worker) refuses anything
//! that looks like a credential: keys naming a password, secret, token or access key, and values
//! holding a URI with a password. The error names the key, never the value.

use std::path::Path;

use lucid_proto::spec::DEFAULT_ENV_PREFIX;
use lucid_proto::{SpecError, SweepSpec};

use crate::error::{Error, Result};

/// Splits `key=value` overrides and refuses credentials; the error names the offending key only.
///
/// A thin wrapper over [`lucid_proto::spec::parse_overrides`] that turns its refusal into
/// [`Error::Override`].
pub fn parse_overrides(sets: &[String]) -> Result<Vec<(String, String)>> {
    lucid_proto::spec::parse_overrides(sets).map_err(|error| match error {
        SpecError::RefusedOverride { key, reason } => Error::Override { key, reason },
        // parse_overrides refuses with RefusedOverride only; keep any other error value-free too
        other => Error::Override {
            key: "(override)".into(),
            reason: other.to_string(),
        },
    })
}

/// Loads and validates the spec in `file` with environment `LUCID__…` and `sets` (`key=value`) on top.
///
/// Errors name the file and the offending field (`render.steps: must be between 1 and 100000, got 0`).
pub fn load(file: &Path, sets: &[String]) -> Result<SweepSpec> {
    let overrides = parse_overrides(sets)?;
    SweepSpec::load(Some(file), DEFAULT_ENV_PREFIX, &overrides).map_err(|source| Error::Spec {
        path: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // the refusal rules themselves are tested in lucid_proto::spec; this checks the mapping
    #[test]
    fn refusals_become_override_errors_without_the_value() {
        let parsed = parse_overrides(&["render.steps=64".to_owned()]).expect("plain override");
        assert_eq!(parsed, vec![("render.steps".into(), "64".into())]);
        for arg in ["queue.uri=amqp://guest:hunter2@h/%2f", "novalue-hunter2"] {
            let err = parse_overrides(&[arg.to_owned()]).expect_err(arg);
            assert!(matches!(err, Error::Override { .. }), "{err:?}");
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.starts_with("--set "), "{text}");
        }
    }
}
