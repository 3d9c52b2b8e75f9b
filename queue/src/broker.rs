//! The connection, the topology and every operation on the queues.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use lucid_proto::TaskMessage;
use lucid_proto::spec::QueueSection;
use tokio::sync::Mutex;

use crate::consumer::Consumer;
use crate::headers::{self, DELIVERY_COUNT_HEADER, REASON_HEADER, TASK_ID_HEADER};
use crate::management::ManagementApi;
use crate::uri::{UriParts, redact_uri};
use crate::{CA_FILE_ENV, QueueError};

/// Messages fetched per round trip by the `basic_get` loops of [`Broker::retry_dead`] and
/// [`Broker::cancel_run`]; they stay unacked on the channel until their republish is confirmed.
const GET_BATCH: usize = 256;

/// How often the `basic_get` loops poll an empty queue, [`EMPTY_POLL_DELAY`] apart, while its ready
/// count says more messages are due.
const EMPTY_POLLS: u32 = 20;
/// Delay between polls of an empty queue.
const EMPTY_POLL_DELAY: Duration = Duration::from_millis(50);

/// Names and limits of the queues, from the spec's `[queue]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The durable quorum queue tasks are published to and consumed from.
    pub tasks: String,
    /// The durable fanout exchange that receives dead-lettered tasks (by the broker or by a worker).
    pub dead_letter_exchange: String,
    /// The durable quorum queue bound to [`Topology::dead_letter_exchange`]; nothing consumes it.
    pub dead_letter_queue: String,
    /// `x-delivery-limit` of the task queue: deliveries after the first before the broker dead-letters
    /// the task. On RabbitMQ 3.10 every requeue counts, graceful shutdowns included.
    pub delivery_limit: u32,
    /// Largest task body [`Broker::publish_tasks`] accepts, in bytes (workers reject larger ones too).
    pub max_message_bytes: usize,
}

impl Topology {
    /// The topology the spec's `[queue]` section describes.
    pub fn from_section(q: &QueueSection) -> Self {
        Self {
            tasks: q.tasks.clone(),
            dead_letter_exchange: q.dead_letter_exchange.clone(),
            dead_letter_queue: q.dead_letter_queue.clone(),
            delivery_limit: q.delivery_limit,
            max_message_bytes: q.max_message_bytes,
        }
    }
}

/// Queue depths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Tasks ready for delivery (from a passive declare, exact at the time of the call).
    pub ready: u64,
    /// Tasks delivered to workers and not yet acknowledged; only with a [`ManagementApi`], and then
    /// a few seconds stale.
    pub unacked: Option<u64>,
    /// Consumers of the task queue; only with a [`ManagementApi`], and then a few seconds stale.
    pub consumers: Option<u64>,
    /// Messages in the dead-letter queue (from a passive declare).
    pub dead: u64,
}

/// A message in the dead-letter queue, as [`Broker::peek_dead`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id (the task id for tasks published by this crate).
    pub message_id: Option<String>,
    /// The body, unchanged.
    pub body: Vec<u8>,
    /// `x-lucid-reason` when a worker dead-lettered it, else the broker's `x-death` reason
    /// (`delivery_limit` when the task exhausted its deliveries).
    pub reason: Option<String>,
    /// How many times the broker dead-lettered it (sum of the `x-death` counts); 0 for a message only
    /// ever dead-lettered by a worker.
    pub deaths: u32,
}

/// A connection to RabbitMQ with the lucid topology declared. Cheap to clone (an `Arc` inside); all
/// clones share one AMQP connection, and each operation or consumer opens its own channel so that a
/// channel error (which closes that channel) never affects the others.
///
/// The connection has lapin's automatic recovery on: after a connection loss lapin reconnects and
/// reopens channels and consumers. Deliveries received before the loss can no longer be acknowledged
/// ([`QueueError::AckLost`]); the broker requeues them itself. Each loss and each reconnection is
/// logged (`lost the connection to rabbitmq; reconnecting`, `reconnected to rabbitmq`), as is the
/// broker blocking publishes under a memory or disk alarm. A connection that lapin gave up on, or that
/// is still recovering after [`RECOVERY_DEADLINE`], has failed: [`Broker::failed`] resolves and
/// [`Consumer::next`] returns [`QueueError::ConnectionFailed`].
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    topology: Topology,
    uri_redacted: String,
    vhost: String,
    connection_name: String,
    /// A confirm-mode channel for small publishes (dead letters, raw publishes), reopened when closed.
    aux: Mutex<Option<Channel>>,
    /// The task that logs the connection's lifecycle events ([`watch_connection`]); stopped on drop.
    events: tokio::task::AbortHandle,
    /// Set once by [`watch_connection`] when the connection failed for good.
    failed: tokio::sync::watch::Receiver<Option<String>>,
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

