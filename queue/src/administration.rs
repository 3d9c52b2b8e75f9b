//! Operator tools on the queues: statistics, moving dead letters back (`retry-dead`), dropping a run's
//! queued tasks (`cancel`), and reading the dead-letter queue without consuming it. All but the
//! statistics are `basic_get` loops over a snapshot of a queue's ready count.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use crate::QueueError;
use crate::broker::{Broker, close_channel};
use crate::headers::{self, DELIVERY_COUNT_HEADER, REASON_HEADER, TASK_ID_HEADER};
use crate::management::ManagementApi;
use crate::publishing::{MANDATORY, check_confirm, publish_error};
use crate::topology::{declare_error, passive};

/// Messages fetched per round trip by the `basic_get` loops of [`Broker::retry_dead`] and
/// [`Broker::cancel_run`]; they stay unacked on the channel until their republish is confirmed.
const GET_BATCH: usize = 256;

/// How often the `basic_get` loops poll an empty queue, [`EMPTY_POLL_DELAY`] apart, while its ready
/// count says more messages are due.
const EMPTY_POLLS: u32 = 20;
/// Delay between polls of an empty queue.
const EMPTY_POLL_DELAY: Duration = Duration::from_millis(50);

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

impl DeadLetter {
    fn read(message: &BasicGetMessage) -> Self {
        let properties = &message.delivery.properties;
        let h = properties.headers().as_ref();
        DeadLetter {
            message_id: properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_string()),
            reason: headers::string(h, REASON_HEADER).or_else(|| headers::death_reason(h)),
            deaths: headers::death_count(h),
            body: message.delivery.data.clone(),
        }
    }
}

/// The message id, empty when the message has none.
fn message_id(message: &BasicGetMessage) -> String {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .map_or_else(String::new, |id| id.as_str().to_string())
}

/// The ready count of `queue`, exact at the time of the call (a passive declare).
async fn ready_count(channel: &Channel, queue: &str) -> Result<u32, QueueError> {
    let declared = channel
        .queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .map_err(declare_error(queue))?;
    Ok(declared.message_count())
}

/// One `basic_get` (with acks) from `queue`; `None` when it has nothing ready.
async fn get_one(channel: &Channel, queue: &str) -> Result<Option<BasicGetMessage>, QueueError> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| QueueError::amqp(&format!("cannot get from {queue}"), e))
}

/// Up to `max` messages of `queue`, unacked; empty once the queue stayed empty for
/// [`EMPTY_POLLS`] polls.
async fn get_batch(
    channel: &Channel,
    queue: &str,
    max: usize,
) -> Result<Vec<BasicGetMessage>, QueueError> {
    let mut batch = Vec::new();
    let mut empty_polls = 0;
    while batch.len() < max {
        match get_one(channel, queue).await? {
            Some(message) => {
                empty_polls = 0;
                batch.push(message);
            }
            // A quorum queue counts messages that a closing channel is still returning (e.g. right
            // after `peek_dead`) but delivers them only once they are back: poll a little before
            // believing the count was stale.
            None if batch.is_empty() && empty_polls < EMPTY_POLLS => {
                empty_polls += 1;
                tokio::time::sleep(EMPTY_POLL_DELAY).await;
            }
            None => break,
        }
    }
    Ok(batch)
}

/// The properties of a moved message: persistent, without this crate's dead-letter headers and the
/// delivery count, so that it starts afresh.
fn moved_properties(message: &BasicGetMessage) -> BasicProperties {
    let stripped = headers::without(
        message.delivery.properties.headers().as_ref(),
        &[REASON_HEADER, TASK_ID_HEADER, DELIVERY_COUNT_HEADER],
    );
    message
        .delivery
        .properties
        .clone()
        .with_delivery_mode(2)
        .with_headers(stripped)
}

