//! The [`Broker`] handle: one shared AMQP connection, its channels, and the state every operation
//! needs. What the broker does lives beside it, one concern per module: `connection` (connecting and
//! watching the connection), `topology` (declaring the queues), `publishing` (publishing with
//! confirms), `consumer` (consuming) and `administration` (statistics and the dead-letter tools).

use std::fmt;
use std::sync::Arc;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;

use crate::QueueError;
use crate::topology::Topology;

/// A connection to RabbitMQ with the lucid topology declared. Cheap to clone (an `Arc` inside); all
/// clones share one AMQP connection, and each operation or consumer opens its own channel so that a
/// channel error (which closes that channel) never affects the others.
///
/// The connection has lapin's automatic recovery on: after a connection loss lapin reconnects and
/// reopens channels and consumers. Deliveries received before the loss can no longer be acknowledged
/// ([`QueueError::AckLost`]); the broker requeues them itself. Each loss and each reconnection is
/// logged (`lost the connection to rabbitmq; reconnecting`, `reconnected to rabbitmq`), as is the
/// broker blocking publishes under a memory or disk alarm. A connection that lapin gave up on, or that
/// is still recovering after [`crate::RECOVERY_DEADLINE`], has failed: [`Broker::failed`] resolves and
/// [`crate::Consumer::next`] returns [`QueueError::ConnectionFailed`].
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a [`Broker`] shares.
pub(crate) struct Inner {
    pub(crate) connection: Connection,
    pub(crate) topology: Topology,
    pub(crate) uri_redacted: String,
    pub(crate) vhost: String,
    pub(crate) connection_name: String,
    /// A confirm-mode channel for small publishes (dead letters, raw publishes), reopened when closed.
    pub(crate) aux: Mutex<Option<Channel>>,
    /// The task that logs the connection's lifecycle events (`connection::watcher`); stopped on drop.
    pub(crate) events: tokio::task::AbortHandle,
    /// Set once by the connection watcher when the connection failed for good.
    pub(crate) failed: tokio::sync::watch::Receiver<Option<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("uri", &self.inner.uri_redacted)
            .field("connection_name", &self.inner.connection_name)
            .field("topology", &self.inner.topology)
            .finish()
    }
}

impl Broker {
    /// The topology this broker declared.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The `connection_name` client property of this connection, unique per process and connection;
    /// it identifies the connection in the management API (see
    /// [`crate::ManagementApi::close_connections_named`]).
    pub fn connection_name(&self) -> &str {
        &self.inner.connection_name
    }

    /// The URI with its password redacted.
    pub fn uri_redacted(&self) -> &str {
        &self.inner.uri_redacted
    }

    /// A new channel for one operation or consumer, so that its channel error closes only it.
    pub(crate) async fn channel(&self) -> Result<Channel, QueueError> {
        self.inner
            .connection
            .create_channel()
            .await
            .map_err(|e| QueueError::amqp("cannot open a channel", e))
    }

    /// A new channel in publisher-confirm mode.
    pub(crate) async fn confirm_channel(&self) -> Result<Channel, QueueError> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| QueueError::amqp("cannot enable publisher confirms", e))?;
        Ok(channel)
    }

    /// Whether the connection is up now (not lost, recovering, closing or closed).
    pub fn is_connected(&self) -> bool {
        self.inner.connection.status().connected()
    }

    /// Resolves once the connection has failed for good (see the type's docs), with the reason; it
    /// never resolves while the connection is up or recovering.
    pub async fn failed(&self) -> QueueError {
        let mut failed = self.inner.failed.clone();
        let reason = match failed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // the watcher ended (its broker is being dropped): nothing more will be reported
            Err(_) => None,
        };
        match reason {
            Some(reason) => QueueError::ConnectionFailed {
                connection: self.inner.connection_name.clone(),
                reason,
            },
            None => std::future::pending().await,
        }
    }

    /// Closes the connection (and all its channels: unacked deliveries go back to the queue).
    pub async fn close(&self) -> Result<(), QueueError> {
        if !self.inner.connection.status().connected() {
            return Ok(());
        }
        self.inner
            .connection
            .close(200, "OK".into())
            .await
            .map_err(|e| QueueError::amqp("cannot close the connection", e))
    }
}

/// Closes a channel opened for one operation; a failure only means it is already gone.
pub(crate) async fn close_channel(channel: &Channel) {
    if channel.status().connected()
        && let Err(error) = channel.close(200, "OK".into()).await
    {
        tracing::debug!(%error, "closing a channel failed");
    }
}
