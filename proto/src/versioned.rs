//! The one decoder of the versioned JSON documents of the wire contract: the task message, the
//! result sidecar, the run manifest and the dead-letter report.
//!
//! Each is a JSON object with a `schema_version`. [`decode`] reads them all the same defensive way,
//! because a queue or a bucket can hold anything:
//!
//! 1. the size is checked before anything is parsed;
//! 2. the version is read first, by a probe that skips every other field unparsed (so a newer
//!    document of any shape gets [`DecodeError::UnsupportedVersion`], not a parse error);
//! 3. the strict shape of that version is parsed straight from the bytes, with no intermediate
//!    `serde_json::Value`, whose size could be many times the body's.
//!
//! Errors say which [`Document`] was refused, and never carry a raw control character from the body
//! (they end up in logs and in the dead-letter reason header).

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ids::IdError;
use crate::spec::InvalidField;

/// Which versioned document a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    /// A task message ([`crate::TaskMessage`]), an AMQP body.
    Task,
    /// A result sidecar ([`crate::ResultSidecar`]), the `.json` next to each PNG.
    ResultSidecar,
    /// A run manifest ([`crate::RunManifest`]), `run.json`.
    RunManifest,
    /// A dead-letter report ([`crate::DeadLetterReport`]), `dead-letters.json`.
    DeadLetters,
    /// A probe task message ([`crate::probe::ProbeTask`]), an AMQP body.
    ProbeTask,
    /// A probe shard's sidecar ([`crate::probe::ShardSidecar`]).
    ProbeShard,
    /// A run's probe set index ([`crate::probe::ProbeIndex`]), `probe/images.json`.
    ProbeIndex,
}

impl Document {
    /// How errors name the document: `task message`, `result sidecar`, `run manifest`.
    pub fn name(self) -> &'static str {
        match self {
            Document::Task => "task message",
            Document::ResultSidecar => "result sidecar",
            Document::RunManifest => "run manifest",
            Document::DeadLetters => "dead-letter report",
            Document::ProbeTask => "probe task message",
            Document::ProbeShard => "probe shard sidecar",
            Document::ProbeIndex => "probe set index",
        }
    }

    /// How errors name the document's schema: `task`, `result sidecar`, `run manifest`.
    fn schema(self) -> &'static str {
        match self {
            Document::Task => "task",
            Document::ProbeTask => "probe task",
            other => other.name(),
        }
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The size limit of a stored document read whole (a probe set index names every file of a set of
/// 10⁵ images).
pub const MAX_STORED_DOCUMENT: usize = 64 << 20;

/// Why a body is not an acceptable document. Each variant is a different failure a reader may want to
/// count separately; none of them gets better by reading the same bytes again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The body is larger than the limit (checked before parsing).
    #[error("{document} is too large: {len} bytes, limit {max}")]
    TooLarge {
        /// The document refused.
        document: Document,
        /// Size of the body.
        len: usize,
        /// The limit (for a task, `queue.max_message_bytes`).
        max: usize,
    },
    /// Not JSON, not an object, or fields missing, unknown or of the wrong type; serde's message with
    /// control characters escaped.
    #[error("malformed {document}: {reason}")]
    Malformed {
        /// The document refused.
        document: Document,
        /// What is wrong, as serde says it.
        reason: String,
    },
    /// A schema version this build does not read.
    #[error(
        "unsupported {} schema_version {found}, this build reads {}",
        .document.schema(),
        readable(*.oldest, *.supported)
    )]
    UnsupportedVersion {
        /// The document refused.
        document: Document,
        /// The version in the body.
        found: u64,
        /// The newest version this build reads.
        supported: u32,
        /// The oldest version this build reads (equal to `supported` where only one is read).
        oldest: u32,
    },
    /// A run id, model id or layer name breaks the identifier rules.
    #[error("{document} has an {source}")]
    InvalidIdentifier {
        /// The document refused.
        document: Document,
        /// Which identifier, and why.
        source: IdError,
    },
    /// A field value is out of range or inconsistent (a task id that does not match, bad settings).
    #[error("{document} field {source}")]
    InvalidField {
        /// The document refused.
        document: Document,
        /// Which field, and why.
        source: InvalidField,
    },
}

