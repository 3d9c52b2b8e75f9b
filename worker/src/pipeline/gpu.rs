//! The dedicated render thread: it owns the device, the loaded models and every tensor, and takes
//! batches over a channel, so libtorch work never runs on an async runtime thread.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lucid_checkpoint::ModelFile;
use tch::Device;
use tokio::sync::{mpsc, oneshot};

use super::failure::Failure;
use crate::described::DescribedNet;
use crate::model::AlexNet;
use crate::render::net::RenderNet;
use crate::render::{
    BatchOutput, RenderError, RenderedImage, Settings, benchmark_images, render_batch_until,
};
use crate::scripted::ScriptedNet;
use lucid_network::{Description, Network};

/// Models kept loaded at once (each ecoset AlexNet is 194 MB of weights).
const MODEL_CACHE: usize = 4;

/// One batch for the render thread.
#[derive(Debug)]
pub struct GpuJob {
    /// A local model path that [`lucid_checkpoint::discover`] resolves to exactly one model.
    pub model: PathBuf,
    /// The network to run it as.
    pub network: NetworkChoice,
    /// The model's label, which keys the images' random streams.
    pub model_id: String,
    /// Layer to render.
    pub layer: String,
    /// Channels, one image each.
    pub channels: Vec<usize>,
    /// Render settings shared by the batch.
    pub settings: Settings,
    /// Where the result goes.
    pub reply: oneshot::Sender<GpuReply>,
}

/// What the render thread is sent.
#[derive(Debug)]
enum GpuWork {
    Render(GpuJob),
    Probe(ProbeJob),
}

/// A probe shard's prepared images through one model's layers, forward only.
#[derive(Debug)]
pub struct ProbeJob {
    /// Local path of the model.
    pub model: PathBuf,
    /// How to run it.
    pub network: NetworkChoice,
    /// The layers, by name, in the task's order.
    pub layers: Vec<String>,
    /// The shard's usable images, prepared; example `image` indices count them from 0.
    pub images: Vec<lucid_probe::Prepared>,
    /// The side they were prepared at.
    pub side: usize,
    /// Examples per list.
    pub k: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Where the result goes.
    pub reply: oneshot::Sender<Result<ProbeReply, Failure>>,
}

/// A probe shard's lists and means, per layer in the job's order.
#[derive(Debug)]
pub struct ProbeReply {
    /// Per layer: its name and what it kept.
    pub layers: Vec<lucid_probe::shard::ShardLayerData>,
    /// Seconds loading the model (0 when cached).
    pub load_seconds: f64,
    /// Seconds in the forward passes and reading their activations back.
    pub forward_seconds: f64,
}

/// Which network a job's model is, as the render thread loads it.
#[derive(Debug, Clone)]
pub enum NetworkChoice {
    /// The native `alexnet_v2` ([`AlexNet`]): lucid's numbers, space-to-depth, channels-last, bf16.
    Native,
    /// A `lucid-export` folder ([`ScriptedNet`]).
    TorchScript,
    /// Any other network, run from its description ([`DescribedNet`]).
    Described {
        /// The description.
        description: Box<Description>,
        /// Its text's digest: models are cached per (file, description).
        digest: String,
    },
}

impl NetworkChoice {
    fn key(&self) -> &str {
        match self {
            NetworkChoice::Native => "",
            NetworkChoice::TorchScript => "torchscript",
            NetworkChoice::Described { digest, .. } => digest,
        }
    }
}

/// Loaded models, by file and network.
type Models = HashMap<(PathBuf, String), Box<dyn RenderNet>>;

/// What the render thread made of a job.
#[derive(Debug, Default)]
pub struct GpuReply {
    /// The images of the channels that could be rendered.
    pub images: Vec<RenderedImage>,
    /// The channels that could not, each with why and who is to blame.
    pub failed: Vec<(usize, Failure)>,
    /// Seconds spent loading the model (0 when cached).
    pub load_seconds: f64,
}

