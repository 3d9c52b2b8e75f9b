//! The optimisation loop: many channels of one layer rendered together.

use std::time::Instant;

use lucid_proto::spec::Precision;
use lucid_proto::spec::render_defaults;
use tch::{Kind, Tensor};

use super::net::{GradRequest, RenderNet, index_tensor};
use super::objective::{Objective, diversity_penalty, evaluate as objective_of};
use super::param::{INIT_SD, ImageParam, ParamKind, from_lucid_order, variable_shape};
use super::seeding::{channel_rng, normals, transform_rng};
use super::transform::{Draw, TransformSet, Transforms, draw_plan};
use crate::model::ModelError;

/// Learning rate of lucid's Adam (the spec's default).
pub const DEFAULT_LR: f64 = render_defaults::DEFAULT_LR;
/// Lucid's default threshold: 512 steps, i.e. 513 Adam updates (the spec's default).
pub const DEFAULT_STEPS: u32 = render_defaults::DEFAULT_STEPS;
/// Lucid's default image side (the spec's default).
pub const DEFAULT_SIZE: usize = render_defaults::DEFAULT_SIZE as usize;
/// Adam updates during which lucid redirects ReLU gradients (its global step ≤ 16).
pub const RELU_REDIRECT_UPDATES: u32 = 17;
/// Smallest accepted image side (as the sweep spec).
pub const MIN_SIZE: usize = render_defaults::MIN_SIZE as usize;
/// Largest accepted image side (as the sweep spec).
pub const MAX_SIZE: usize = render_defaults::MAX_SIZE as usize;
/// Fewest accepted steps (as the sweep spec).
pub const MIN_STEPS: u32 = render_defaults::MIN_STEPS;
/// Largest accepted step count (as the sweep spec).
pub const MAX_STEPS: u32 = render_defaults::MAX_STEPS;

/// Everything that determines an image besides the model, layer and channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Lucid's threshold: the optimisation makes `steps + 1` Adam updates, as `render_vis` does.
    pub steps: u32,
    /// Side of the square image in pixels.
    pub size: usize,
    /// What is maximised.
    pub objective: Objective,
    /// The image parameterisation.
    pub param: ParamKind,
    /// Whether colours go through lucid's decorrelation matrix.
    pub decorrelate: bool,
    /// Transformation robustness.
    pub transforms: TransformSet,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the run; with the model label, layer and channel it fixes the initial image.
    pub run_seed: u64,
    /// Lucid's ReLU gradient redirect for the first 17 updates.
    pub relu_redirect: bool,
    /// Lucid's diversity term: `weight` and images per channel (each channel gets `copies` images).
    pub diversity: Option<Diversity>,
    /// Apply the transforms as one composed affine sample per update (faster; same geometry, one
    /// interpolation instead of two) rather than pad, crop, resize, rotate and crop one by one.
    pub fused_transforms: bool,
    /// Make each Adam update one pass of libtorch's fused kernel ([`lucid_aten::fused_adam_`])
    /// instead of the direct form's seven elementwise passes; the same arithmetic (tested).
    pub fused_adam: bool,
    /// Arithmetic precision of the network (see [`crate::precision`]).
    pub precision: Precision,
}

/// Lucid's diversity option: `copies` images per channel, penalised by `weight` times the similarity of
/// their layer Gram matrices.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Diversity {
    /// Penalty weight (lucid's examples use 100).
    pub weight: f64,
    /// Images per channel, at least 2.
    pub copies: usize,
}

impl Settings {
    /// Lucid's defaults, which are the spec's ([`render_defaults`]): 512 steps, 224 px, channel
    /// objective, FFT + decorrelated colour, standard transforms, Adam 0.05; and ReLU redirect on.
    pub fn lucid() -> Self {
        Self {
            steps: DEFAULT_STEPS,
            size: DEFAULT_SIZE,
            objective: render_defaults::DEFAULT_OBJECTIVE,
            param: render_defaults::DEFAULT_PARAM,
            decorrelate: render_defaults::DEFAULT_DECORRELATE,
            transforms: render_defaults::DEFAULT_TRANSFORMS,
            lr: DEFAULT_LR,
            run_seed: render_defaults::DEFAULT_RUN_SEED,
            relu_redirect: true,
            diversity: None,
            fused_transforms: true,
            fused_adam: true,
            precision: render_defaults::DEFAULT_PRECISION,
        }
    }