/// Connection attempts (the first connect and each recovery) before giving up. With the delays below
/// this is about 30 s of retrying: long enough to ride out a broker restart, short enough that a
/// worker whose broker is gone exits and is restarted rather than hanging.
const RECONNECT_ATTEMPTS: usize = 10;
/// First delay between connection attempts; it doubles up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between connection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

static CONNECTION_COUNTER: AtomicU64 = AtomicU64::new(0);

fn declare_error(queue: &str) -> impl Fn(lapin::Error) -> QueueError + '_ {
    move |e| QueueError::Declare {
        queue: queue.to_string(),
        message: e.to_string(),
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

/// Properties of a task message: persistent JSON whose message id is the task id.
fn task_properties(task_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(task_id.into())
}

/// Turns a publisher confirm into the crate's result for task `task_id`.
pub(crate) fn check_confirm(
    task_id: &str,
    confirmation: lapin::Result<Confirmation>,
) -> Result<(), QueueError> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(QueueError::Returned {
            task_id: task_id.to_string(),
        }),
        Ok(Confirmation::Nack(_)) => Err(QueueError::Nacked {
            task_id: task_id.to_string(),
        }),
        Ok(Confirmation::NotRequested) => Err(QueueError::Publish {
            task_id: task_id.to_string(),
            message: "publisher confirms are not enabled on the channel".into(),
        }),
        Err(e) => Err(QueueError::Publish {
            task_id: task_id.to_string(),
            message: e.to_string(),
        }),
    }
}

fn message_id(message: &BasicGetMessage) -> String {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .map_or_else(String::new, |id| id.as_str().to_string())
}

