//! The queues and the exchange: their names and limits ([`Topology`]), declaring them idempotently,
//! and deleting them.

use lapin::ExchangeKind;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lucid_proto::spec::QueueSection;

use crate::QueueError;
use crate::broker::{Broker, close_channel};
use crate::headers;

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

/// Maps a lapin error about `queue` (a queue or an exchange) to [`QueueError::Declare`].
pub(crate) fn declare_error(queue: &str) -> impl Fn(lapin::Error) -> QueueError + '_ {
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

/// A passive declare: checks that the queue exists and reads its ready count, changes nothing.
pub(crate) fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

/// Arguments of a quorum queue.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), headers::long_string("quorum"));
    args
}

impl Broker {
    /// Declares the topology, idempotently: a durable fanout dead-letter exchange, a durable quorum
    /// dead-letter queue bound to it, and the durable quorum task queue with `x-dead-letter-exchange`
    /// and `x-delivery-limit`. Declaring an existing queue with other arguments fails with
    /// [`QueueError::Declare`] (the broker refuses to change them).
    pub(crate) async fn declare(&self) -> Result<(), QueueError> {
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
        channel
            .queue_declare(t.dead_letter_queue.as_str().into(), durable(), quorum())
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
        let mut task_args = quorum();
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
}