impl GpuReply {
    fn fail_all(&mut self, channels: &[usize], failure: &Failure) {
        self.failed
            .extend(channels.iter().map(|&c| (c, failure.clone())));
    }
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
    tx: mpsc::Sender<GpuWork>,
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
        let (tx, mut rx) = mpsc::channel::<GpuWork>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lucid-render".into())
            .spawn(move || {
                if device.is_cuda() {
                    tch::Cuda::cudnn_set_benchmark(true);
                }
                let mut models = Models::new();
                let mut fits = Fits::default();
                let stop = || stopped.load(Ordering::Relaxed);
                while let Some(work) = rx.blocking_recv() {
                    // the receiver may have given up (shutdown); nothing to do then
                    match work {
                        GpuWork::Render(job) => {
                            let reply = run_job(&mut models, &mut fits, device, mode, &job, &stop);
                            let _ = job.reply.send(reply);
                        }
                        GpuWork::Probe(job) => {
                            let reply = run_probe(&mut models, device, &job);
                            let _ = job.reply.send(reply);
                        }
                    }
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

    /// Sends a job and waits for its reply. A render thread that is gone is this worker's fault: it
    /// cannot render anything any more.
    pub async fn render(
        &self,
        job_without_reply: impl FnOnce(oneshot::Sender<GpuReply>) -> GpuJob,
    ) -> Result<GpuReply, Failure> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(GpuWork::Render(job_without_reply(reply_tx)))
            .await?;
        reply_rx
            .await
            .map_err(|_| Failure::worker("the render thread dropped the job"))
    }

    /// Runs a probe shard's forward passes on the render thread (between two render batches; the
    /// thread owns every model and tensor).
    pub async fn probe(
        &self,
        job_without_reply: impl FnOnce(oneshot::Sender<Result<ProbeReply, Failure>>) -> ProbeJob,
    ) -> Result<ProbeReply, Failure> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(GpuWork::Probe(job_without_reply(reply_tx)))
            .await?;
        reply_rx
            .await
            .map_err(|_| Failure::worker("the render thread dropped the probe job"))?
    }

    async fn send(&self, work: GpuWork) -> Result<(), Failure> {
        self.tx
            .send(work)
            .await
            .map_err(|_| Failure::worker("the render thread has stopped"))
    }
}

/// The largest batch known to fit in device memory, per (model, layer, image size): learnt from
/// out-of-memory failures, so that later batches start at a size that fits.
#[derive(Debug, Default)]
struct Fits(HashMap<(PathBuf, String, usize), usize>);

/// Whether a render failed for lack of device memory.
pub fn is_out_of_memory(error: &RenderError) -> bool {
    matches!(error, RenderError::OutOfMemory { .. })
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
    models: &mut Models,
    fits: &mut Fits,
    device: Device,
    mode: RenderMode,
    job: &GpuJob,
    stop: &dyn Fn() -> bool,
) -> GpuReply {
    let mut reply = GpuReply::default();
    let model = match cached_model(models, &job.model, &job.network, device) {
        Ok((model, load_seconds)) => {
            reply.load_seconds = load_seconds;
            model
        }
        Err(failure) => {
            reply.fail_all(&job.channels, &failure);
            return reply;
        }
    };
    let width = match model.layer_index(&job.layer) {
        Ok(target) => model.layer_width(target),
        Err(e) => {
            reply.fail_all(&job.channels, &Failure::task(e.to_string()));
            return reply;
        }
    };
    let (ok, bad): (Vec<usize>, Vec<usize>) = job.channels.iter().partition(|&&c| c < width);
    for channel in bad {
        let error = RenderError::ChannelOutOfRange {
            layer: job.layer.clone(),
            channel,
            width,
        };
        reply.failed.push((channel, Failure::rendering(&error)));
    }
    if ok.is_empty() {
        return reply;
    }
    let key = (
        job.model.clone(),
        format!("{}\u{1f}{}", job.network.key(), job.layer),
        job.settings.size,
    );
    let fit = fits.0.entry(key).or_insert(usize::MAX);
    let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        render_fitting(&ok, fit, |chunk| match mode {
            RenderMode::Optimise => {
                render_batch_until(model, &job.model_id, &job.layer, chunk, &job.settings, stop)
            }
            RenderMode::SkipOptimisation => {
                benchmark_images(model, &job.model_id, &job.layer, chunk, &job.settings)
            }
        })
    }));
    match rendered {
        Ok(Ok(output)) => reply.images = output.images,
        Ok(Err(error)) => reply.fail_all(&ok, &Failure::rendering(&error)),
        Err(panic) => {
            let failure = Failure::transient(format!(
                "libtorch failed while rendering: {}",
                panic_message(&panic)
            ));
            reply.fail_all(&ok, &failure);
        }
    }
    reply
}

