//! The dedicated render thread: it owns the device, the loaded models and every tensor, and takes
//! batches over a channel, so libtorch work never runs on an async runtime thread.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lucid_checkpoint::ModelFile;
use tch::Device;
use tokio::sync::{mpsc, oneshot};

use crate::model::AlexNet;
use crate::render::{BatchOutput, RenderError, Settings, benchmark_images, render_batch_until};

/// Models kept loaded at once (each ecoset AlexNet is 194 MB of weights).
const MODEL_CACHE: usize = 4;

/// One batch for the render thread.
#[derive(Debug)]
pub struct GpuJob {
    /// A local model path that [`lucid_checkpoint::discover`] resolves to exactly one seed.
    pub model: PathBuf,
    /// Seed id, used for seeding the images.
    pub seed: String,
    /// Layer to render.
    pub layer: String,
    /// Channels, one image each.
    pub channels: Vec<usize>,
    /// Render settings shared by the batch.
    pub settings: Settings,
    /// Where the result goes.
    pub reply: oneshot::Sender<GpuReply>,
}

/// What the render thread made of a job.
#[derive(Debug)]
pub struct GpuReply {
    /// The images of the channels that could be rendered (`None` when nothing was).
    pub output: Option<BatchOutput>,
    /// Channels refused for good, with the reason (out of range, unknown layer, unreadable model).
    pub refused: Vec<(usize, String)>,
    /// A failure that may pass on retry (out of memory, libtorch error), for every unrendered channel.
    pub transient: Option<String>,
    /// Seconds spent loading the model (0 when cached).
    pub load_seconds: f64,
}

/// What the render thread does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenderMode {
    /// Lucid's optimisation (the only mode outside benchmarks).
    #[default]
    Optimise,
    /// Benchmark only: cheap stand-in images, without optimising or running the model
    /// ([`benchmark_images`]), so that queue and storage are driven as fast as they go.
    SkipOptimisation,
}

/// A handle to the render thread.
#[derive(Debug, Clone)]
pub struct GpuHandle {
    tx: mpsc::Sender<GpuJob>,
    /// Set by [`GpuHandle::stop`]: the render in progress gives up at its next update, and later
    /// jobs are not rendered.
    stop: Arc<AtomicBool>,
}

impl GpuHandle {
    /// Starts the render thread on `device`. The thread ends when every handle is dropped.
    pub fn spawn(
        device: Device,
        mode: RenderMode,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<GpuJob>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lucid-render".into())
            .spawn(move || {
                if device.is_cuda() {
                    tch::Cuda::cudnn_set_benchmark(true);
                }
                let mut models: HashMap<PathBuf, AlexNet> = HashMap::new();
                let mut fits = Fits::default();
                let stop = || stopped.load(Ordering::Relaxed);
                while let Some(job) = rx.blocking_recv() {
                    let reply = run_job(&mut models, &mut fits, device, mode, &job, &stop);
                    // the receiver may have given up (shutdown); nothing to do then
                    let _ = job.reply.send(reply);
                }
            })?;
        Ok((Self { tx, stop }, thread))
    }

    /// Stops rendering: the batch in progress gives up before its next update (its tasks, never
    /// acknowledged, return to the queue) and later jobs fail the same way. For a shutdown whose
    /// drain deadline has passed, so that the render thread is idle, and libtorch untouched, when the
    /// process exits.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Sends a job and waits for its reply; an error when the thread is gone.
    pub async fn render(
        &self,
        job_without_reply: impl FnOnce(oneshot::Sender<GpuReply>) -> GpuJob,
    ) -> Result<GpuReply, String> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send(job_without_reply(reply_tx))
            .await
            .map_err(|_| "the render thread has stopped".to_string())?;
        reply_rx
            .await
            .map_err(|_| "the render thread dropped the job".to_string())
    }
}

/// The largest batch known to fit in device memory, per (model, layer, image size): learnt from
/// out-of-memory failures, so that later batches start at a size that fits.
#[derive(Debug, Default)]
struct Fits(HashMap<(PathBuf, String, usize), usize>);

