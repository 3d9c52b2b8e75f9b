//! The one failure type of the pipeline: every step that can go wrong says who is to blame, and
//! [`super::settle`] is the one place that turns that into an acknowledgement, a requeue or a dead
//! letter.

use lucid_storage::StorageError;

use crate::render::RenderError;

/// Who a failure is due to, which decides how its task is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The task itself (a missing model, a bad layer, a channel out of range): dead-letter it at once,
    /// since another attempt would fail the same way.
    Task,
    /// Something that may pass (a network error, an overloaded store, a libtorch error): requeue it,
    /// within the attempt budget.
    Transient,
    /// This worker's machine (a full disk, an unwritable cache folder, a dead render thread): requeue
    /// it and stop taking work, so that a healthy worker gets it and this one is restarted.
    Worker,
}

/// Why a task could not be completed, and who is to blame; `reason` is what an operator reads in the
/// dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    /// Who is to blame.
    pub blame: Blame,
    /// What happened, naming the thing that failed.
    pub reason: String,
}

impl Failure {
    /// The task's own fault.
    pub fn task(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Task,
            reason: reason.into(),
        }
    }

    /// A failure that may pass.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Transient,
            reason: reason.into(),
        }
    }

    /// A fault of this worker's own machine.
    pub fn worker(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Worker,
            reason: reason.into(),
        }
    }

    /// A storage error while fetching something a task names (its model): a missing object is the
    /// task's fault.
    pub fn fetching(what: &str, error: &StorageError) -> Self {
        let reason = format!("{what}: {error}");
        if error.is_local_fault() {
            Self::worker(reason)
        } else if error.is_transient() {
            Self::transient(reason)
        } else {
            Self::task(reason)
        }
    }

    /// A storage error while storing a result. An error the store does not call transient is still
    /// retried: the task is fine, the store refused.
    pub fn storing(error: &StorageError) -> Self {
        let reason = format!("storing the result failed: {error}");
        if error.is_local_fault() {
            Self::worker(reason)
        } else {
            Self::transient(reason)
        }
    }

    /// A render error: bad settings, layers and channels are the task's fault; libtorch errors, out of
    /// memory and a cancelled render may pass.
    pub fn rendering(error: &RenderError) -> Self {
        match error {
            RenderError::Model(_)
            | RenderError::ChannelOutOfRange { .. }
            | RenderError::InvalidSetting { .. } => Self::task(error.to_string()),
            RenderError::Torch { .. }
            | RenderError::OutOfMemory { .. }
            | RenderError::Cancelled { .. } => Self::transient(error.to_string()),
        }
    }
}

/// Why a delivery could not be settled with whatever delivered it. The delivery then stays owned by
/// its source, which delivers it again; the idempotency check settles it then.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The broker refused or the connection is gone.
    #[error(transparent)]
    Broker(#[from] lucid_queue::QueueError),
    /// The in-process queue of `local` has stopped taking tasks back (the run is ending).
    #[error("the in-process queue is closed")]
    LocalQueueClosed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_errors_blame_the_task_only_for_what_a_retry_cannot_fix() {
        let bad_setting = RenderError::InvalidSetting {
            field: "size",
            reason: "too small".into(),
        };
        assert_eq!(Failure::rendering(&bad_setting).blame, Blame::Task);
        let range = RenderError::ChannelOutOfRange {
            layer: "conv1".into(),
            channel: 9,
            width: 4,
        };
        assert_eq!(Failure::rendering(&range).blame, Blame::Task);
        let oom = RenderError::torch(
            "conv5",
            tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into()),
        );
        assert!(matches!(oom, RenderError::OutOfMemory { .. }), "{oom:?}");
        assert_eq!(Failure::rendering(&oom).blame, Blame::Transient);
        let torch = RenderError::torch("conv5", tch::TchError::Torch("cuDNN error".into()));
        assert!(matches!(torch, RenderError::Torch { .. }), "{torch:?}");
        assert_eq!(Failure::rendering(&torch).blame, Blame::Transient);
        let cancelled = RenderError::Cancelled {
            layer: "conv5".into(),
        };
        assert_eq!(Failure::rendering(&cancelled).blame, Blame::Transient);
    }

    #[test]
    fn a_store_that_refuses_a_result_is_retried_and_a_full_disk_stops_the_worker() {
        let refused = StorageError::InvalidKey {
            key: "a//b".into(),
            reason: "must not contain empty segments",
        };
        assert!(!refused.is_transient() && !refused.is_local_fault());
        assert_eq!(Failure::storing(&refused).blame, Blame::Transient);
        assert_eq!(Failure::fetching("model", &refused).blame, Blame::Task);
        let full = StorageError::Io {
            op: "write",
            path: "/out/x.png".into(),
            source: std::io::Error::other("No space left on device"),
        };
        assert_eq!(Failure::storing(&full).blame, Blame::Worker);
        assert_eq!(Failure::fetching("model", &full).blame, Blame::Worker);
    }
}
