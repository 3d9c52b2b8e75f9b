//! Publishing with publisher confirms: the task batches of `submit` (pipelined up to a window), single
//! messages on a shared confirm channel (dead letters, raw test messages), and the one reading of a
//! confirm.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use lucid_proto::Envelope;

use crate::QueueError;
use crate::broker::{Broker, close_channel};

/// Every publish is `mandatory`: a message no queue takes comes back ([`QueueError::Returned`])
/// instead of vanishing.
pub(crate) const MANDATORY: BasicPublishOptions = BasicPublishOptions {
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

/// Maps a lapin error publishing task `task_id` to [`QueueError::Publish`].
pub(crate) fn publish_error(task_id: &str) -> impl Fn(lapin::Error) -> QueueError + '_ {
    move |e| QueueError::Publish {
        task_id: task_id.to_string(),
        message: e.to_string(),
    }
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
        Err(e) => Err(publish_error(task_id)(e)),
    }
}

impl Broker {
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
            .map_err(publish_error(task_id))?;
        check_confirm(task_id, confirm.await)
    }

    /// Publishes `tasks` to the task queue and returns how many the broker confirmed (all of them on
    /// success).
    ///
    /// Each message is persistent JSON (`delivery_mode` 2, `content_type` `application/json`) with the
    /// task id as `message_id`, published `mandatory` on the default exchange. Publisher confirms are
    /// pipelined: at most `window` (at least 1) publishes await their confirm at any time.
    ///
    /// A body larger than [`crate::Topology::max_message_bytes`] is refused before anything is sent for
    /// it. On the first failure (nack, returned message, channel error) the call stops and returns that
    /// error naming the task; tasks before it may be queued. Publishing the same tasks again is safe
    /// for workers (task ids and object keys are deterministic) but leaves duplicates in the queue.
    pub async fn publish_tasks<T: Envelope + Sync>(
        &self,
        tasks: &[T],
        window: usize,
    ) -> Result<u64, QueueError> {
        let channel = self.confirm_channel().await?;
        let result = self.publish_pipelined(&channel, tasks, window.max(1)).await;
        close_channel(&channel).await;
        let confirmed = result?;
        tracing::debug!(confirmed, queue = %self.inner.topology.tasks, "published tasks");
        Ok(confirmed)
    }

    /// The loop of [`Broker::publish_tasks`] on its confirm channel: at most `window` confirms
    /// outstanding, checked in publish order.
    async fn publish_pipelined<T: Envelope + Sync>(
        &self,
        channel: &Channel,
        tasks: &[T],
        window: usize,
    ) -> Result<u64, QueueError> {
        let t = &self.inner.topology;
        let mut pending = FuturesOrdered::new();
        let mut confirmed = 0u64;
        for task in tasks {
            let id = task.task_id();
            let body = task.encode();
            if body.len() > t.max_message_bytes {
                return Err(QueueError::Publish {
                    task_id: id.to_string(),
                    message: format!(
                        "body is {} bytes, queue.max_message_bytes is {}",
                        body.len(),
                        t.max_message_bytes
                    ),
                });
            }
            let confirm = channel
                .basic_publish(
                    "".into(),
                    t.tasks.as_str().into(),
                    MANDATORY,
                    &body,
                    task_properties(id),
                )
                .await
                .map_err(publish_error(id))?;
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

    /// Publishes `body` as is (persistent, `message_id` set, no content type) to the task queue and
    /// waits for the confirm. Meant for tests that inject malformed messages.
    pub async fn publish_raw(&self, body: &[u8], message_id: &str) -> Result<(), QueueError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(message_id.into());
        self.publish_confirmed("", &self.inner.topology.tasks, body, properties, message_id)
            .await
    }
}
