//! The one error type of the crate.

/// What went wrong talking to RabbitMQ. Every variant names the thing it was about (a redacted URI, a
/// queue, a task id or a URL); none of them ever holds a password.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The connection (TCP, AMQP handshake or authentication, the CA file of [`crate::CA_FILE_ENV`])
    /// could not be made. A TLS refusal is [`QueueError::TlsRefused`] instead.
    #[error("cannot connect to {uri_redacted}: {message}")]
    Connect {
        /// The URI with its password replaced by `***` (see [`crate::redact_uri`]).
        uri_redacted: String,
        /// The cause, with any occurrence of the password scrubbed.
        message: String,
    },
    /// The TLS layer refused the handshake with the server: an untrusted, expired or wrongly named
    /// certificate, a fatal alert, no common protocol version or cipher. It repeats on every attempt,
    /// so [`crate::Broker::connect`] reports it at once instead of retrying; the fix is the server's
    /// certificate or the trusted CA file ([`crate::CA_FILE_ENV`]). Recognised by the rustls error
    /// type inside lapin's error, never by its wording.
    #[error("cannot connect to {uri_redacted}: the TLS layer refused the server: {message}")]
    TlsRefused {
        /// The URI with its password replaced by `***` (see [`crate::redact_uri`]).
        uri_redacted: String,
        /// rustls' reason (e.g. `invalid peer certificate: UnknownIssuer`).
        message: String,
    },
    /// Declaring (or passively checking) a queue or exchange failed, e.g. it exists with other arguments.
    #[error("cannot declare {queue}: {message}")]
    Declare {
        /// The queue or exchange.
        queue: String,
        /// The broker's or client's reason.
        message: String,
    },
    /// A publish failed before the broker could confirm it (channel or connection error, message too large).
    #[error("cannot publish task {task_id}: {message}")]
    Publish {
        /// The message id of the task.
        task_id: String,
        /// The reason.
        message: String,
    },
    /// The broker negatively confirmed a publish: the message may not be stored.
    #[error("broker nacked task {task_id}")]
    Nacked {
        /// The message id of the task.
        task_id: String,
    },
    /// The broker returned a mandatory publish as unroutable (the queue or exchange is missing).
    #[error("broker returned task {task_id} as unroutable")]
    Returned {
        /// The message id of the task.
        task_id: String,
    },
    /// An ack or nack could not be sent because the delivery's channel is gone. The broker requeues the
    /// delivery, so it will come again: the caller must treat it as not acknowledged.
    #[error("acknowledgement lost: the delivery's channel closed, the broker will redeliver it")]
    AckLost,
    /// The connection is gone for good: lapin gave up recovering it, or it was still recovering after
    /// [`crate::RECOVERY_DEADLINE`]. The caller must connect afresh; the broker requeues every delivery
    /// that was not acknowledged.
    #[error("the connection {connection} to rabbitmq failed: {reason}")]
    ConnectionFailed {
        /// The connection's name, as the broker's management UI shows it.
        connection: String,
        /// What happened.
        reason: String,
    },
    /// A RabbitMQ management API request failed.
    #[error("management API request {url} failed: {message}")]
    Management {
        /// The URL (never holds credentials: they travel in a header).
        url: String,
        /// The reason.
        message: String,
    },
    /// Any other AMQP failure (channel, consume, get, ack, close).
    #[error("amqp error: {0}")]
    Amqp(String),
}

impl QueueError {
    pub(crate) fn amqp(context: &str, error: impl std::fmt::Display) -> Self {
        QueueError::Amqp(format!("{context}: {error}"))
    }
}