/// Whether a render failed for lack of device memory (libtorch's CUDA allocator says "out of memory").
pub fn is_out_of_memory(error: &RenderError) -> bool {
    matches!(error, RenderError::Torch { source, .. } if source.to_string().contains("out of memory"))
}

/// Renders `channels` in chunks of at most `*fit`; a chunk of several channels that runs out of device
/// memory is retried in halves (and `*fit` lowered to what fitted), so a batch too large for the
/// device still renders, image for image the same. A single channel that does not fit fails.
pub fn render_fitting(
    channels: &[usize],
    fit: &mut usize,
    mut render: impl FnMut(&[usize]) -> Result<BatchOutput, RenderError>,
) -> Result<BatchOutput, RenderError> {
    let mut images = Vec::with_capacity(channels.len());
    let mut seconds = 0.0;
    let mut rest = channels;
    while !rest.is_empty() {
        let take = (*fit).clamp(1, rest.len());
        let (chunk, after) = rest.split_at(take);
        match render(chunk) {
            Ok(out) => {
                images.extend(out.images);
                seconds += out.seconds;
                rest = after;
            }
            Err(e) if chunk.len() > 1 && is_out_of_memory(&e) => {
                *fit = chunk.len() / 2;
                tracing::warn!(
                    batch = chunk.len(),
                    retry_with = *fit,
                    "batch does not fit in device memory; splitting it"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(BatchOutput { images, seconds })
}

fn run_job(
    models: &mut HashMap<PathBuf, AlexNet>,
    fits: &mut Fits,
    device: Device,
    mode: RenderMode,
    job: &GpuJob,
    stop: &dyn Fn() -> bool,
) -> GpuReply {
    let mut reply = GpuReply {
        output: None,
        refused: Vec::new(),
        transient: None,
        load_seconds: 0.0,
    };
    let refuse_all = |reply: &mut GpuReply, reason: String| {
        reply.refused = job.channels.iter().map(|&c| (c, reason.clone())).collect();
    };
    if !models.contains_key(&job.model) {
        let started = Instant::now();
        let loaded = lucid_checkpoint::discover(&job.model)
            .map_err(|e| e.to_string())
            .and_then(|seeds| match seeds.as_slice() {
                [one] => Ok(one.path.clone()),
                [] => Err(format!("no checkpoint found at {}", job.model.display())),
                many => Err(format!(
                    "{} holds {} checkpoints; a task's model must name one seed",
                    job.model.display(),
                    many.len()
                )),
            })
            .and_then(|path| ModelFile::open(&path).map_err(|e| e.to_string()))
            .and_then(|file| {
                std::panic::catch_unwind(AssertUnwindSafe(|| AlexNet::load(&file, device)))
                    .map_err(|_| "libtorch failed while loading the model".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            });
        match loaded {
            Ok(model) => {
                if models.len() >= MODEL_CACHE {
                    models.clear();
                }
                models.insert(job.model.clone(), model);
                reply.load_seconds = started.elapsed().as_secs_f64();
            }
            Err(reason) => {
                refuse_all(
                    &mut reply,
                    format!("cannot load model {}: {reason}", job.model.display()),
                );
                return reply;
            }
        }
    }
    let Some(model) = models.get(&job.model) else {
        refuse_all(&mut reply, "model cache lost the model".into());
        return reply;
    };
    let target = match model.layer_index(&job.layer) {
        Ok(t) => t,
        Err(e) => {
            refuse_all(&mut reply, e.to_string());
            return reply;
        }
    };
    let width = model.layer_spec(target).out_channels;
    let (ok, bad): (Vec<usize>, Vec<usize>) = job.channels.iter().partition(|&&c| c < width);
    reply.refused = bad
        .into_iter()
        .map(|c| {
            (
                c,
                format!(
                    "channel {c} out of range for layer {}: it has {width} channels",
                    job.layer
                ),
            )
        })
        .collect();
    if ok.is_empty() {
        return reply;
    }
    let key = (job.model.clone(), job.layer.clone(), job.settings.size);
    let fit = fits.0.entry(key).or_insert(usize::MAX);
    let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        render_fitting(&ok, fit, |chunk| match mode {
            RenderMode::Optimise => {
                render_batch_until(model, &job.seed, &job.layer, chunk, &job.settings, stop)
            }
            RenderMode::SkipOptimisation => {
                benchmark_images(model, &job.seed, &job.layer, chunk, &job.settings)
            }
        })
    }));
    match rendered {
        Ok(Ok(output)) => reply.output = Some(output),
        Ok(Err(RenderError::InvalidSetting { field, reason })) => {
            let reason = format!("invalid render setting {field}: {reason}");
            reply
                .refused
                .extend(ok.iter().map(|&c| (c, reason.clone())));
        }
        Ok(Err(e @ (RenderError::Model(_) | RenderError::ChannelOutOfRange { .. }))) => {
            let reason = e.to_string();
            reply
                .refused
                .extend(ok.iter().map(|&c| (c, reason.clone())));
        }
        Ok(Err(e @ (RenderError::Torch { .. } | RenderError::Cancelled { .. }))) => {
            reply.transient = Some(e.to_string())
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            reply.transient = Some(format!("libtorch failed while rendering: {message}"));
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::RenderedImage;

    /// A stand-in for a device with room for `room` images per batch (the real failure needs a GPU).
    fn device_with_room(
        room: usize,
        calls: &mut Vec<usize>,
    ) -> impl FnMut(&[usize]) -> Result<BatchOutput, RenderError> + '_ {
        move |chunk: &[usize]| {
            calls.push(chunk.len());
            if chunk.len() > room {
                return Err(RenderError::Torch {
                    layer: "conv5".into(),
                    source: tch::TchError::Torch(
                        "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
                    ),
                });
            }
            Ok(BatchOutput {
                images: chunk
                    .iter()
                    .map(|&channel| RenderedImage {
                        channel,
                        copy: 0,
                        size: 1,
                        rgb: vec![0; 3],
                        objective_start: 0.0,
                        objective_end: 0.0,
                    })
                    .collect(),
                seconds: 1.0,
            })
        }
    }

    #[test]
    fn a_batch_too_large_for_the_device_is_split_until_it_fits() {
        let channels: Vec<usize> = (10..20).collect();
        let mut fit = usize::MAX;
        let mut calls = Vec::new();
        let out = render_fitting(&channels, &mut fit, device_with_room(3, &mut calls))
            .expect("renders in smaller batches");
        let order: Vec<usize> = out.images.iter().map(|i| i.channel).collect();
        assert_eq!(order, channels, "every channel once, in order");
        assert_eq!(fit, 2, "10 → 5 → 2 fits in room for 3");
        assert_eq!(calls, vec![10, 5, 2, 2, 2, 2, 2]);
        assert_eq!(out.seconds, 5.0);
        // the next batch starts at the size that fitted
        let mut calls = Vec::new();
        render_fitting(&channels[..4], &mut fit, device_with_room(3, &mut calls)).expect("fits");
        assert_eq!(calls, vec![2, 2]);
    }

    #[test]
    fn a_single_image_that_does_not_fit_and_other_errors_fail() {
        let mut calls = Vec::new();
        let err = render_fitting(
            &[1, 2],
            &mut usize::MAX.clone(),
            device_with_room(0, &mut calls),
        )
        .expect_err("nothing fits");
        assert!(is_out_of_memory(&err));
        assert_eq!(calls, vec![2, 1]);
        let mut fit = 8;
        let other = render_fitting(&[1, 2, 3], &mut fit, |_| {
            Err(RenderError::InvalidSetting {
                field: "size",
                reason: "too small".into(),
            })
        })
        .expect_err("not a memory error");
        assert!(!is_out_of_memory(&other));
        assert_eq!(fit, 8, "only memory failures change the batch size");
    }
}
