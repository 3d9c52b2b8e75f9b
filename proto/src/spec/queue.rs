//! The `[queue]` section: the broker's address, the queue names and the message limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{InvalidField, check_range};
use super::uri::{has_password, strip_userinfo};

/// The environment variable holding the full AMQP URI, credentials included.
pub const AMQP_URI_ENV: &str = "LUCID_AMQP_URI";

/// The `[queue]` section: broker address, queue names and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// AMQP URI without a password; see [`QueueSection::resolve_uri`] for where credentials come from.
    pub uri: String,
    /// Path of a file holding the full AMQP URI, credentials included.
    pub uri_file: Option<PathBuf>,
    /// Name of the (quorum) task queue.
    pub tasks: String,
    /// Exchange that receives tasks that exhausted their delivery limit.
    pub dead_letter_exchange: String,
    /// Queue bound to the dead-letter exchange.
    pub dead_letter_queue: String,
    /// Per-consumer prefetch (unacked deliveries per worker).
    pub prefetch: u16,
    /// Deliveries of one task before it is dead-lettered (`x-delivery-limit`).
    pub delivery_limit: u32,
    /// Largest task message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            uri: "amqp://127.0.0.1:5672/%2f".into(),
            uri_file: None,
            tasks: "lucid.tasks".into(),
            dead_letter_exchange: "lucid.dlx".into(),
            dead_letter_queue: "lucid.dead".into(),
            prefetch: 256,
            delivery_limit: 5,
            max_message_bytes: 65_536,
        }
    }
}

impl QueueSection {
    /// The URI to connect with: `env_uri` (the value of [`AMQP_URI_ENV`]) if set, else the trimmed
    /// contents of `queue.uri_file` if read, else `queue.uri`. The caller does the reading.
    pub fn resolve_uri(&self, env_uri: Option<&str>, file_contents: Option<&str>) -> String {
        env_uri
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| file_contents.map(str::trim).filter(|s| !s.is_empty()))
            .unwrap_or(&self.uri)
            .to_owned()
    }

    /// Checks the URI (no password), the queue names and the limits; errors name the field.
    pub(super) fn validate(&self) -> Result<(), InvalidField> {
        if !(self.uri.starts_with("amqp://") || self.uri.starts_with("amqps://")) {
            return Err(InvalidField::new(
                "queue.uri",
                format!(
                    "must start with amqp:// or amqps://, got {:?}",
                    strip_userinfo(&self.uri)
                ),
            ));
        }
        if has_password(&self.uri) {
            return Err(InvalidField::new(
                "queue.uri",
                format!(
                    "must not contain a password; put the full URI in env {AMQP_URI_ENV} or in the file named by queue.uri_file"
                ),
            ));
        }
        for (field, name) in [
            ("queue.tasks", &self.tasks),
            ("queue.dead_letter_exchange", &self.dead_letter_exchange),
            ("queue.dead_letter_queue", &self.dead_letter_queue),
        ] {
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(InvalidField::new(
                    field,
                    format!("must be 1 to 255 bytes without control characters, got {name:?}"),
                ));
            }
            if name.starts_with("amq.") {
                return Err(InvalidField::new(
                    field,
                    format!("names starting with amq. are reserved by the broker, got {name:?}"),
                ));
            }
        }
        check_range("queue.prefetch", self.prefetch, 1, u16::MAX)?;
        check_range("queue.delivery_limit", self.delivery_limit, 1, 1000)?;
        check_range(
            "queue.max_message_bytes",
            self.max_message_bytes,
            1024,
            128 << 20,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_support::{invalid, minimal};

    #[test]
    fn queue_validation_messages_name_the_field() {
        let mut spec = minimal();
        spec.queue.prefetch = 0;
        assert_eq!(
            invalid(&spec),
            "queue.prefetch: must be between 1 and 65535, got 0"
        );

        let mut spec = minimal();
        spec.queue.delivery_limit = 0;
        assert!(invalid(&spec).starts_with("queue.delivery_limit: "));

        let mut spec = minimal();
        spec.queue.tasks = "amq.tasks".into();
        assert!(invalid(&spec).starts_with("queue.tasks: names starting with amq."));
    }

    #[test]
    fn resolve_uri_prefers_env_then_file_then_spec() {
        let q = QueueSection::default();
        assert_eq!(
            q.resolve_uri(Some("amqp://a:b@h/"), Some("amqp://c:d@h/")),
            "amqp://a:b@h/"
        );
        assert_eq!(
            q.resolve_uri(Some(" "), Some("amqp://c:d@h/\n")),
            "amqp://c:d@h/"
        );
        assert_eq!(q.resolve_uri(None, None), "amqp://127.0.0.1:5672/%2f");
    }
}