    /// Adam updates made: lucid's `render_vis` runs `max(thresholds) + 1` of them.
    pub fn updates(&self) -> u32 {
        self.steps + 1
    }
}

/// Why a render was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The layer is not in the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A channel index beyond the layer's width.
    #[error("channel {channel} out of range for layer {layer}: it has {width} channels (0..={})", width.saturating_sub(1))]
    ChannelOutOfRange {
        /// The layer.
        layer: String,
        /// The requested channel.
        channel: usize,
        /// The layer's channel count.
        width: usize,
    },
    /// A setting outside its valid range.
    #[error("invalid render setting {field}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The render was stopped between two updates (the worker is shutting down).
    #[error("rendering {layer} was cancelled: the worker is stopping")]
    Cancelled {
        /// The layer being rendered.
        layer: String,
    },
    /// libtorch failed.
    #[error("libtorch error while rendering {layer}: {source}")]
    Torch {
        /// The layer being rendered.
        layer: String,
        /// libtorch's error.
        source: tch::TchError,
    },
    /// The device ran out of memory: the batch is too large for it (see
    /// [`crate::pipeline::gpu::render_fitting`], which retries in halves).
    #[error("out of device memory while rendering {layer}: {source}")]
    OutOfMemory {
        /// The layer being rendered.
        layer: String,
        /// libtorch's error.
        source: tch::TchError,
    },
}

impl RenderError {
    /// Wraps a libtorch error. tch 0.24 hands every C++ exception over as text, so this is the one
    /// place that reads it: libtorch's CUDA allocator (`c10::OutOfMemoryError`) says "out of memory".
    pub fn torch(layer: &str, source: tch::TchError) -> Self {
        let layer = layer.to_string();
        if source.to_string().contains("out of memory") {
            RenderError::OutOfMemory { layer, source }
        } else {
            RenderError::Torch { layer, source }
        }
    }
}

/// One finished image.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// The channel it maximises.
    pub channel: usize,
    /// Which copy of the channel (0 unless the diversity option is on).
    pub copy: usize,
    /// Side in pixels.
    pub size: usize,
    /// Interleaved 8-bit RGB, row-major, `size * size * 3` bytes.
    pub rgb: Vec<u8>,
    /// The objective on the initial image, untransformed.
    pub objective_start: f64,
    /// The objective on the final image, untransformed.
    pub objective_end: f64,
}

/// A batch's images and how long it took.
#[derive(Debug)]
pub struct BatchOutput {
    /// One image per requested channel (times copies), in request order.
    pub images: Vec<RenderedImage>,
    /// Wall time of the optimisation and read-back.
    pub seconds: f64,
}

/// Renders `channels` of `layer` together: one variable per image, one transform draw per step for the
/// batch, loss = −Σ objectives. `model_label` names the model for seeding.
pub fn render_batch(
    model: &dyn RenderNet,
    model_label: &str,
    layer: &str,
    channels: &[usize],
    settings: &Settings,
) -> Result<BatchOutput, RenderError> {
    render_batch_until(model, model_label, layer, channels, settings, &|| false)
}

