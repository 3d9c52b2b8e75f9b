//! The connection watcher: it logs what happens to a broker's connection, so that an operator sees a
//! broker outage even on an idle worker, whose recovery lapin otherwise does silently, and it decides
//! when the connection has failed for good.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

/// How often [`watch_connection`] looks at the connection's state. lapin announces a reconnection
/// and a failure as events, but a loss it is recovering from only through the connection's state
/// (`Reconnecting`, then `Connecting` during each attempt).
const CONNECTION_POLL: Duration = Duration::from_millis(250);

/// How long a lost connection may stay in lapin's recovery before it counts as failed
/// ([`crate::QueueError::ConnectionFailed`]): twice lapin's retry window (about 30 s of reconnect
/// attempts with refused connects). It is needed because lapin 4.12 gives up a recovery whose
/// reconnect attempts all failed without telling anyone: its I/O thread ends, the connection stays in
/// recovery (`Connecting` or `Reconnecting`) forever, and a consumer waits forever. The e2e test
/// of an outage longer than lapin's recovery found it.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Watches a connection after it was opened, until it failed or its events end. It logs each loss
/// (lapin then reconnects), each reconnection, a failure, and the broker's flow control (a memory or
/// disk alarm blocks publishing on every connection until it clears). It sets `failed` when lapin
/// gave up, or when the connection is still recovering after [`RECOVERY_DEADLINE`].
pub(super) async fn watch_connection(
    status: lapin::ConnectionStatus,
    events: impl futures::Stream<Item = lapin::Event> + Send + 'static,
    connection: String,
    failed: watch::Sender<Option<String>>,
) {
    let mut watch = Watch {
        connection,
        failed,
        lost_since: None,
    };
    futures::pin_mut!(events);
    let mut poll = tokio::time::interval(CONNECTION_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !watch.has_failed() {
        tokio::select! {
            _ = poll.tick() => {
                // a recovery goes through `Reconnecting` and `Connecting` (a closing or closed
                // connection is our own doing)
                let recovering = status.reconnecting() || status.connecting();
                watch.state(recovering, status.errored(), Instant::now());
            }
            event = events.next() => match event {
                None => return,
                Some(event) => watch.event(event),
            },
        }
    }
}

/// What the watcher knows of one connection.
struct Watch {
    connection: String,
    failed: watch::Sender<Option<String>>,
    /// When the current loss began; each loss and each reconnection is logged once.
    lost_since: Option<Instant>,
}

impl Watch {
    fn has_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    fn fail(&self, reason: String) {
        tracing::error!(connection = %self.connection, %reason, "the connection to rabbitmq failed");
        self.failed.send_replace(Some(reason));
    }

    /// The connection's state at `now`: `recovering` (lapin is reconnecting) or `errored` (lapin gave
    /// up).
    fn state(&mut self, recovering: bool, errored: bool, now: Instant) {
        let connection = &self.connection;
        match self.lost_since {
            _ if errored => self.fail("lapin gave up recovering it".into()),
            None if recovering => {
                self.lost_since = Some(now);
                tracing::warn!(%connection, "lost the connection to rabbitmq; reconnecting");
            }
            Some(since) if recovering && now.duration_since(since) >= RECOVERY_DEADLINE => self
                .fail(format!(
                    "still reconnecting after {} s",
                    RECOVERY_DEADLINE.as_secs()
                )),
            _ => {}
        }
    }

    /// One of the connection's events.
    fn event(&mut self, event: lapin::Event) {
        let connection = &self.connection;
        match event {
            lapin::Event::Connected => {
                self.lost_since = None;
                tracing::info!(%connection, "reconnected to rabbitmq");
            }
            // a soft error closes one channel (e.g. a passive declare of a missing queue); the
            // operation that caused it reports it
            lapin::Event::Error(error) if error.is_amqp_soft_error() => {
                tracing::debug!(%error, %connection, "a channel closed with an error");
            }
            lapin::Event::Error(error) => {
                self.fail(format!("lapin gave up recovering it: {error}"));
            }
            lapin::Event::ConnectionBlocked(reason) => {
                tracing::warn!(%reason, %connection, "rabbitmq blocked this connection's publishing");
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!(%connection, "rabbitmq unblocked this connection's publishing");
            }
            other => tracing::debug!(event = ?other, %connection, "connection event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher() -> (Watch, watch::Receiver<Option<String>>) {
        let (failed, receiver) = watch::channel(None);
        let state = Watch {
            connection: "test".into(),
            failed,
            lost_since: None,
        };
        (state, receiver)
    }

    #[test]
    fn a_recovery_past_the_deadline_fails_and_a_reconnection_resets_it() {
        let (mut watch, failed) = watcher();
        let start = Instant::now();
        watch.state(true, false, start);
        watch.state(true, false, start + RECOVERY_DEADLINE / 2);
        assert!(!watch.has_failed());
        // reconnected: the next loss starts its own deadline
        watch.event(lapin::Event::Connected);
        watch.state(false, false, start + RECOVERY_DEADLINE);
        watch.state(true, false, start + RECOVERY_DEADLINE);
        watch.state(true, false, start + RECOVERY_DEADLINE * 3 / 2);
        assert!(!watch.has_failed());
        watch.state(true, false, start + RECOVERY_DEADLINE * 2);
        assert_eq!(
            failed.borrow().as_deref(),
            Some(format!("still reconnecting after {} s", RECOVERY_DEADLINE.as_secs()).as_str())
        );
    }

    #[test]
    fn lapin_giving_up_fails_at_once() {
        let (mut watch, failed) = watcher();
        watch.state(false, true, Instant::now());
        assert_eq!(
            failed.borrow().as_deref(),
            Some("lapin gave up recovering it")
        );
        let (mut watch, failed) = watcher();
        watch.event(lapin::Event::Error(
            lapin::ErrorKind::MissingHeartbeatError.into(),
        ));
        assert!(failed.borrow().is_some());
    }
}
