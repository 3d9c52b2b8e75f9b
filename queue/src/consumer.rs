//! Consuming tasks: [`Broker::consume`], the [`Consumer`] stream and the [`Delivery`] with its three
//! outcomes, each of which returns the crate's [`QueueError`].

use futures::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use lucid_proto::{DecodeError, Work};

use crate::QueueError;
use crate::broker::Broker;
use crate::headers::{
    self, DELIVERY_COUNT_HEADER, MAX_REASON_BYTES, REASON_HEADER, TASK_ID_HEADER,
};

/// A consumer of the task queue on its own channel, with a per-consumer prefetch.
///
/// # Connection loss
///
/// The broker requeues every unacked delivery of a connection that closes, so nothing is lost; on
/// RabbitMQ 3.10 each such return counts toward the delivery limit. On a connection error,
/// [`Consumer::next`] waits for lapin's automatic recovery (reconnect, reopen the channel, restore the
/// prefetch and the consumer) and then goes on yielding deliveries, so a worker loop needs no
/// reconnection code. Deliveries received before the loss can no longer be acknowledged: their
/// [`Delivery::ack`] returns [`QueueError::AckLost`] and they come again. When recovery is impossible
/// or gives up (about 30 s of reconnect attempts), or the connection is still recovering after
/// [`crate::RECOVERY_DEADLINE`], `next` returns an error ([`QueueError::ConnectionFailed`]) and the
/// caller should stop and reconnect (or exit and be restarted). Tested by closing the connection from
/// the server side through the management API, and end to end by stopping RabbitMQ for 5 s and for
/// longer than the deadline (`tests/tests/faults.rs`).
pub struct Consumer {
    channel: Channel,
    inner: lapin::Consumer,
    broker: Broker,
}

impl Broker {
    /// Starts a consumer on the task queue on its own channel, with a per-consumer (not global)
    /// prefetch of `prefetch` unacked deliveries (quorum queues refuse global QoS). `consumer_tag` must
    /// be unique on the connection; an empty tag lets the broker pick one.
    pub async fn consume(&self, consumer_tag: &str, prefetch: u16) -> Result<Consumer, QueueError> {
        let channel = self.channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| QueueError::amqp("cannot set prefetch", e))?;
        let queue = &self.topology().tasks;
        let inner = channel
            .basic_consume(
                queue.as_str().into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| QueueError::amqp(&format!("cannot consume {queue}"), e))?;
        Ok(Consumer {
            channel,
            inner,
            broker: self.clone(),
        })
    }
}

impl Consumer {
    /// The consumer tag (the broker's pick when an empty one was asked for).
    pub fn tag(&self) -> String {
        self.inner.tag().as_str().to_string()
    }

    /// The next delivery; `None` once the consumer was cancelled (by [`Consumer::cancel`] or by the
    /// broker, e.g. when the queue is deleted) or its channel closed. See the type's docs for what
    /// happens on connection errors.
    pub async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            let next = tokio::select! {
                next = self.inner.next() => next?,
                error = self.broker.failed() => return Some(Err(error)),
            };
            match next {
                Ok(delivery) => return Some(Ok(Delivery::new(delivery, self.broker.clone()))),
                Err(error) => {
                    tracing::warn!(%error, consumer = %self.inner.tag(), "consumer stream error, waiting for recovery");
                    match self.channel.wait_for_recovery(error).await {
                        Ok(()) => {
                            tracing::info!(consumer = %self.inner.tag(), "consumer recovered");
                        }
                        Err(error) => {
                            return Some(Err(QueueError::amqp(
                                "consumer failed and could not recover",
                                error,
                            )));
                        }
                    }
                }
            }
        }
    }

    /// Stops new deliveries (`basic.cancel`); deliveries already received can still be acked, requeued
    /// or dead-lettered, and [`Consumer::next`] returns what was already buffered and then `None`.
    pub async fn cancel(&self) -> Result<(), QueueError> {
        if !self.channel.status().connected() {
            return Ok(());
        }
        self.channel
            .basic_cancel(self.inner.tag(), BasicCancelOptions::default())
            .await
            .map_err(|e| QueueError::amqp("cannot cancel the consumer", e))
    }
}

