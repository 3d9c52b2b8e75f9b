//! The one table of render defaults and limits.
//!
//! Every default a spec's `[render]` section falls back to, and every range its validation enforces,
//! is a constant here. The spec ([`super::RenderSection`], [`super::RenderSettings::validate`]), the
//! worker's engine (`Settings::lucid`, its own checks) and the coordinator's time estimate (the
//! reference steps and size of its rates) all read them from this table, so changing a default or a
//! limit is one edit.
//!
//! The defaults are lucid's `render_vis` ones: 512 steps (lucid's threshold, i.e. 513 Adam updates),
//! 224 px, Adam at 0.05, the channel objective on a decorrelated FFT image under the standard
//! transforms.

use super::render::{Objective, Param, Precision, RenderSettings, Transforms};

/// Optimisation steps per image (lucid's threshold 512: the image after 513 Adam updates).
pub const DEFAULT_STEPS: u32 = 512;
/// Fewest accepted `render.steps`.
pub const MIN_STEPS: u32 = 1;
/// Most accepted `render.steps`.
pub const MAX_STEPS: u32 = 100_000;

/// Image side in pixels (lucid's default).
pub const DEFAULT_SIZE: u32 = 224;
/// Smallest accepted `render.size`; a layer may still need more (see [`crate::geometry`]).
pub const MIN_SIZE: u32 = 16;
/// Largest accepted `render.size`.
pub const MAX_SIZE: u32 = 4096;

/// Adam learning rate (lucid's default).
pub const DEFAULT_LR: f64 = 0.05;
/// Largest accepted `render.lr`; the rate must also be finite and greater than 0.
pub const MAX_LR: f64 = 10.0;

/// `render.batch`: 0 lets the worker choose how many images it optimises together.
pub const DEFAULT_BATCH: u32 = 0;
/// Largest accepted `render.batch`.
pub const MAX_BATCH: u32 = 4096;

/// Seed of the image initialisation.
pub const DEFAULT_RUN_SEED: u64 = 0;
/// What is maximised: the channel's mean activation.
pub const DEFAULT_OBJECTIVE: Objective = Objective::Channel;
/// Image parameterisation: scaled Fourier coefficients.
pub const DEFAULT_PARAM: Param = Param::Fft;
/// Whether colours are decorrelated.
pub const DEFAULT_DECORRELATE: bool = true;
/// Robustness transforms: lucid's standard stack.
pub const DEFAULT_TRANSFORMS: Transforms = Transforms::Standard;
/// Arithmetic precision: TF32 tensor cores on CUDA (the same as fp32 on the CPU).
pub const DEFAULT_PRECISION: Precision = Precision::Tf32;

/// Lucid's ReLU gradient redirect over the first updates: on.
pub const DEFAULT_RELU_REDIRECT: bool = true;
/// The transforms as one composed affine sample: on (tested against the direct form).
pub const DEFAULT_FUSED_TRANSFORMS: bool = true;

/// λ of the diversity view: the objective minus λ times lucid's diversity term. Lucid has no default
/// of its own; its diversity tutorial (and Olah et al., "Feature Visualization", Distill 2017) use
/// `channel - 1e2 * diversity`, so 100.
pub const DEFAULT_DIVERSITY_WEIGHT: f64 = 100.0;
/// Largest accepted `render.diversity_weight`; it must also be finite and at least 0 (0 gives
/// independent renders of the same unit, the comparison the diversity tests make).
pub const MAX_DIVERSITY_WEIGHT: f64 = 1.0e6;

/// The default render settings, as a task carries them: the defaults above in one value.
pub const DEFAULT_SETTINGS: RenderSettings = RenderSettings {
    steps: DEFAULT_STEPS,
    size: DEFAULT_SIZE,
    objective: DEFAULT_OBJECTIVE,
    run_seed: DEFAULT_RUN_SEED,
    param: DEFAULT_PARAM,
    decorrelate: DEFAULT_DECORRELATE,
    transforms: DEFAULT_TRANSFORMS,
    lr: DEFAULT_LR,
    precision: DEFAULT_PRECISION,
    relu_redirect: DEFAULT_RELU_REDIRECT,
    fused_transforms: DEFAULT_FUSED_TRANSFORMS,
    diversity_weight: DEFAULT_DIVERSITY_WEIGHT,
};
