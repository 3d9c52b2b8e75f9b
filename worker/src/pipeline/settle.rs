//! Settling a task: the one place where the outcome of a batch step becomes an acknowledgement, a
//! requeue or a dead letter, and where a fault of this worker's own machine is raised.

use std::time::{SystemTime, UNIX_EPOCH};

use super::failure::{Blame, Failure};
use super::metrics::outcome;
use super::{BatchContext, Settleable};

/// A task's result is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stored {
    /// A render task's images and sidecar.
    Image {
        /// The final objective, logged.
        objective_end: f64,
    },
    /// A probe shard's data and sidecar.
    Shard {
        /// The shard's usable images.
        images: usize,
    },
}

/// Where a batch reports that this worker cannot go on (see [`Blame::Worker`]); the worker loop
/// watches the receiver, stops taking work and exits with the reason.
#[derive(Debug, Clone)]
pub struct WorkerFault(tokio::sync::watch::Sender<Option<String>>);

impl WorkerFault {
    /// A new fault signal and the receiver the worker loop watches.
    pub fn new() -> (Self, tokio::sync::watch::Receiver<Option<String>>) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (Self(tx), rx)
    }

    /// Reports the fault (the first report wins).
    pub fn raise(&self, reason: &str) {
        self.0.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(reason.to_owned());
                true
            } else {
                false
            }
        });
    }
}

enum Settlement {
    Ack,
    Requeue,
    DeadLetter(String),
}

/// Settles `item` by its outcome: a stored result is acknowledged; a failure by who is to blame —
/// the task's own fault, and a transient one out of attempts, is dead-lettered with the reason; a
/// transient one within its attempts is requeued; a fault of this worker's machine requeues the task
/// without judging it and raises the worker fault.
pub(super) async fn settle(
    ctx: &BatchContext,
    item: &dyn Settleable,
    result: Result<Stored, Failure>,
) {
    let failure = match result {
        Ok(stored) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            ctx.metrics.last_success.set(now);
            match stored {
                Stored::Image { objective_end } => {
                    ctx.metrics.images.inc();
                    tracing::info!(task_id = %item.task_id(), objective_end, "stored");
                }
                Stored::Shard { images } => {
                    ctx.metrics.probe_images.inc_by(images as u64);
                    tracing::info!(task_id = %item.task_id(), images, "stored probe shard");
                }
            }
            return apply(ctx, item, Settlement::Ack, outcome::OK).await;
        }
        Err(failure) => failure,
    };
    let attempts = item.handle().delivery_count() + 1;
    let reason = failure.reason;
    match failure.blame {
        Blame::Worker => {
            tracing::error!(task_id = %item.task_id(), %reason, "this worker cannot store, cache or render; requeueing the task and stopping");
            ctx.fault.raise(&reason);
            apply(ctx, item, Settlement::Requeue, outcome::FAILED).await;
        }
        Blame::Transient if attempts < ctx.max_attempts => {
            tracing::warn!(task_id = %item.task_id(), attempts, %reason, "task failed; requeueing");
            apply(ctx, item, Settlement::Requeue, outcome::FAILED).await;
        }
        blame => {
            let reason = if blame == Blame::Task {
                reason
            } else {
                format!("{reason} (gave up after {attempts} attempts)")
            };
            tracing::warn!(task_id = %item.task_id(), %reason, "dead-lettering task");
            let how = Settlement::DeadLetter(reason);
            apply(ctx, item, how, outcome::DEAD_LETTERED).await;
        }
    }
}

/// Acknowledges a task whose result was stored before this delivery.
pub(super) async fn skipped_existing(ctx: &BatchContext, item: &dyn Settleable) {
    apply(ctx, item, Settlement::Ack, outcome::SKIPPED_EXISTING).await;
}

async fn apply(ctx: &BatchContext, item: &dyn Settleable, how: Settlement, outcome: &str) {
    let handle = item.handle();
    let result = match &how {
        Settlement::Ack => handle.ack().await,
        Settlement::Requeue => handle.requeue().await,
        Settlement::DeadLetter(reason) => handle.dead_letter(reason).await,
    };
    ctx.metrics.in_flight.dec();
    ctx.metrics.count(outcome, 1);
    if let Err(error) = result {
        // the delivery is still owned by its source: it comes back, and the idempotency check
        // settles it then
        tracing::warn!(task_id = %item.task_id(), %error, "settling the delivery failed; it will be redelivered");
    }
}