/// One delivered message. It must end in exactly one of [`Delivery::ack`], [`Delivery::requeue`] or
/// [`Delivery::dead_letter`]; a delivery dropped without one stays unacked until its channel closes.
#[derive(Debug)]
pub struct Delivery {
    /// The message body.
    pub body: Vec<u8>,
    /// The message id: the task id for tasks published by [`Broker::publish_tasks`].
    pub message_id: Option<String>,
    /// How many times the message was delivered before (the quorum queue's `x-delivery-count` header):
    /// 0 on a first delivery.
    pub delivery_count: u32,
    /// The broker's redelivered flag (the message was delivered before, perhaps to another consumer).
    pub redelivered: bool,
    acker: Acker,
    properties: BasicProperties,
    broker: Broker,
}

impl Delivery {
    fn new(delivery: lapin::message::Delivery, broker: Broker) -> Self {
        let h = delivery.properties.headers().as_ref();
        Self {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_string()),
            delivery_count: headers::delivery_count(h),
            redelivered: delivery.redelivered,
            body: delivery.data,
            acker: delivery.acker,
            properties: delivery.properties,
            broker,
        }
    }

    fn task_id(&self) -> &str {
        self.message_id.as_deref().unwrap_or("<no message id>")
    }

    /// Whether the delivery's channel closed since it arrived (the connection was lost, even if lapin
    /// has recovered it since). Such a delivery can no longer be settled ([`Delivery::ack`] returns
    /// [`QueueError::AckLost`]), and the broker has already returned its message to the queue: working
    /// on it would only duplicate the redelivered copy.
    pub fn is_stale(&self) -> bool {
        self.acker.poisoned()
    }

    /// Decodes the body as a task of either kind (size checked first; see [`Work::decode`]).
    pub fn decode(&self, max_bytes: usize) -> Result<Work, DecodeError> {
        Work::decode(&self.body, max_bytes)
    }

    /// Acknowledges the delivery: the broker deletes the message. Call it only after the durable
    /// effect (the image is stored).
    ///
    /// [`QueueError::AckLost`] means the channel died first: the broker will redeliver the message, so
    /// the caller must count it as not acknowledged.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.settle("ack", self.acker.ack(BasicAckOptions::default()).await)
    }

    /// Returns the delivery to the queue (`basic.nack` with requeue) for another try. On RabbitMQ 3.10
    /// this counts toward the delivery limit, like any return to the queue.
    pub async fn requeue(&self) -> Result<(), QueueError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        self.settle("requeue", self.acker.nack(options).await)
    }

    fn settle(&self, what: &str, result: lapin::Result<bool>) -> Result<(), QueueError> {
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueError::AckLost),
            Err(error) => {
                tracing::warn!(%error, task = self.task_id(), "{what} failed");
                Err(QueueError::AckLost)
            }
        }
    }

    /// Gives the task up: publishes a copy of the body (same properties) to the dead-letter exchange
    /// with the headers `x-lucid-reason` (`reason`, cut to 1 KiB) and `x-lucid-task-id`, waits for the
    /// broker's confirm, and only then acks the original.
    ///
    /// Never loses the message: if the publish fails, the original is requeued instead and the publish
    /// error is returned. (A failure between the confirm and the ack leaves a copy in both queues.)
    pub async fn dead_letter(&self, reason: &str) -> Result<(), QueueError> {
        let reason = headers::truncate(reason, MAX_REASON_BYTES);
        let mut h = headers::without(
            self.properties.headers().as_ref(),
            &[DELIVERY_COUNT_HEADER, REASON_HEADER, TASK_ID_HEADER],
        );
        h.insert(REASON_HEADER.into(), headers::long_string(reason));
        h.insert(
            TASK_ID_HEADER.into(),
            headers::long_string(self.message_id.as_deref().unwrap_or("")),
        );
        let properties = self
            .properties
            .clone()
            .with_delivery_mode(2)
            .with_headers(h);
        let topology = self.broker.topology();
        let published = self
            .broker
            .publish_confirmed(
                &topology.dead_letter_exchange,
                &topology.tasks,
                &self.body,
                properties,
                self.task_id(),
            )
            .await;
        match published {
            Ok(()) => self.ack().await,
            Err(error) => {
                if let Err(requeue_error) = self.requeue().await {
                    tracing::warn!(%requeue_error, task = self.task_id(), "requeue after a failed dead-letter publish failed");
                }
                Err(error)
            }
        }
    }
}