impl Broker {
    /// Connects to `uri` and declares the topology, idempotently: a durable fanout dead-letter exchange,
    /// a durable quorum dead-letter queue bound to it, and the durable quorum task queue with
    /// `x-dead-letter-exchange` and `x-delivery-limit`. Declaring an existing queue with other
    /// arguments fails with [`QueueError::Declare`] (the broker refuses to change them).
    ///
    /// The URI may hold credentials; only [`redact_uri`]'s form is ever logged or put in errors. For
    /// `amqps://` URIs, the PEM file named by the environment variable [`CA_FILE_ENV`]
    /// (`LUCID_CA_FILE`), when set, is the trusted CA chain.
    pub async fn connect(uri: &str, topology: Topology) -> Result<Self, QueueError> {
        let parts = UriParts::parse(uri);
        let uri_redacted = redact_uri(uri);
        let connection_name = format!(
            "lucid-queue/{}/{}",
            std::process::id(),
            CONNECTION_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let connect_error = |message: String| QueueError::Connect {
            uri_redacted: uri_redacted.clone(),
            message: parts.scrub(&message),
        };
        let properties = ConnectionProperties::default()
            .enable_auto_recover()
            .configure_backoff(|backoff| {
                backoff
                    .with_min_delay(RECONNECT_MIN_DELAY)
                    .with_max_delay(RECONNECT_MAX_DELAY)
                    .with_max_times(RECONNECT_ATTEMPTS)
            })
            .with_connection_name(connection_name.clone().into());
        // an empty variable counts as unset, as it does for the S3 endpoint
        let ca_file = std::env::var_os(CA_FILE_ENV)
            .filter(|path| !path.is_empty() && uri.starts_with("amqps://"));
        let cert_chain = match ca_file {
            Some(path) => {
                let pem = tokio::fs::read_to_string(&path).await.map_err(|e| {
                    connect_error(format!(
                        "cannot read CA file {} (from {CA_FILE_ENV}): {e}",
                        path.to_string_lossy()
                    ))
                })?;
                // lapin would skip a file without certificates and trust the platform's roots
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(connect_error(format!(
                        "CA file {} (from {CA_FILE_ENV}) holds no PEM CERTIFICATE block",
                        path.to_string_lossy()
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        if uri.starts_with("amqps://") {
            // lapin retries every failed connect for about 30 s, a certificate refusal included,
            // which fails the same way every time: one attempt without retries finds it at once
            let probe = ConnectionProperties::default()
                .with_connection_name(format!("{connection_name}/tls-check").into());
            match open_connection(uri, probe, cert_chain.clone()).await {
                Ok(connection) => {
                    if let Err(error) = connection.close(200, "OK".into()).await {
                        tracing::debug!(%error, "closing the TLS check connection failed");
                    }
                }
                Err(error) if is_certificate_refusal(&error.to_string()) => {
                    return Err(connect_error(error.to_string()));
                }
                // anything else (the broker down, say) is for the retrying connect below
                Err(_) => {}
            }
        }
        let connection = open_connection(uri, properties, cert_chain)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        tracing::info!(uri = %uri_redacted, connection = %connection_name, "connected to rabbitmq");
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let events = tokio::spawn(watch_connection(
            connection.status().clone(),
            connection.events_listener(),
            connection_name.clone(),
            failed_tx,
        ))
        .abort_handle();
        let broker = Broker {
            inner: Arc::new(Inner {
                connection,
                topology,
                uri_redacted,
                vhost: parts.vhost,
                connection_name,
                aux: Mutex::new(None),
                events,
                failed,
            }),
        };
        if let Err(error) = broker.declare().await {
            // don't leave a connection (and lapin's I/O thread) behind a failed connect
            if let Err(close_error) = broker.close().await {
                tracing::debug!(%close_error, "closing after a failed declare failed");
            }
            return Err(error);
        }
        Ok(broker)
    }

    async fn declare(&self) -> Result<(), QueueError> {
        let t = &self.inner.topology;
        let channel = self.channel().await?;
        channel
            .exchange_declare(
                t.dead_letter_exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(declare_error(&t.dead_letter_exchange))?;
        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), headers::long_string("quorum"));
        channel
            .queue_declare(t.dead_letter_queue.as_str().into(), durable(), dead_args)
            .await
            .map_err(declare_error(&t.dead_letter_queue))?;
        channel
            .queue_bind(
                t.dead_letter_queue.as_str().into(),
                t.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(declare_error(&t.dead_letter_queue))?;
        let mut task_args = FieldTable::default();
        task_args.insert("x-queue-type".into(), headers::long_string("quorum"));
        task_args.insert(
            "x-dead-letter-exchange".into(),
            headers::long_string(&t.dead_letter_exchange),
        );
        task_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(t.delivery_limit)),
        );
        channel
            .queue_declare(t.tasks.as_str().into(), durable(), task_args)
            .await
            .map_err(declare_error(&t.tasks))?;
        close_channel(&channel).await;
        Ok(())
    }

    /// The topology this broker declared.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The `connection_name` client property of this connection, unique per process and connection;
    /// it identifies the connection in the management API (see
    /// [`ManagementApi::close_connections_named`]).
    pub fn connection_name(&self) -> &str {
        &self.inner.connection_name
    }

    /// The URI with its password redacted.
    pub fn uri_redacted(&self) -> &str {
        &self.inner.uri_redacted
    }

    pub(crate) async fn channel(&self) -> Result<Channel, QueueError> {
        self.inner
            .connection
            .create_channel()
            .await
            .map_err(|e| QueueError::amqp("cannot open a channel", e))
    }

    async fn confirm_channel(&self) -> Result<Channel, QueueError> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| QueueError::amqp("cannot enable publisher confirms", e))?;
        Ok(channel)
    }

    /// The shared confirm-mode channel for small publishes, reopened if it was closed.
    async fn aux_channel(&self) -> Result<Channel, QueueError> {
        let mut guard = self.inner.aux.lock().await;
        if let Some(channel) = guard.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel = self.confirm_channel().await?;
        *guard = Some(channel.clone());
        Ok(channel)
    }

    /// Publishes one message with `mandatory` on the shared confirm channel and waits for its confirm.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        task_id: &str,
    ) -> Result<(), QueueError> {
        let channel = self.aux_channel().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                MANDATORY,
                body,
                properties,
            )
            .await
            .map_err(|e| QueueError::Publish {
                task_id: task_id.to_string(),
                message: e.to_string(),
            })?;
        check_confirm(task_id, confirm.await)
    }

