//! `lucid-worker inspect`: each seed's layer table (kernel, stride, padding, channels) read from its
//! model files, printed as a table or, with `--json`, as one [`InspectReport`] document.
//!
//! # JSON schema (version 1)
//!
//! `{ "schema_version": 1, "seeds": [ { "seed", "path", "layers": [ { "layer", "kernel", "stride",
//! "padding" ("SAME" | "VALID"), "in_channels", "out_channels" } ], "total_channels" } ],
//! "total_channels" }`, seeds in discovery order and layers in network order.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use lucid_checkpoint::alexnet::{AlexNetSpec, Padding};
use lucid_checkpoint::{ModelFile, discover};
use serde::{Deserialize, Serialize};

/// The version of [`InspectReport`] documents this build prints.
pub const INSPECT_SCHEMA_VERSION: u32 = 1;

/// What `inspect` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    /// Always [`INSPECT_SCHEMA_VERSION`] for reports of this build.
    pub schema_version: u32,
    /// Every seed found, in discovery order.
    pub seeds: Vec<SeedLayers>,
    /// Output channels over all seeds and layers.
    pub total_channels: usize,
}

/// One seed's layer table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedLayers {
    /// The seed's name (`training_seed_01`).
    pub seed: String,
    /// The model file read.
    pub path: String,
    /// Its layers in network order.
    pub layers: Vec<LayerShape>,
    /// Output channels over its layers.
    pub total_channels: usize,
}

/// One layer's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    /// `conv1` … `fc8`.
    pub layer: String,
    /// Kernel side (kernels are square).
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// `SAME` or `VALID`.
    pub padding: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels, read from the weights.
    pub out_channels: usize,
}

/// Reads the layer table of every seed found at `path` (a checkpoint prefix, a `.safetensors` file
/// or a folder of `training_seed_NN` sub-folders).
pub fn inspect(path: &Path) -> Result<InspectReport> {
    let seeds = discover(path).with_context(|| format!("no model found at {}", path.display()))?;
    let mut out = Vec::with_capacity(seeds.len());
    for seed in &seeds {
        let file = ModelFile::open(&seed.path)?;
        let spec = AlexNetSpec::from_model(&file)?;
        let layers = spec
            .layers
            .iter()
            .map(|l| LayerShape {
                layer: l.name.clone(),
                kernel: l.kernel,
                stride: l.stride,
                padding: match l.padding {
                    Padding::Same => "SAME",
                    Padding::Valid => "VALID",
                }
                .to_owned(),
                in_channels: l.in_channels,
                out_channels: l.out_channels,
            })
            .collect();
        out.push(SeedLayers {
            seed: seed.seed.to_string(),
            path: seed.path.display().to_string(),
            layers,
            total_channels: spec.total_channels(),
        });
    }
    Ok(InspectReport {
        schema_version: INSPECT_SCHEMA_VERSION,
        total_channels: out.iter().map(|s| s.total_channels).sum(),
        seeds: out,
    })
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seed in &self.seeds {
            writeln!(f, "{} ({})", seed.seed, seed.path)?;
            writeln!(
                f,
                "  {:<6} {:>7} {:>6} {:>7} {:>6} {:>8}",
                "layer", "kernel", "stride", "padding", "in", "channels"
            )?;
            for l in &seed.layers {
                writeln!(
                    f,
                    "  {:<6} {:>7} {:>6} {:>7} {:>6} {:>8}",
                    l.layer,
                    format!("{0}x{0}", l.kernel),
                    l.stride,
                    l.padding,
                    l.in_channels,
                    l.out_channels
                )?;
            }
            writeln!(f, "  total channels: {}", seed.total_channels)?;
        }
        writeln!(
            f,
            "{} seed(s), {} channels in all",
            self.seeds.len(),
            self.total_channels
        )
    }
}

/// `inspect`: the report of `path` on `out`, as text or (with `json`) one JSON document.
pub fn run(path: &Path, json: bool, out: &mut impl std::io::Write) -> Result<()> {
    let report = inspect(path)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text table, as people read it.
    #[test]
    fn text_report() {
        let report = InspectReport {
            schema_version: INSPECT_SCHEMA_VERSION,
            seeds: vec![SeedLayers {
                seed: "s1".into(),
                path: "/m/model.safetensors".into(),
                layers: vec![LayerShape {
                    layer: "conv1".into(),
                    kernel: 11,
                    stride: 4,
                    padding: "VALID".into(),
                    in_channels: 3,
                    out_channels: 16,
                }],
                total_channels: 16,
            }],
            total_channels: 16,
        };
        assert_eq!(
            report.to_string(),
            "s1 (/m/model.safetensors)\n  layer   kernel stride padding     in channels\n  \
             conv1    11x11      4   VALID      3       16\n  total channels: 16\n\
             1 seed(s), 16 channels in all\n"
        );
    }
}