/// The loaded model at `path` and the seconds its loading took (0 when it was loaded already). A
/// model that cannot be found, read or loaded is the task's fault.
/// A probe job on the render thread: the model from the cache, each layer checked (a wrong name or
/// a side too small for it is the task's fault), the batches through `probe_batch`.
fn run_probe(models: &mut Models, device: Device, job: &ProbeJob) -> Result<ProbeReply, Failure> {
    let (model, load_seconds) = cached_model(models, &job.model, &job.network, device)?;
    let mut indices = Vec::with_capacity(job.layers.len());
    for layer in &job.layers {
        let index = model
            .layer_index(layer)
            .map_err(|e| Failure::task(e.to_string()))?;
        let (side, needs) = (job.side, model.min_input_side(index));
        if side < needs {
            return Err(Failure::task(format!(
                "probe.side {side} is too small for layer {layer}: it needs at least {needs} px"
            )));
        }
        indices.push(index);
    }
    let started = Instant::now();
    let probed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::probe::probe_images(model, &indices, &job.images, job.k, job.batch, device)
    }));
    let layers = match probed {
        Ok(Ok(layers)) => layers,
        Ok(Err(error)) => return Err(probe_failure(&error)),
        Err(panic) => {
            return Err(Failure::transient(format!(
                "libtorch failed while probing: {}",
                panic_message(&panic)
            )));
        }
    };
    let layers = layers
        .into_iter()
        .zip(&job.layers)
        .map(|(examples, name)| lucid_probe::shard::ShardLayerData {
            layer: name.clone(),
            channels: examples.channels,
            means: examples.means,
        })
        .collect();
    Ok(ProbeReply {
        layers,
        load_seconds,
        forward_seconds: started.elapsed().as_secs_f64(),
    })
}

/// A probe pass's error as a failure: a NaN activation is the model's (the task's) fault; libtorch
/// failing to hand back activations may pass.
fn probe_failure(error: &crate::probe::ProbeError) -> Failure {
    match error {
        crate::probe::ProbeError::Ranking(_) => Failure::task(error.to_string()),
        crate::probe::ProbeError::Torch(_) => Failure::transient(error.to_string()),
    }
}

fn cached_model<'m>(
    models: &'m mut Models,
    path: &Path,
    network: &NetworkChoice,
    device: Device,
) -> Result<(&'m dyn RenderNet, f64), Failure> {
    let mut load_seconds = 0.0;
    let key = (path.to_path_buf(), network.key().to_owned());
    if !models.contains_key(&key) {
        let started = Instant::now();
        let model = load_model(path, network, device).map_err(|reason| {
            Failure::task(format!("cannot load model {}: {reason}", path.display()))
        })?;
        if models.len() >= MODEL_CACHE {
            models.clear();
        }
        models.insert(key.clone(), model);
        load_seconds = started.elapsed().as_secs_f64();
    }
    let model = models
        .get(&key)
        .ok_or_else(|| Failure::transient("the model cache lost the model"))?;
    Ok((model.as_ref(), load_seconds))
}

fn load_model(
    path: &Path,
    network: &NetworkChoice,
    device: Device,
) -> Result<Box<dyn RenderNet>, String> {
    if let NetworkChoice::TorchScript = network {
        return std::panic::catch_unwind(AssertUnwindSafe(|| ScriptedNet::load(path, device)))
            .map_err(|panic| format!("libtorch failed while loading: {}", panic_message(&panic)))?
            .map(|net| Box::new(net) as Box<dyn RenderNet>)
            .map_err(|e| e.to_string());
    }
    let found = lucid_checkpoint::discover(path).map_err(|e| e.to_string())?;
    let file = match found.as_slice() {
        [one] => ModelFile::open(&one.path).map_err(|e| e.to_string())?,
        [] => return Err(format!("no checkpoint found at {}", path.display())),
        many => {
            return Err(format!(
                "{} holds {} checkpoints; a task's model must name one model file",
                path.display(),
                many.len()
            ));
        }
    };
    let load = || -> Result<Box<dyn RenderNet>, String> {
        match network {
            NetworkChoice::Native => AlexNet::load(&file, device)
                .map(|net| Box::new(net) as Box<dyn RenderNet>)
                .map_err(|e| e.to_string()),
            NetworkChoice::TorchScript => Err("a TorchScript export is loaded above".into()),
            NetworkChoice::Described { description, .. } => {
                let resolved = Network::resolve(description.as_ref().clone(), &file)
                    .map_err(|e| e.to_string())?;
                DescribedNet::load(resolved, &file, device, true)
                    .map(|net| Box::new(net) as Box<dyn RenderNet>)
                    .map_err(|e| e.to_string())
            }
        }
    };
    std::panic::catch_unwind(AssertUnwindSafe(load)).map_err(|panic| {
        format!(
            "libtorch failed while loading the model: {}",
            panic_message(&panic)
        )
    })?
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a device with room for `room` images per batch (the real failure needs a GPU).
    fn device_with_room(
        room: usize,
        calls: &mut Vec<usize>,
    ) -> impl FnMut(&[usize]) -> Result<BatchOutput, RenderError> + '_ {
        move |chunk: &[usize]| {
            calls.push(chunk.len());
            if chunk.len() > room {
                return Err(RenderError::torch(
                    "conv5",
                    tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into()),
                ));
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