    /// Publishes `tasks` to the task queue and returns how many the broker confirmed (all of them on
    /// success).
    ///
    /// Each message is persistent JSON (`delivery_mode` 2, `content_type` `application/json`) with the
    /// task id as `message_id`, published `mandatory` on the default exchange. Publisher confirms are
    /// pipelined: at most `window` (at least 1) publishes await their confirm at any time.
    ///
    /// A body larger than [`Topology::max_message_bytes`] is refused before anything is sent for it.
    /// On the first failure (nack, returned message, channel error) the call stops and returns that
    /// error naming the task; tasks before it may be queued. Publishing the same tasks again is safe
    /// for workers (task ids and object keys are deterministic) but leaves duplicates in the queue.
    pub async fn publish_tasks(
        &self,
        tasks: &[TaskMessage],
        window: usize,
    ) -> Result<u64, QueueError> {
        let window = window.max(1);
        let t = &self.inner.topology;
        let channel = self.confirm_channel().await?;
        let result = async {
            let mut pending = FuturesOrdered::new();
            let mut confirmed = 0u64;
            for task in tasks {
                let body = task.encode();
                if body.len() > t.max_message_bytes {
                    return Err(QueueError::Publish {
                        task_id: task.task_id.clone(),
                        message: format!(
                            "body is {} bytes, queue.max_message_bytes is {}",
                            body.len(),
                            t.max_message_bytes
                        ),
                    });
                }
                let confirm: PublisherConfirm = channel
                    .basic_publish(
                        "".into(),
                        t.tasks.as_str().into(),
                        MANDATORY,
                        &body,
                        task_properties(&task.task_id),
                    )
                    .await
                    .map_err(|e| QueueError::Publish {
                        task_id: task.task_id.clone(),
                        message: e.to_string(),
                    })?;
                let id = task.task_id.as_str();
                pending.push_back(async move { (id, confirm.await) });
                while pending.len() >= window {
                    if let Some((id, confirmation)) = pending.next().await {
                        check_confirm(id, confirmation)?;
                        confirmed += 1;
                    }
                }
            }
            while let Some((id, confirmation)) = pending.next().await {
                check_confirm(id, confirmation)?;
                confirmed += 1;
            }
            Ok(confirmed)
        }
        .await;
        close_channel(&channel).await;
        let confirmed = result?;
        tracing::debug!(confirmed, queue = %t.tasks, "published tasks");
        Ok(confirmed)
    }