/// Republishes each message of `batch` to the queue `route` names (skipping those it routes to
/// `None`) and waits for every confirm. Returns (republished, dropped).
async fn republish(
    channel: &Channel,
    batch: &[BasicGetMessage],
    route: &impl Fn(&BasicGetMessage) -> Option<String>,
) -> Result<(u64, u64), QueueError> {
    let mut pending = FuturesOrdered::new();
    let mut dropped = 0u64;
    for message in batch {
        let Some(target) = route(message) else {
            dropped += 1;
            continue;
        };
        let id = message_id(message);
        let confirm = channel
            .basic_publish(
                "".into(),
                target.as_str().into(),
                MANDATORY,
                &message.delivery.data,
                moved_properties(message),
            )
            .await
            .map_err(publish_error(&id))?;
        pending.push_back(async move { (id, confirm.await) });
    }
    let mut republished = 0u64;
    while let Some((id, confirmation)) = pending.next().await {
        check_confirm(&id, confirmation)?;
        republished += 1;
    }
    Ok((republished, dropped))
}

/// The `basic_get` loop of [`Broker::drain`] on its confirm channel: each batch is republished (or
/// dropped) and then acked up to its last message, so a failure never loses a message.
async fn drain_on(
    channel: &Channel,
    queue: &str,
    route: &impl Fn(&BasicGetMessage) -> Option<String>,
) -> Result<(u64, u64), QueueError> {
    let initial = ready_count(channel, queue).await?;
    let mut remaining = usize::try_from(initial).unwrap_or(usize::MAX);
    let (mut republished, mut dropped) = (0u64, 0u64);
    while remaining > 0 {
        let batch = get_batch(channel, queue, GET_BATCH.min(remaining)).await?;
        let Some(last) = batch.last() else { break };
        remaining -= batch.len();
        let (moved, skipped) = republish(channel, &batch, route).await?;
        republished += moved;
        dropped += skipped;
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

/// The loop of [`Broker::peek_dead`]: reads up to `limit` messages of `queue`, then returns them all
/// with one nack (requeue) and waits until the queue counts them as ready again.
async fn peek_on(
    channel: &Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    let mut letters = Vec::new();
    let mut last = None;
    while letters.len() < limit {
        let Some(message) = get_one(channel, queue).await? else {
            break;
        };
        letters.push(DeadLetter::read(&message));
        last = Some(message);
    }
    let Some(last) = last else {
        return Ok(letters);
    };
    let requeue = BasicNackOptions {
        multiple: true,
        requeue: true,
    };
    last.delivery
        .acker
        .nack(requeue)
        .await
        .map_err(|e| QueueError::amqp(&format!("cannot return messages to {queue}"), e))?;
    // The queue takes the returned messages back asynchronously and counts them as ready only then;
    // wait for that so that a `stats` or `retry_dead` right after sees them.
    let peeked = u32::try_from(letters.len()).unwrap_or(u32::MAX);
    for _ in 0..EMPTY_POLLS {
        if ready_count(channel, queue).await? >= peeked {
            break;
        }
        tokio::time::sleep(EMPTY_POLL_DELAY).await;
    }
    Ok(letters)
}

impl Broker {
    /// Ready counts of both queues (passive declares) and, when `api` is given, the task queue's unacked
    /// count and consumers from the management API (a few seconds stale).
    pub async fn stats(&self, api: Option<&ManagementApi>) -> Result<QueueStats, QueueError> {
        let t = &self.inner.topology;
        let channel = self.channel().await?;
        let counts = async {
            let ready = ready_count(&channel, &t.tasks).await?;
            let dead = ready_count(&channel, &t.dead_letter_queue).await?;
            Ok::<_, QueueError>((u64::from(ready), u64::from(dead)))
        }
        .await;
        close_channel(&channel).await;
        let (ready, dead) = counts?;
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
        let result = drain_on(&channel, queue, &route).await;
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
        let channel = self.channel().await?;
        let result = peek_on(&channel, &self.inner.topology.dead_letter_queue, limit).await;
        close_channel(&channel).await;
        result
    }
}