impl DecodeError {
    /// The document refused.
    pub fn document(&self) -> Document {
        match self {
            DecodeError::TooLarge { document, .. }
            | DecodeError::Malformed { document, .. }
            | DecodeError::UnsupportedVersion { document, .. }
            | DecodeError::InvalidIdentifier { document, .. }
            | DecodeError::InvalidField { document, .. } => *document,
        }
    }
}

/// Just the version of a document; every other field is skipped unparsed.
#[derive(Deserialize)]
struct VersionProbe {
    schema_version: Option<u64>,
}

/// Parses `bytes` (at most `max_bytes` of them) as version `version` of `document`, whose strict shape
/// is `T`: size first, then the version alone, then `T` from the bytes (see the module docs).
///
/// `T` should refuse unknown fields; checks that need more than serde (identifiers kept as strings
/// so that they get their own error, derived fields) are the caller's, after this returns.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    document: Document,
    version: u32,
    max_bytes: usize,
) -> Result<T, DecodeError> {
    decode_versions(bytes, document, version..=version, max_bytes).map(|(_, doc)| doc)
}

/// [`decode`] for a document this build reads in several versions whose shapes one `T` parses (a
/// newer version only adds fields, with defaults); returns the version found, so that the caller
/// fills in what an older version meant.
pub fn decode_versions<T: DeserializeOwned>(
    bytes: &[u8],
    document: Document,
    versions: std::ops::RangeInclusive<u32>,
    max_bytes: usize,
) -> Result<(u32, T), DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            document,
            len: bytes.len(),
            max: max_bytes,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        document,
        reason: escape_controls(&reason),
    };
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let found = probe
        .schema_version
        .ok_or_else(|| malformed("missing field `schema_version`".into()))?;
    let (oldest, newest) = (*versions.start(), *versions.end());
    let Some(version) = u32::try_from(found).ok().filter(|v| versions.contains(v)) else {
        return Err(DecodeError::UnsupportedVersion {
            document,
            found,
            supported: newest,
            oldest,
        });
    };
    let doc = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    Ok((version, doc))
}

/// `1` or `1 to 2`.
fn readable(oldest: u32, newest: u32) -> String {
    if oldest == newest {
        newest.to_string()
    } else {
        format!("{oldest} to {newest}")
    }
}

/// `text` with control characters written as escapes: serde's messages may quote the body.
fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        schema_version: u32,
        name: String,
    }

    fn doc(bytes: &[u8]) -> Result<Doc, DecodeError> {
        decode(bytes, Document::ResultSidecar, 3, 100)
    }

    #[test]
    fn reads_the_strict_shape_of_the_supported_version() {
        assert_eq!(
            doc(br#"{"schema_version": 3, "name": "a"}"#),
            Ok(Doc {
                schema_version: 3,
                name: "a".into()
            })
        );
    }

    #[test]
    fn every_refusal_names_the_document() {
        let too_large = doc(&[b' '; 101]).unwrap_err();
        assert_eq!(
            too_large.to_string(),
            "result sidecar is too large: 101 bytes, limit 100"
        );
        let newer = doc(br#"{"schema_version": 4, "any": ["shape"]}"#).unwrap_err();
        assert_eq!(
            newer.to_string(),
            "unsupported result sidecar schema_version 4, this build reads 3"
        );
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"schema_version": "3"}"#,
            br#"{"schema_version": 3}"#,
            br#"{"schema_version": 3, "name": "a", "extra": 1}"#,
        ] {
            let err = doc(body).unwrap_err();
            assert!(
                matches!(
                    &err,
                    DecodeError::Malformed {
                        document: Document::ResultSidecar,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().starts_with("malformed result sidecar: "),
                "{err}"
            );
        }
        for err in [too_large, newer] {
            assert_eq!(err.document(), Document::ResultSidecar);
        }
    }

    #[test]
    fn the_task_schema_keeps_its_short_name() {
        let err = decode::<Doc>(br#"{"schema_version": 2}"#, Document::Task, 1, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported task schema_version 2, this build reads 1"
        );
    }

    #[test]
    fn control_characters_from_the_body_are_escaped() {
        let err = doc(b"{\"schema_version\": 3, \"name\": \"a\", \"x\\u001b\\n\": 1}").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains("x\\u{1b}\\n"), "{msg}");
    }
}