    /// Publishes `body` as is (persistent, `message_id` set, no content type) to the task queue and
    /// waits for the confirm. Meant for tests that inject malformed messages.
    pub async fn publish_raw(&self, body: &[u8], message_id: &str) -> Result<(), QueueError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(message_id.into());
        self.publish_confirmed("", &self.inner.topology.tasks, body, properties, message_id)
            .await
    }

    /// Starts a consumer on the task queue on its own channel, with a per-consumer (not global)
    /// prefetch of `prefetch` unacked deliveries (quorum queues refuse global QoS). `consumer_tag` must
    /// be unique on the connection; an empty tag lets the broker pick one.
    pub async fn consume(&self, consumer_tag: &str, prefetch: u16) -> Result<Consumer, QueueError> {
        let channel = self.channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| QueueError::amqp("cannot set prefetch", e))?;
        let consumer = channel
            .basic_consume(
                self.inner.topology.tasks.as_str().into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                QueueError::amqp(&format!("cannot consume {}", self.inner.topology.tasks), e)
            })?;
        Ok(Consumer::new(channel, consumer, self.clone()))
    }

    /// Ready counts of both queues (passive declares) and, when `api` is given, the task queue's unacked
    /// count and consumers from the management API (a few seconds stale).
    pub async fn stats(&self, api: Option<&ManagementApi>) -> Result<QueueStats, QueueError> {
        let t = &self.inner.topology;
        let (ready, dead) = {
            let channel = self.channel().await?;
            let tasks = channel
                .queue_declare(t.tasks.as_str().into(), passive(), FieldTable::default())
                .await
                .map_err(declare_error(&t.tasks))?;
            let dead = channel
                .queue_declare(
                    t.dead_letter_queue.as_str().into(),
                    passive(),
                    FieldTable::default(),
                )
                .await
                .map_err(declare_error(&t.dead_letter_queue))?;
            close_channel(&channel).await;
            (
                u64::from(tasks.message_count()),
                u64::from(dead.message_count()),
            )
        };
        let (unacked, consumers) = match api {
            Some(api) => {
                let info = api.queue_info(&self.inner.vhost, &t.tasks).await?;
                (Some(info.messages_unacknowledged), Some(info.consumers))
            }
            None => (None, None),
        };
        Ok(QueueStats {
            ready,
            unacked,
            consumers,
            dead,
        })
    }

    /// Moves every message of the dead-letter queue back to the task queue and returns how many moved.
    ///
    /// A `basic_get` loop: each batch is republished (persistent, mandatory, with confirms) without the
    /// `x-lucid-reason`, `x-lucid-task-id` and `x-delivery-count` headers, and acked in the dead-letter
    /// queue only once confirmed, so a failure never loses a message (at worst it is in both queues).
    /// The moved tasks start with a fresh delivery count. The loop stops after the number of messages
    /// the dead-letter queue held when it started.
    pub async fn retry_dead(&self) -> Result<u64, QueueError> {
        let t = &self.inner.topology;
        let dead = t.dead_letter_queue.clone();
        let tasks = t.tasks.clone();
        self.drain(&dead, |_| Some(tasks.clone()))
            .await
            .map(|(moved, _)| moved)
    }

    /// Drops the ready tasks of run `run` from the task queue and returns how many were dropped.
    ///
    /// A `basic_get` loop over as many messages as the queue held when it started: tasks of `run`
    /// (message id `"{run}/..."`) are acked, which deletes them; every other message is republished to
    /// the back of the queue (with confirm, losing its place and its delivery count) before its ack.
    ///
    /// Tasks that workers hold unacked at the time are not touched: they finish (or return to the queue
    /// and are then consumed) as usual. Workers should therefore also skip tasks of cancelled runs.
    pub async fn cancel_run(&self, run: &str) -> Result<u64, QueueError> {
        let tasks = self.inner.topology.tasks.clone();
        let prefix = format!("{run}/");
        let (_, dropped) = self
            .drain(&tasks, |message| {
                if message_id(message).starts_with(&prefix) {
                    None
                } else {
                    Some(tasks.clone())
                }
            })
            .await?;
        tracing::info!(run, dropped, "cancelled queued tasks of run");
        Ok(dropped)
    }

    /// Gets up to the current ready count of `queue` in batches; `route` says where each message goes
    /// (`Some(queue)`: republished there; `None`: dropped). Returns (republished, dropped).
    async fn drain(
        &self,
        queue: &str,
        route: impl Fn(&BasicGetMessage) -> Option<String>,
    ) -> Result<(u64, u64), QueueError> {
        let channel = self.confirm_channel().await?;
        let result = async {
            let initial = channel
                .queue_declare(queue.into(), passive(), FieldTable::default())
                .await
                .map_err(declare_error(queue))?
                .message_count();
            let mut remaining = usize::try_from(initial).unwrap_or(usize::MAX);
            let (mut republished, mut dropped) = (0u64, 0u64);
            let mut empty_polls = 0;
            while remaining > 0 {
                let mut batch = Vec::new();
                while batch.len() < GET_BATCH.min(remaining) {
                    match channel
                        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                        .await
                        .map_err(|e| QueueError::amqp(&format!("cannot get from {queue}"), e))?
                    {
                        Some(message) => {
                            empty_polls = 0;
                            batch.push(message);
                        }
                        // A quorum queue counts messages that a closing channel is still returning
                        // (e.g. right after `peek_dead`) but delivers them only once they are back:
                        // poll a little before believing the count was stale.
                        None if batch.is_empty() && empty_polls < EMPTY_POLLS => {
                            empty_polls += 1;
                            tokio::time::sleep(EMPTY_POLL_DELAY).await;
                        }
                        None => break,
                    }
                }
                let Some(last) = batch.last() else { break };
                remaining -= batch.len();
                let mut pending = FuturesOrdered::new();
                for message in &batch {
                    let Some(target) = route(message) else {
                        dropped += 1;
                        continue;
                    };
                    let id = message_id(message);
                    let stripped = headers::without(
                        message.delivery.properties.headers().as_ref(),
                        &[REASON_HEADER, TASK_ID_HEADER, DELIVERY_COUNT_HEADER],
                    );
                    let properties = message
                        .delivery
                        .properties
                        .clone()
                        .with_delivery_mode(2)
                        .with_headers(stripped);
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            target.as_str().into(),
                            MANDATORY,
                            &message.delivery.data,
                            properties,
                        )
                        .await
                        .map_err(|e| QueueError::Publish {
                            task_id: id.clone(),
                            message: e.to_string(),
                        })?;
                    pending.push_back(async move { (id, confirm.await) });
                }
                while let Some((id, confirmation)) = pending.next().await {
                    check_confirm(&id, confirmation)?;
                    republished += 1;
                }
                let acked = last
                    .delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .map_err(|e| QueueError::amqp(&format!("cannot ack in {queue}"), e))?;
                if !acked {
                    return Err(QueueError::AckLost);
                }
            }
            Ok((republished, dropped))
        }
        .await;
        // closing returns whatever is still unacked (after a failure) to its queue
        close_channel(&channel).await;
        result
    }

    /// Reads up to `limit` messages of the dead-letter queue without removing them.
    ///
    /// The messages are fetched with `basic_get` and then returned with a nack (requeue). That counts
    /// as a delivery in the dead-letter queue, which is harmless there: it has no delivery limit and
    /// nothing consumes it. The call returns once the queue counts the messages as ready again (or
    /// after about a second). Meant for verification and operator tools, not for concurrent use with
    /// [`Broker::retry_dead`].
    pub async fn peek_dead(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let queue = self.inner.topology.dead_letter_queue.as_str();
        let channel = self.channel().await?;
        let result = async {
            let mut letters = Vec::new();
            let mut last = None;
            while letters.len() < limit {
                let Some(message) = channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(|e| QueueError::amqp(&format!("cannot get from {queue}"), e))?
                else {
                    break;
                };
                let h = message.delivery.properties.headers().as_ref();
                letters.push(DeadLetter {
                    message_id: message
                        .delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|id| id.as_str().to_string()),
                    reason: headers::string(h, REASON_HEADER).or_else(|| headers::death_reason(h)),
                    deaths: headers::death_count(h),
                    body: message.delivery.data.clone(),
                });
                last = Some(message);
            }
            if let Some(last) = last {
                last.delivery
                    .acker
                    .nack(BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    })
                    .await
                    .map_err(|e| {
                        QueueError::amqp(&format!("cannot return messages to {queue}"), e)
                    })?;
                // The queue takes the returned messages back asynchronously and counts them as ready
                // only then; wait for that so that a `stats` or `retry_dead` right after sees them.
                let peeked = u32::try_from(letters.len()).unwrap_or(u32::MAX);
                for _ in 0..EMPTY_POLLS {
                    let ready = channel
                        .queue_declare(queue.into(), passive(), FieldTable::default())
                        .await
                        .map_err(declare_error(queue))?
                        .message_count();
                    if ready >= peeked {
                        break;
                    }
                    tokio::time::sleep(EMPTY_POLL_DELAY).await;
                }
            }
            Ok(letters)
        }
        .await;
        close_channel(&channel).await;
        result
    }

    /// Deletes the task queue, the dead-letter queue and the dead-letter exchange, with their messages.
    /// For tests and teardown of throwaway environments.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let t = &self.inner.topology;
        let channel = self.channel().await?;
        for queue in [&t.tasks, &t.dead_letter_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(declare_error(queue))?;
        }
        channel
            .exchange_delete(
                t.dead_letter_exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(declare_error(&t.dead_letter_exchange))?;
        close_channel(&channel).await;
        Ok(())
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

/// Whether a failed connect's message is the TLS layer refusing the server's certificate (rustls:
/// `invalid peer certificate: UnknownIssuer`, `… NotValidForName`, `… Expired`). Such a refusal
/// repeats on every attempt, so it is not worth retrying.
fn is_certificate_refusal(message: &str) -> bool {
    message.to_ascii_lowercase().contains("certificate")
}

/// How often [`watch_connection`] looks at the connection's state. lapin announces a reconnection
/// and a failure as events, but a loss it is recovering from only through the connection's state
/// (`Reconnecting`, then `Connecting` during each attempt).
const CONNECTION_POLL: Duration = Duration::from_millis(250);

/// How long a lost connection may stay in lapin's recovery before it counts as failed
/// ([`QueueError::ConnectionFailed`]): twice lapin's retry window ([`RECONNECT_ATTEMPTS`], about 30 s
/// with refused connects). It is needed because lapin 4.12 gives up a recovery whose reconnect
/// attempts all failed without telling anyone: its I/O thread ends, the connection stays in
/// recovery (`Connecting` or `Reconnecting`) forever, and a consumer waits forever. The e2e test
/// of an outage longer than lapin's recovery found it.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Watches a connection after it was opened. It logs what happens to it, so that an operator sees a
/// broker outage even on an idle worker, whose recovery lapin otherwise does silently: each loss (lapin
/// then reconnects, see [`RECONNECT_ATTEMPTS`]), each reconnection, a failure, and the broker's flow
/// control (a memory or disk alarm blocks publishing on every connection until it clears). It sets
/// `failed` when lapin gave up, or when the connection is still recovering after
/// [`RECOVERY_DEADLINE`].
async fn watch_connection(
    status: lapin::ConnectionStatus,
    events: impl futures::Stream<Item = lapin::Event> + Send + 'static,
    connection: String,
    failed: tokio::sync::watch::Sender<Option<String>>,
) {
    let fail = |reason: String| {
        tracing::error!(%connection, %reason, "the connection to rabbitmq failed");
        failed.send_replace(Some(reason));
    };
    futures::pin_mut!(events);
    let mut poll = tokio::time::interval(CONNECTION_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // when the current loss began; each loss and each reconnection is logged once
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        if failed.borrow().is_some() {
            return;
        }
        tokio::select! {
            _ = poll.tick() => {
                // a recovery goes through `Reconnecting` and `Connecting` (a closing or closed
                // connection is our own doing)
                let recovering = status.reconnecting() || status.connecting();
                match lost_since {
                    _ if status.errored() => fail("lapin gave up recovering it".into()),
                    None if recovering => {
                        lost_since = Some(std::time::Instant::now());
                        tracing::warn!(%connection, "lost the connection to rabbitmq; reconnecting");
                    }
                    Some(since) if recovering && since.elapsed() >= RECOVERY_DEADLINE => fail(
                        format!("still reconnecting after {} s", RECOVERY_DEADLINE.as_secs()),
                    ),
                    _ => {}
                }
            }
            event = events.next() => match event {
                None => return,
                Some(lapin::Event::Connected) => {
                    lost_since = None;
                    tracing::info!(%connection, "reconnected to rabbitmq");
                }
                // a soft error closes one channel (e.g. a passive declare of a missing queue); the
                // operation that caused it reports it
                Some(lapin::Event::Error(error)) if error.is_amqp_soft_error() => {
                    tracing::debug!(%error, %connection, "a channel closed with an error");
                }
                Some(lapin::Event::Error(error)) => fail(format!("lapin gave up recovering it: {error}")),
                Some(lapin::Event::ConnectionBlocked(reason)) => {
                    tracing::warn!(%reason, %connection, "rabbitmq blocked this connection's publishing");
                }
                Some(lapin::Event::ConnectionUnblocked) => {
                    tracing::info!(%connection, "rabbitmq unblocked this connection's publishing");
                }
                Some(other) => tracing::debug!(event = ?other, %connection, "connection event"),
            },
        }
    }
}

/// Closes a channel opened for one operation; a failure only means it is already gone.
async fn close_channel(channel: &Channel) {
    if channel.status().connected()
        && let Err(error) = channel.close(200, "OK".into()).await
    {
        tracing::debug!(%error, "closing a channel failed");
    }
}
