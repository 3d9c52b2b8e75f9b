//! Why a spec could not be loaded or is not acceptable, and the range check every section uses.

use std::fmt;

/// A spec field with a value that breaks a rule; displays as `field.path: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// Dotted path of the offending field, e.g. `render.steps`.
    pub field: String,
    /// What is wrong with it, including the value found.
    pub reason: String,
}

impl InvalidField {
    /// An error for `field` with `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why a spec could not be loaded or is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The sources could not be read or merged, or the merged result does not deserialise (unknown key,
    /// wrong type); the message names the key.
    #[error("failed to load sweep spec: {0}")]
    Load(String),
    /// A command-line override is not of the form `key=value`.
    #[error("invalid override {0:?}: expected key=value")]
    Override(String),
    /// A command-line override was refused by [`super::parse_overrides`]: malformed, or it would put a
    /// credential on the command line. Names the override's key (or its position), never its value.
    #[error("--set {key}: {reason}")]
    RefusedOverride {
        /// The override's key, or `(argument N)` when the argument has no `=`.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// The spec deserialised but a value breaks a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
}

impl From<config::ConfigError> for SpecError {
    fn from(e: config::ConfigError) -> Self {
        SpecError::Load(e.to_string())
    }
}

/// `Ok` when `min <= value <= max`, else an error for `field` that quotes the range and the value.
pub(crate) fn check_range<T: PartialOrd + fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), InvalidField> {
    if value < min || value > max {
        return Err(InvalidField::new(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}
