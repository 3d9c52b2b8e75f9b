//! Validated identifiers: run ids, model ids and layer names.
//!
//! Every identifier ends up as one segment of an object key (`{prefix}/{run}/{seed}/{layer}/…`), so the
//! rules are those of a safe path segment: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with `.`
//! (which also rules out `.` and `..`). A value that breaks them is rejected where it enters the system —
//! spec loading, message decoding, key parsing — never later.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest identifier accepted, in characters (all accepted characters are ASCII, so also bytes).
pub const MAX_ID_LEN: usize = 64;

/// An identifier that broke the rules; names the kind of identifier and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct IdError {
    /// Which kind of identifier was being validated (`run id`, `model id`, `layer name`, …).
    pub kind: &'static str,
    /// The rejected value; `Debug` formatting escapes control characters when displayed.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Checks `value` against the identifier rules; `kind` names the identifier in the error.
pub fn validate_identifier(kind: &'static str, value: &str) -> Result<(), IdError> {
    let fail = |reason: String| IdError {
        kind,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    let len = value.chars().count();
    if len > MAX_ID_LEN {
        return Err(fail(format!(
            "must be at most {MAX_ID_LEN} characters, got {len}"
        )));
    }
    if value == "." || value == ".." {
        return Err(fail("must not be `.` or `..`".into()));
    }
    if value.starts_with('.') {
        return Err(fail("must not start with `.`".into()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let what = if c == '/' {
            "must not contain `/`".to_owned()
        } else if c.is_control() {
            format!("must not contain control character {c:?}")
        } else {
            format!("must contain only [A-Za-z0-9._-], found {c:?}")
        };
        return Err(fail(what));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The kind of identifier, as error messages name it.
            pub const KIND: &'static str = $kind;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate_identifier(Self::KIND, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// Names one sweep run; the second segment of every object key of the run.
    RunId,
    "run id"
);
identifier!(
    /// Names one trained network of a sweep: its label, e.g. `training_seed_01` (the ecoset networks
    /// are named after their training seeds, but the label is a name, not a number). Its bytes key
    /// every image's random streams, so renaming a model changes its images. On the wire it is the
    /// field `seed` of tasks, sidecars and manifests, kept for the documents already stored.
    ModelId,
    "model id"
);
identifier!(
    /// Names one layer of a network, e.g. `conv1` or `fc8`.
    LayerName,
    "layer name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "conv1",
            "training_seed_01",
            "a.b-c_d",
            "A",
            "x.",
            &"z".repeat(64),
        ] {
            assert_eq!(LayerName::new(ok).map(String::from), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn rejects_bad_names() {
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            (".", "must not be `.` or `..`"),
            ("..", "must not be `.` or `..`"),
            (".hidden", "must not start with `.`"),
            ("a/b", "must not contain `/`"),
            ("a\nb", "control character"),
            ("a\u{0}b", "control character"),
            ("a b", "found ' '"),
            ("é", "found 'é'"),
        ];
        for (bad, reason) in cases {
            let err = RunId::new(*bad).unwrap_err();
            assert_eq!(err.kind, "run id");
            assert!(err.reason.contains(reason), "{bad:?}: {err}");
        }
        let long = "a".repeat(65);
        let err = ModelId::new(long.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid model id \"{long}\": must be at most 64 characters, got 65")
        );
    }

    #[test]
    fn error_escapes_control_characters() {
        let err = LayerName::new("x\u{1b}[31m").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid layer name \"x\\u{1b}[31m\""),
            "{msg}"
        );
        assert!(!msg.contains('\u{1b}'));
    }

    #[test]
    fn parses_and_serialises_through_validation() {
        let id: ModelId = "training_seed_01".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"training_seed_01\"");
        let back: ModelId = serde_json::from_str("\"training_seed_01\"").unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_str::<ModelId>("\"../etc\"").unwrap_err();
        assert!(err.to_string().contains("invalid model id"), "{err}");
        assert!(ModelId::try_from("a/b".to_owned()).is_err());
    }
}
