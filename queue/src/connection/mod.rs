//! Connecting: the connection's properties (name, automatic recovery and its backoff), the TLS set-up
//! of `amqps://` URIs (`tls`), the one classification of a failed connect into [`QueueError`], and
//! the watcher that logs the connection's life and decides when it has failed (`watcher`).

mod tls;
mod watcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::sync::Mutex;

pub use watcher::RECOVERY_DEADLINE;

use crate::QueueError;
use crate::broker::{Broker, Inner};
use crate::topology::Topology;
use crate::uri::{UriParts, redact_uri};

/// Connection attempts (the first connect and each recovery) before giving up. With the delays below
/// this is about 30 s of retrying: long enough to ride out a broker restart, short enough that a
/// worker whose broker is gone exits and is restarted rather than hanging.
const RECONNECT_ATTEMPTS: usize = 10;
/// First delay between connection attempts; it doubles up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between connection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

static CONNECTION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `connection_name` unique per process and connection, so that the management API can find it.
fn next_connection_name() -> String {
    format!(
        "lucid-queue/{}/{}",
        std::process::id(),
        CONNECTION_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The properties of a broker's connection: its name, and lapin's automatic recovery with
/// [`RECONNECT_ATTEMPTS`] attempts between [`RECONNECT_MIN_DELAY`] and [`RECONNECT_MAX_DELAY`].
fn recovering_properties(connection_name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(RECONNECT_MIN_DELAY)
                .with_max_delay(RECONNECT_MAX_DELAY)
                .with_max_times(RECONNECT_ATTEMPTS)
        })
        .with_connection_name(connection_name.into())
}

/// Opens a connection to `uri`; `cert_chain` (PEM) is the trusted CA chain for `amqps://`.
async fn open_connection(
    uri: &str,
    properties: ConnectionProperties,
    cert_chain: Option<String>,
) -> lapin::Result<Connection> {
    match cert_chain {
        Some(pem) => {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: Some(pem),
            };
            let runtime = lapin::runtime::default_runtime()?;
            Connection::connect_with_config(uri, properties, tls, runtime).await
        }
        None => Connection::connect(uri, properties).await,
    }
}

/// The one place a failed connect becomes a [`QueueError`]: [`QueueError::TlsRefused`] when the TLS
/// layer refused the handshake (see `tls::refusal`), else [`QueueError::Connect`]. The messages are
/// scrubbed of the password.
fn connect_failure(error: &lapin::Error, uri_redacted: &str, parts: &UriParts) -> QueueError {
    match tls::refusal(error) {
        Some(refusal) => QueueError::TlsRefused {
            uri_redacted: uri_redacted.to_string(),
            message: parts.scrub(&refusal.to_string()),
        },
        None => QueueError::Connect {
            uri_redacted: uri_redacted.to_string(),
            message: parts.scrub(&error.to_string()),
        },
    }
}

impl Broker {
    /// Connects to `uri` and declares the topology, idempotently (see [`Topology`]): a durable fanout
    /// dead-letter exchange, a durable quorum dead-letter queue bound to it, and the durable quorum
    /// task queue with `x-dead-letter-exchange` and `x-delivery-limit`. Declaring an existing queue
    /// with other arguments fails with [`QueueError::Declare`] (the broker refuses to change them).
    ///
    /// The URI may hold credentials; only [`redact_uri`]'s form is ever logged or put in errors. For
    /// `amqps://` URIs, the PEM file named by the environment variable [`crate::CA_FILE_ENV`]
    /// (`LUCID_CA_FILE`), when set, is the trusted CA chain, and a server the TLS layer refuses fails
    /// at once with [`QueueError::TlsRefused`] instead of after lapin's retries.
    pub async fn connect(uri: &str, topology: Topology) -> Result<Self, QueueError> {
        let parts = UriParts::parse(uri);
        let uri_redacted = redact_uri(uri);
        let connection_name = next_connection_name();
        let cert_chain = tls::ca_chain(uri)
            .await
            .map_err(|message| QueueError::Connect {
                uri_redacted: uri_redacted.clone(),
                message: parts.scrub(&message),
            })?;
        if uri.starts_with("amqps://")
            && let Some(refused) = tls::probe(uri, &connection_name, cert_chain.clone()).await
        {
            return Err(connect_failure(&refused, &uri_redacted, &parts));
        }
        let properties = recovering_properties(&connection_name);
        let connection = open_connection(uri, properties, cert_chain)
            .await
            .map_err(|e| connect_failure(&e, &uri_redacted, &parts))?;
        tracing::info!(uri = %uri_redacted, connection = %connection_name, "connected to rabbitmq");
        let broker = Broker::watching(
            connection,
            topology,
            uri_redacted,
            parts.vhost,
            connection_name,
        );
        if let Err(error) = broker.declare().await {
            // don't leave a connection (and lapin's I/O thread) behind a failed connect
            if let Err(close_error) = broker.close().await {
                tracing::debug!(%close_error, "closing after a failed declare failed");
            }
            return Err(error);
        }
        Ok(broker)
    }

    /// The broker of an open `connection`, with its watcher started.
    fn watching(
        connection: Connection,
        topology: Topology,
        uri_redacted: String,
        vhost: String,
        connection_name: String,
    ) -> Self {
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let events = tokio::spawn(watcher::watch_connection(
            connection.status().clone(),
            connection.events_listener(),
            connection_name.clone(),
            failed_tx,
        ))
        .abort_handle();
        Broker {
            inner: Arc::new(Inner {
                connection,
                topology,
                uri_redacted,
                vhost,
                connection_name,
                aux: Mutex::new(None),
                events,
                failed,
            }),
        }
    }
}