/// [`render_batch`] that gives up with [`RenderError::Cancelled`] as soon as `stop` answers true; it
/// is asked before every update, so a stop takes effect within one update.
pub fn render_batch_until(
    model: &dyn RenderNet,
    model_label: &str,
    layer: &str,
    channels: &[usize],
    settings: &Settings,
    stop: &dyn Fn() -> bool,
) -> Result<BatchOutput, RenderError> {
    let started = Instant::now();
    let mut run = Optimisation::new(model, model_label, layer, channels, settings)?;
    let objective_start = run.objectives()?;
    for update in 0..run.updates() {
        if stop() {
            return Err(RenderError::Cancelled {
                layer: layer.to_string(),
            });
        }
        run.update(update, &mut NoClock)?;
    }
    let images = run.finish(objective_start)?;
    Ok(BatchOutput {
        images,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Benchmark only: images for `channels` without optimising or running the model (both objectives
/// are reported as 0), cheap enough that the queue and storage path, not this, is what a benchmark
/// measures. `lucid-worker serve --benchmark-renderer` uses it to show that queue and storage never
/// hold a device back. The request is validated as for [`render_batch`].
///
/// The images are lucid's initial image of the batch's first channel (1/f noise through the
/// decorrelated-colour parameterisation), contrast-stretched to a mean of 128 and a standard
/// deviation of 48 levels, so that its PNG is about as large as a rendered one, and shifted by a
/// different number of bytes for each channel, so that every image is distinct.
pub fn benchmark_images(
    model: &dyn RenderNet,
    model_label: &str,
    layer: &str,
    channels: &[usize],
    settings: &Settings,
) -> Result<BatchOutput, RenderError> {
    let started = Instant::now();
    let target = model.layer_index(layer)?;
    validate(model, target, channels, settings)?;
    let torch_err = |source| RenderError::torch(layer, source);
    let Some(&first) = channels.first() else {
        return Ok(BatchOutput {
            images: Vec::new(),
            seconds: 0.0,
        });
    };
    let _guard = tch::no_grad_guard();
    let var = initial_variables(
        &[(first, 0)],
        settings,
        model_label,
        layer,
        tch::Device::Cpu,
    )
    .map_err(torch_err)?;
    let param = ImageParam::new(
        settings.param,
        settings.size,
        settings.decorrelate,
        tch::Device::Cpu,
    );
    let image = param.images(&var);
    let stretched =
        ((&image - image.mean(Kind::Float)) / (image.std(true) + 1e-6) * (48.0 / 255.0) + 0.5)
            .clamp(0.0, 1.0);
    let base = super::param::to_rgb8(&stretched)
        .map_err(torch_err)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let images = channels
        .iter()
        .enumerate()
        .map(|(i, &channel)| {
            let mut rgb = base.clone();
            if !rgb.is_empty() {
                let shift = (i * 3 * 7919) % rgb.len();
                rgb.rotate_left(shift);
            }
            RenderedImage {
                channel,
                copy: 0,
                size: settings.size,
                rgb,
                objective_start: 0.0,
                objective_end: 0.0,
            }
        })
        .collect();
    Ok(BatchOutput {
        images,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The phases of one update, as a benchmark times them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Parameterisation (FFT, colour, sigmoid) and transforms, forward.
    ParamTransforms,
    /// The network up to the target layer and the objective.
    Forward,
    /// Backward through the network, the transforms and the parameterisation.
    Backward,
    /// The Adam update.
    Optimiser,
}

/// Told when each phase of an update ends; benchmarks synchronise the device and read a clock.
pub trait PhaseClock {
    /// `phase` just ended.
    fn mark(&mut self, phase: Phase);
}

/// A clock that does nothing: the production path never synchronises the device.
#[derive(Debug)]
pub struct NoClock;

impl PhaseClock for NoClock {
    fn mark(&mut self, _phase: Phase) {}
}

/// One batch's optimisation, prepared and stepped update by update.
#[derive(Debug)]
pub struct Optimisation<'a> {
    model: &'a dyn RenderNet,
    layer: String,
    target: usize,
    settings: Settings,
    param: ImageParam,
    transforms: Transforms,
    var: Tensor,
    channel_t: Tensor,
    order: Vec<(usize, usize)>,
    plan: Vec<Draw>,
    adam: Adam,
}

impl<'a> Optimisation<'a> {
    /// Validates the request and builds the initial variables on the model's device.
    pub fn new(
        model: &'a dyn RenderNet,
        model_label: &str,
        layer: &str,
        channels: &[usize],
        settings: &Settings,
    ) -> Result<Self, RenderError> {
        let target = model.layer_index(layer)?;
        validate(model, target, channels, settings)?;
        crate::precision::apply(settings.precision);
        let torch_err = |source| RenderError::torch(layer, source);
        let device = model.device();
        let copies = settings.diversity.map_or(1, |d| d.copies);
        let order: Vec<(usize, usize)> = channels
            .iter()
            .flat_map(|&c| (0..copies).map(move |copy| (c, copy)))
            .collect();
        let var = initial_variables(&order, settings, model_label, layer, device)
            .map_err(torch_err)?
            .set_requires_grad(true);
        let channel_index: Vec<i64> = order.iter().map(|&(c, _)| c as i64).collect();
        let channel_t = index_tensor(&channel_index, device);
        let param = ImageParam::new(settings.param, settings.size, settings.decorrelate, device);
        let mut transforms = Transforms::new(settings.transforms, settings.size, device);
        let plan = draw_plan(
            &mut transform_rng(settings.run_seed, model_label, layer),
            settings.updates() as usize,
        );
        if settings.fused_transforms {
            transforms.prepare_fused(settings.size, &plan, device);
        }
        let adam = Adam::new(&var, settings.lr, settings.fused_adam).map_err(torch_err)?;
        Ok(Self {
            model,
            layer: layer.to_string(),
            target,
            settings: settings.clone(),
            param,
            transforms,
            var,
            channel_t,
            order,
            plan,
            adam,
        })
    }

    /// Adam updates this optimisation makes.
    pub fn updates(&self) -> usize {
        self.plan.len()
    }

    /// Images in the batch.
    pub fn batch_size(&self) -> usize {
        self.order.len()
    }

    fn torch_err(&self, source: tch::TchError) -> RenderError {
        RenderError::torch(&self.layer, source)
    }

    /// Each image's objective, untransformed (synchronises with the device).
    pub fn objectives(&self) -> Result<Vec<f64>, RenderError> {
        evaluate(
            self.model,
            self.target,
            &self.param,
            &self.var,
            &self.channel_t,
            self.settings.objective,
        )
        .map_err(|e| self.torch_err(e))
    }

    /// Makes Adam update number `update` (0-based), telling `clock` as each phase ends.
    pub fn update(&mut self, update: usize, clock: &mut dyn PhaseClock) -> Result<(), RenderError> {
        let redirect = self.settings.relu_redirect && (update as u32) < RELU_REDIRECT_UPDATES;
        // validation guarantees at least two updates, so the plan is never empty
        let index = update % self.plan.len();
        let draw = self.plan[index];
        step(
            self.model,
            self.target,
            &self.param,
            &self.transforms,
            &self.var,
            &self.channel_t,
            &draw,
            index,
            &self.settings,
            redirect,
            clock,
        )
        .map_err(|e| self.torch_err(e))?;
        self.adam.step(&self.var).map_err(|e| self.torch_err(e))?;
        clock.mark(Phase::Optimiser);
        Ok(())
    }

    /// Reads the final images back, with `objective_start` from before the first update.
    pub fn finish(self, objective_start: Vec<f64>) -> Result<Vec<RenderedImage>, RenderError> {
        let objective_end = self.objectives()?;
        let rgb = {
            let _guard = tch::no_grad_guard();
            super::param::to_rgb8(&self.param.images(&self.var)).map_err(|e| self.torch_err(e))?
        };
        Ok(self
            .order
            .iter()
            .zip(rgb)
            .enumerate()
            .map(|(i, (&(channel, copy), rgb))| RenderedImage {
                channel,
                copy,
                size: self.settings.size,
                rgb,
                objective_start: objective_start.get(i).copied().unwrap_or(f64::NAN),
                objective_end: objective_end.get(i).copied().unwrap_or(f64::NAN),
            })
            .collect())
    }
}

/// The `[order.len(), …]` tensor of the initial variables of `order` on `device`
/// ([`initial_values`]).
fn initial_variables(
    order: &[(usize, usize)],
    settings: &Settings,
    model_label: &str,
    layer: &str,
    device: tch::Device,
) -> Result<Tensor, tch::TchError> {
    let shape = variable_shape(settings.param, settings.size);
    let init = initial_values(order, settings, model_label, layer, &shape);
    let mut full_shape = vec![order.len() as i64];
    full_shape.extend(&shape);
    Tensor::f_from_slice(&init)?
        .f_view(full_shape.as_slice())?
        .f_to_device(device)
}

/// The initial variables of every (channel, copy), each from its own seeded stream in lucid's order and
/// stored in [`variable_shape`]'s, generated on all CPU cores (a 256-channel batch at 224 px draws
/// 39 M normals).
fn initial_values(
    order: &[(usize, usize)],
    settings: &Settings,
    model_label: &str,
    layer: &str,
    shape: &[i64],
) -> Vec<f32> {
    let per_image: usize = shape.iter().map(|&d| d as usize).product();
    let mut init = vec![0f32; per_image * order.len()];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk_images = order.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk, out) in order
            .chunks(chunk_images)
            .zip(init.chunks_mut(chunk_images * per_image))
        {
            scope.spawn(move || {
                for (&(channel, copy), dst) in chunk.iter().zip(out.chunks_mut(per_image)) {
                    let key = if copy == 0 {
                        layer.to_string()
                    } else {
                        format!("{layer}#copy{copy}")
                    };
                    let values = normals(
                        &mut channel_rng(settings.run_seed, model_label, &key, channel),
                        per_image,
                        INIT_SD,
                    );
                    dst.copy_from_slice(&from_lucid_order(settings.param, settings.size, &values));
                }
            });
        }
    });
    init
}

/// Checks channels and settings before any device work.
fn validate(
    model: &dyn RenderNet,
    target: usize,
    channels: &[usize],
    settings: &Settings,
) -> Result<(), RenderError> {
    let (name, width) = (model.layer_name(target), model.layer_width(target));
    let invalid = |field, reason: String| Err(RenderError::InvalidSetting { field, reason });
    if channels.is_empty() {
        return invalid("channels", "no channels to render".into());
    }
    if let Some(&channel) = channels.iter().find(|&&c| c >= width) {
        return Err(RenderError::ChannelOutOfRange {
            layer: name.to_owned(),
            channel,
            width,
        });
    }
    if settings.steps < MIN_STEPS || settings.steps > MAX_STEPS {
        return invalid(
            "steps",
            format!(
                "must be between {MIN_STEPS} and {MAX_STEPS}, got {}",
                settings.steps
            ),
        );
    }
    if settings.size < MIN_SIZE || settings.size > MAX_SIZE {
        return invalid(
            "size",
            format!(
                "must be between {MIN_SIZE} and {MAX_SIZE} px, got {}",
                settings.size
            ),
        );
    }
    if !(settings.lr.is_finite() && settings.lr > 0.0) {
        return invalid(
            "lr",
            format!("must be a positive number, got {}", settings.lr),
        );
    }
    if let Some(d) = settings.diversity
        && (d.copies < 2 || !d.weight.is_finite())
    {
        return invalid(
            "diversity",
            format!(
                "needs at least 2 copies and a finite weight, got {} copies, weight {}",
                d.copies, d.weight
            ),
        );
    }
    let seen = Transforms::min_output_side(settings.transforms, settings.size);
    let needed = model.min_input_side(target) as i64;
    if seen < needed {
        return invalid(
            "size",
            format!(
                "{} px is too small for layer {}: after transforms the network sees {seen} px, and {} needs at least {needed} px",
                settings.size, name, name
            ),
        );
    }
    Ok(())
}

/// The objective of each image without transforms.
fn evaluate(
    model: &dyn RenderNet,
    target: usize,
    param: &ImageParam,
    var: &Tensor,
    channels: &Tensor,
    objective: Objective,
) -> Result<Vec<f64>, tch::TchError> {
    let _guard = tch::no_grad_guard();
    // measured in full fp32 whatever the optimisation's precision, so precisions compare fairly
    let (cudnn_tf32, cublas_tf32) = crate::precision::tf32();
    crate::precision::set_tf32(false);
    let acts = model.forward_centred(&param.centred(var), target, Kind::Float);
    let values = objective_of(objective, &acts, channels).f_to_kind(Kind::Double);
    crate::precision::set_tf32(cudnn_tf32 || cublas_tf32);
    let values = values?;
    Vec::<f64>::try_from(&values)
}

/// One forward and backward pass, leaving the gradient in `var.grad()`.
#[allow(clippy::too_many_arguments)]
fn step(
    model: &dyn RenderNet,
    target: usize,
    param: &ImageParam,
    transforms: &Transforms,
    var: &Tensor,
    channels: &Tensor,
    draw: &Draw,
    index: usize,
    settings: &Settings,
    redirect: bool,
    clock: &mut dyn PhaseClock,
) -> Result<(), tch::TchError> {
    let x = transforms.apply_update(&param.centred(var), draw, index);
    clock.mark(Phase::ParamTransforms);
    let loss_of = |acts: &Tensor| -> Tensor {
        let objectives = objective_of(settings.objective, acts, channels).sum(Kind::Float);
        match settings.diversity {
            Some(d) => {
                let penalty = diversity_penalty(acts, d.copies as i64).sum(Kind::Float);
                -(objectives - penalty * d.weight)
            }
            None => -objectives,
        }
    };
    let kind = crate::precision::network_kind(settings.precision);
    if !redirect || target == 0 {
        let loss = loss_of(&model.forward_centred(&x, target, kind));
        clock.mark(Phase::Forward);
        loss.f_backward()?;
        clock.mark(Phase::Backward);
        return Ok(());
    }
    let request = GradRequest {
        index: target,
        kind,
        loss_of: &loss_of,
        clock,
    };
    let grad = model.redirected_grad(&x, request)?;
    (x * grad).sum(Kind::Float).f_backward()?;
    clock.mark(Phase::Backward);
    Ok(())
}

/// Lucid's `redirected_relu_grad`: per batch element, the ordinary ReLU gradient where any of it gets
/// through, otherwise the incoming gradient except where `x < 0` and the gradient would push `x` lower.
pub fn redirected_relu_grad(x: &Tensor, grad: &Tensor) -> Tensor {
    let negative = x.lt(0.0);
    let zeros = grad.zeros_like();
    let relu_grad = grad.where_self(&negative.logical_not(), &zeros);
    let pushing_lower = negative.logical_and(&grad.gt(0.0));
    let redirected = zeros.where_self(&pushing_lower, grad);
    let b = x.size()[0];
    let magnitude = relu_grad
        .reshape([b, -1])
        .norm_scalaropt_dim(2, [1].as_slice(), false)
        .view([b, 1, 1, 1]);
    relu_grad.where_self(&magnitude.gt(0.0), &redirected)
}

/// Adam as TensorFlow's `AdamOptimizer` computes it (β1 0.9, β2 0.999, ε 1e-8 added to √v).
///
/// TensorFlow: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `var ← var − lr_t·m/(√v + ε)` with
/// `lr_t = lr·√(1−β2^t)/(1−β1^t)`. Two forms compute it:
/// - **fused**: libtorch's `_fused_adam_`, one pass over the variable. Its bias corrections come from
///   a step count on the device; that count is held at [`Adam::UNCORRECTED_STEP`], where both
///   corrections are exactly 1, and `lr_t` is passed as the step size, so the kernel computes
///   TensorFlow's update with ε where TensorFlow adds it (PyTorch's own form adds ε to the corrected
///   `√v`, a different optimiser for small gradients).
/// - **direct**: the moments as `lerp`s, the step as one `addcdiv` by `(√v + ε)/(−lr_t)`: seven
///   passes, kept as the reference the fused form is tested against.
///
/// Either way the gradient is released after the update rather than zeroed, so the next backward
/// stores its gradient instead of adding it into zeros.
#[derive(Debug)]
pub struct Adam {
    lr: f64,
    m: Tensor,
    v: Tensor,
    t: i32,
    /// The fused kernel's step count ([`Adam::UNCORRECTED_STEP`]), when the fused form runs.
    fused_step: Option<Tensor>,
}

impl Adam {
    /// β1 of lucid's optimiser.
    pub const BETA1: f64 = 0.9;
    /// β2 of lucid's optimiser.
    pub const BETA2: f64 = 0.999;
    /// ε of lucid's optimiser.
    pub const EPSILON: f64 = 1e-8;
    /// A step count at which `1 − β^s` is exactly 1 for both betas (`0.999^1e9` underflows to 0).
    pub const UNCORRECTED_STEP: f64 = 1e9;

    /// Zeroed moments for `var`; `fused` picks the fused form.
    pub fn new(var: &Tensor, lr: f64, fused: bool) -> Result<Self, tch::TchError> {
        let fused_step = if fused {
            Some(Tensor::f_full(
                [1],
                Self::UNCORRECTED_STEP,
                (Kind::Float, var.device()),
            )?)
        } else {
            None
        };
        Ok(Self {
            lr,
            m: var.f_zeros_like()?,
            v: var.f_zeros_like()?,
            t: 0,
            fused_step,
        })
    }

    /// Applies one update from `var.grad()` and releases the gradient.
    pub fn step(&mut self, var: &Tensor) -> Result<(), tch::TchError> {
        let _guard = tch::no_grad_guard();
        self.t += 1;
        let grad = var.grad();
        if !grad.defined() {
            return Ok(());
        }
        let lr_t =
            self.lr * (1.0 - Self::BETA2.powi(self.t)).sqrt() / (1.0 - Self::BETA1.powi(self.t));
        match &self.fused_step {
            Some(step) => {
                let hyper = lucid_aten::AdamHyper {
                    lr: lr_t,
                    beta1: Self::BETA1,
                    beta2: Self::BETA2,
                    eps: Self::EPSILON,
                };
                lucid_aten::fused_adam_(var, &grad, &self.m, &self.v, step, hyper)
                    .map_err(aten_err)?;
            }
            None => self.direct_step(var, &grad, lr_t)?,
        }
        lucid_aten::release_grad(var).map_err(aten_err)
    }

    /// The direct form's passes for one update with step size `lr_t`.
    fn direct_step(&mut self, var: &Tensor, grad: &Tensor, lr_t: f64) -> Result<(), tch::TchError> {
        let _ = self.m.f_lerp_(grad, 1.0 - Self::BETA1)?;
        let _ = self.v.f_lerp_(&grad.f_square()?, 1.0 - Self::BETA2)?;
        let mut denom = self.v.f_sqrt()?;
        let _ = denom.f_add_scalar_(Self::EPSILON)?;
        let _ = denom.f_mul_scalar_(-1.0 / lr_t)?;
        let mut var = var.shallow_clone();
        let _ = var.f_addcdiv_(&self.m, &denom)?;
        Ok(())
    }
}

/// The shim's error as tch's, which the engine's errors carry (naming the operator and its message).
fn aten_err(e: lucid_aten::AtenError) -> tch::TchError {
    tch::TchError::Torch(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn redirect_applies_only_where_nothing_gets_through() {
        // element 0: one positive input passes the plain ReLU gradient
        // element 1: all inputs negative → the redirected gradient, zeroed where grad > 0
        let x = Tensor::from_slice(&[1.0f32, -1.0, -2.0, -1.0, -1.0, -3.0]).view([2, 3, 1, 1]);
        let g = Tensor::from_slice(&[0.5f32, 0.7, -0.2, 0.4, -0.3, -0.6]).view([2, 3, 1, 1]);
        let out: Vec<f32> =
            Vec::try_from(redirected_relu_grad(&x, &g).flatten(0, -1)).unwrap_or_default();
        assert_eq!(out, vec![0.5, 0.0, 0.0, 0.0, -0.3, -0.6]);
    }

    #[test]
    fn adam_matches_tensorflow_first_steps() {
        // TF: lr_t = lr·sqrt(1−β2^t)/(1−β1^t); first step moves by ≈ lr·sign(g)
        for fused in [false, true] {
            let var = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let mut adam = Adam::new(&var, 0.05, fused).expect("adam");
            let loss = (&var * Tensor::from_slice(&[2.0f32, -0.001])).sum(Kind::Float);
            loss.backward();
            adam.step(&var).expect("step");
            let v: Vec<f32> = Vec::try_from(var.detach()).unwrap_or_default();
            // the second element shows TF's ε placement: 0.05·√0.001/0.1 · 1e-4/(√1e-9 + 1e-8)
            assert!(
                (v[0] + 0.05).abs() < 1e-6 && (v[1] - 0.049_984_2).abs() < 1e-6,
                "fused {fused}: {v:?}"
            );
            assert!(!var.grad().defined(), "fused {fused}: gradient released");
        }
    }

    /// The fused kernel against the direct form over many updates, with gradients from 1e-10 (where
    /// ε's placement decides the step) to 10, changing sign.
    #[test]
    fn fused_adam_follows_the_direct_form_update_for_update() {
        tch::manual_seed(3);
        let start = Tensor::randn([4, 3, 8, 5, 2], (Kind::Float, Device::Cpu)) * 0.01;
        let magnitudes = Tensor::from_slice(&[1e-10f32, 1e-6, 1e-2, 10.0]).view([4, 1, 1, 1, 1]);
        let grads: Vec<Tensor> = (0..60).map(|_| start.randn_like() * &magnitudes).collect();
        let run = |fused: bool| {
            let var = start.copy().set_requires_grad(true);
            let mut adam = Adam::new(&var, 0.05, fused).expect("adam");
            for g in &grads {
                (&var * g).sum(Kind::Float).backward();
                adam.step(&var).expect("step");
            }
            var.detach()
        };
        let (direct, fused) = (run(false), run(true));
        let moved = (&direct - &start).abs().max().double_value(&[]);
        let err = (&fused - &direct).abs().max().double_value(&[]);
        assert!(moved > 0.1, "the updates moved the variable ({moved})");
        assert!(
            err < 1e-5 * moved,
            "fused differs by {err} after moving {moved}"
        );
    }
}
