//! The render settings every task carries ([`RenderSettings`], the wire form) and the spec's
//! `[render]` section ([`RenderSection`]): those settings once, plus the worker's batch size.
//!
//! Their defaults and limits are the table in [`super::render_defaults`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::error::{InvalidField, check_range};
use super::render_defaults::{
    DEFAULT_BATCH, DEFAULT_DIVERSITY_WEIGHT, DEFAULT_FUSED_TRANSFORMS, DEFAULT_RELU_REDIRECT,
    DEFAULT_SETTINGS, MAX_BATCH, MAX_DIVERSITY_WEIGHT, MAX_LR, MAX_SIZE, MAX_STEPS, MIN_SIZE,
    MIN_STEPS,
};

/// What the optimisation maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Mean activation of the channel over all positions.
    Channel,
    /// Activation of the channel at the centre position.
    Neuron,
    /// Minus the mean activation of the channel.
    NegativeChannel,
}

/// How the image is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// Scaled Fourier coefficients.
    Fft,
    /// Raw pixels.
    Pixel,
}

/// Robustness transforms applied before each forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transforms {
    /// Lucid's standard jitter, scale and rotate stack.
    Standard,
    /// No transforms.
    None,
}

/// Arithmetic precision of the network's forward and backward passes (the parameterisation,
/// transforms, objective and optimiser are always fp32, and reported objectives are measured in
/// full fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Full fp32: TF32 off for convolutions and matrix multiplies.
    Fp32,
    /// fp32 storage with TF32 tensor cores for convolutions and matrix multiplies on CUDA (the
    /// default; the same as `fp32` on the CPU).
    Tf32,
    /// The network's weights and activations in bfloat16.
    Bf16,
}

/// The render values that affect the image; two tasks with equal settings can share a batch.
///
/// This is the wire form, inside task messages, result sidecars and manifests: every field is
/// required and unknown fields are refused. A spec's `[render]` section ([`RenderSection`]) is where
/// missing fields take their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderSettings {
    /// Optimisation steps.
    pub steps: u32,
    /// Image side in pixels.
    pub size: u32,
    /// What is maximised.
    pub objective: Objective,
    /// Seed of the image initialisation; with the task it fixes the random stream.
    pub run_seed: u64,
    /// Image parameterisation.
    pub param: Param,
    /// Whether colours are decorrelated.
    pub decorrelate: bool,
    /// Robustness transforms.
    pub transforms: Transforms,
    /// Adam learning rate.
    pub lr: f64,
    /// Arithmetic precision.
    pub precision: Precision,
    /// Lucid's ReLU gradient redirect over the first updates (on by default; off changes the image,
    /// so it is a setting). Left out of the JSON when on, so that the settings of every earlier
    /// task, sidecar and manifest keep their bytes and their [`RenderSettings::fingerprint`].
    #[serde(
        default = "render_defaults_relu_redirect",
        skip_serializing_if = "is_default_relu_redirect"
    )]
    pub relu_redirect: bool,
    /// The transforms as one composed affine sample (on by default) or step by step (pad, crop,
    /// resize, rotate, crop: lucid's direct form, resampled at each step, so the image differs).
    /// Left out of the JSON when on, like `relu_redirect`.
    #[serde(
        default = "render_defaults_fused_transforms",
        skip_serializing_if = "is_default_fused_transforms"
    )]
    pub fused_transforms: bool,
    /// λ of the diversity view ([`crate::View::Diversity`]): its copies maximise the channel minus
    /// λ times lucid's diversity term. Other views ignore it. Left out of the JSON at its default,
    /// like `relu_redirect`.
    #[serde(
        default = "render_defaults_diversity_weight",
        skip_serializing_if = "is_default_diversity_weight"
    )]
    pub diversity_weight: f64,
}

fn render_defaults_diversity_weight() -> f64 {
    DEFAULT_DIVERSITY_WEIGHT
}

fn is_default_diversity_weight(weight: &f64) -> bool {
    *weight == DEFAULT_DIVERSITY_WEIGHT
}

fn render_defaults_relu_redirect() -> bool {
    DEFAULT_RELU_REDIRECT
}

fn is_default_relu_redirect(on: &bool) -> bool {
    *on == DEFAULT_RELU_REDIRECT
}

fn render_defaults_fused_transforms() -> bool {
    DEFAULT_FUSED_TRANSFORMS
}

fn is_default_fused_transforms(on: &bool) -> bool {
    *on == DEFAULT_FUSED_TRANSFORMS
}

/// [`DEFAULT_SETTINGS`]: the table's defaults.
impl Default for RenderSettings {
    fn default() -> Self {
        DEFAULT_SETTINGS
    }
}

impl RenderSettings {
    /// A stable short id of these settings: FNV-1a 64 of their canonical JSON, as 16 hex digits.
    ///
    /// Canonical JSON is the serde form with fields in declaration order, so the value only changes
    /// when a field or its value does; workers group tasks into batches by it.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        format!("{:016x}", fnv1a64(&canonical))
    }

    /// These settings as a task of `view` carries them: with the view's objective.
    pub fn for_view(self, view: crate::View) -> Self {
        Self {
            objective: view.objective(),
            ..self
        }
    }

    /// Checks the value ranges; `section` is the field path prefix used in errors (`render`, `settings`).
    pub fn validate(&self, section: &str) -> Result<(), InvalidField> {
        check_range(
            &format!("{section}.steps"),
            self.steps,
            MIN_STEPS,
            MAX_STEPS,
        )?;
        check_range(&format!("{section}.size"), self.size, MIN_SIZE, MAX_SIZE)?;
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            return Err(InvalidField::new(
                format!("{section}.lr"),
                format!(
                    "must be greater than 0 and at most {MAX_LR}, got {}",
                    self.lr
                ),
            ));
        }
        let weight = self.diversity_weight;
        if !(weight.is_finite() && (0.0..=MAX_DIVERSITY_WEIGHT).contains(&weight)) {
            return Err(InvalidField::new(
                format!("{section}.diversity_weight"),
                format!("must be at least 0 and at most {MAX_DIVERSITY_WEIGHT}, got {weight}"),
            ));
        }
        Ok(())
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The `[render]` section: the render settings, plus how many images a worker optimises together.
///
/// In the spec the settings' fields sit beside `batch` in one table (`[render]` `steps = 64`,
/// `batch = 8`); a field left out takes its default from [`super::render_defaults`], and an unknown
/// key is refused by name. Its JSON (inside a manifest) is the same flat object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderSection {
    /// Everything about the optimisation that affects the image, as every task carries it.
    #[serde(flatten)]
    pub settings: RenderSettings,
    /// Images optimised together on one GPU; 0 lets the worker choose (256 on CUDA, 8 on the CPU; a
    /// batch that does not fit in GPU memory is rendered in halves).
    pub batch: u32,
}

impl Default for RenderSection {
    fn default() -> Self {
        Self {
            settings: DEFAULT_SETTINGS,
            batch: DEFAULT_BATCH,
        }
    }
}

impl RenderSection {
    /// The values that affect the image, as carried by every task.
    pub fn settings(&self) -> RenderSettings {
        self.settings
    }

    /// Checks the settings' ranges and the batch size; errors name the `render.` field.
    pub(super) fn validate(&self) -> Result<(), InvalidField> {
        self.settings.validate("render")?;
        check_range("render.batch", self.batch, 0, MAX_BATCH)
    }
}

/// The section's own key beside the settings' fields.
const BATCH: &str = "batch";

/// Reads the table through `SectionTable`, so that [`RenderSettings`]' derived (strict) parser is
/// the one definition of the settings' fields: serde's `flatten` would buffer the values and lose
/// the type hints that let `config` read `LUCID__RENDER__STEPS=64` (a string) as a number.
impl<'de> Deserialize<'de> for RenderSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = RenderSection;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [render] table")
    }

    fn visit_map<A: MapAccess<'de>>(self, table: A) -> Result<RenderSection, A::Error> {
        let mut table = SectionTable::new(table)?;
        let settings =
            RenderSettings::deserialize(de::value::MapAccessDeserializer::new(&mut table))?;
        Ok(RenderSection {
            settings,
            batch: table.batch.unwrap_or(DEFAULT_BATCH),
        })
    }
}

/// The `[render]` table seen as a complete [`RenderSettings`] map: `batch` is taken aside, the
/// table's other keys pass through with their values untouched, and then the settings' fields the
/// table left out follow with their default values.
struct SectionTable<A> {
    table: A,
    table_done: bool,
    batch: Option<u32>,
    /// The settings' field names, for the unknown-key message.
    known: Vec<String>,
    /// The defaults of the fields not given (yet).
    defaults: BTreeMap<String, serde_json::Value>,
    /// The default value of the key just yielded, if it was a default.
    pending: Option<serde_json::Value>,
}

impl<'de, A: MapAccess<'de>> SectionTable<A> {
    fn new(table: A) -> Result<Self, A::Error> {
        let mut defaults: BTreeMap<String, serde_json::Value> =
            match serde_json::to_value(DEFAULT_SETTINGS).map_err(de::Error::custom)? {
                serde_json::Value::Object(fields) => fields.into_iter().collect(),
                other => {
                    return Err(de::Error::custom(format!(
                        "render defaults serialise as {other}, not an object"
                    )));
                }
            };
        // the engine switches and λ are left out of the JSON at their defaults, but a table may
        // name them
        defaults.insert("relu_redirect".into(), DEFAULT_RELU_REDIRECT.into());
        defaults.insert("fused_transforms".into(), DEFAULT_FUSED_TRANSFORMS.into());
        defaults.insert("diversity_weight".into(), DEFAULT_DIVERSITY_WEIGHT.into());
        Ok(Self {
            table,
            table_done: false,
            batch: None,
            known: defaults.keys().cloned().collect(),
            defaults,
            pending: None,
        })
    }

    /// The next key of the table that belongs to the settings, after taking `batch` aside.
    fn next_table_key(&mut self) -> Result<Option<String>, A::Error> {
        while !self.table_done {
            match self.table.next_key::<String>()? {
                None => self.table_done = true,
                Some(key) if key == BATCH => {
                    if self.batch.is_some() {
                        return Err(de::Error::duplicate_field(BATCH));
                    }
                    self.batch = Some(self.table.next_value()?);
                }
                Some(key) if self.known.contains(&key) => {
                    self.defaults.remove(&key);
                    return Ok(Some(key));
                }
                Some(key) => {
                    let expected: Vec<String> = std::iter::once(BATCH)
                        .chain(self.known.iter().map(String::as_str))
                        .map(|k| format!("`{k}`"))
                        .collect();
                    return Err(de::Error::custom(format!(
                        "unknown field `{key}`, expected one of {}",
                        expected.join(", ")
                    )));
                }
            }
        }
        Ok(None)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SectionTable<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = match self.next_table_key()? {
            Some(key) => key,
            None => match self.defaults.pop_first() {
                Some((key, value)) => {
                    self.pending = Some(value);
                    key
                }
                None => return Ok(None),
            },
        };
        seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some(default) => seed.deserialize(default).map_err(de::Error::custom),
            None => self.table.next_value_seed(seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SweepSpec;
    use crate::spec::test_support::{MINIMAL, invalid, minimal};

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = RenderSection::default().settings();
        // pinned: the fingerprint is part of the wire contract between coordinator and workers
        assert_eq!(a.fingerprint(), a.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        let mut b = a;
        b.steps += 1;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a;
        c.precision = Precision::Bf16;
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn engine_switches_are_written_only_when_off_and_change_the_fingerprint() {
        let on = RenderSettings::default();
        let json = serde_json::to_string(&on).unwrap();
        assert!(
            !json.contains("relu_redirect") && !json.contains("fused_transforms"),
            "{json}"
        );
        for (field, off) in [
            (
                "relu_redirect",
                RenderSettings {
                    relu_redirect: false,
                    ..on
                },
            ),
            (
                "fused_transforms",
                RenderSettings {
                    fused_transforms: false,
                    ..on
                },
            ),
        ] {
            let json = serde_json::to_string(&off).unwrap();
            assert!(json.contains(&format!(r#""{field}":false"#)), "{json}");
            assert_eq!(serde_json::from_str::<RenderSettings>(&json).unwrap(), off);
            assert_ne!(off.fingerprint(), on.fingerprint(), "{field}");
        }
    }

    #[test]
    fn default_settings_keep_their_wire_form() {
        // the canonical JSON of the defaults, as every task of a default spec carries it
        assert_eq!(
            serde_json::to_string(&RenderSettings::default()).unwrap(),
            r#"{"steps":512,"size":224,"objective":"channel","run_seed":0,"param":"fft","decorrelate":true,"transforms":"standard","lr":0.05,"precision":"tf32"}"#
        );
        assert_eq!(RenderSettings::default().fingerprint(), "bae4ed0e43616313");
        // on the wire every field is required but the two engine switches, which older documents
        // lack and whose default (on) is left out: no other defaults fill a task's settings
        let err = serde_json::from_str::<RenderSettings>(r#"{"steps":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn section_reads_batch_beside_the_settings_and_defaults_the_rest() {
        let spec = SweepSpec::parse_toml(&format!(
            "{MINIMAL}\n[render]\nsteps = 64\nbatch = 8\nprecision = \"bf16\"\n"
        ))
        .unwrap();
        let expected = RenderSection {
            settings: RenderSettings {
                steps: 64,
                precision: Precision::Bf16,
                ..RenderSettings::default()
            },
            batch: 8,
        };
        assert_eq!(spec.render, expected);
        // the section's JSON is one flat object, and reads back the same
        let json = serde_json::to_value(&spec.render).unwrap();
        assert_eq!(json["steps"], 64);
        assert_eq!(json["batch"], 8);
        assert!(json.get("settings").is_none(), "{json}");
        let back: RenderSection = serde_json::from_value(json).unwrap();
        assert_eq!(back, expected);
        // a table with only batch, or nothing, is all defaults besides
        let only_batch: RenderSection = serde_json::from_str(r#"{"batch":3}"#).unwrap();
        assert_eq!(only_batch.settings, RenderSettings::default());
        let empty: RenderSection = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, RenderSection::default());
    }

    #[test]
    fn section_refuses_unknown_and_repeated_keys() {
        let err = serde_json::from_str::<RenderSection>(r#"{"stepz":3}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown field `stepz`, expected one of `batch`, `decorrelate`"),
            "{msg}"
        );
        assert!(msg.contains("`steps`"), "{msg}");
        for json in [r#"{"batch":1,"batch":2}"#, r#"{"lr":0.1,"lr":0.2}"#] {
            let err = serde_json::from_str::<RenderSection>(json).unwrap_err();
            assert!(
                err.to_string().starts_with("duplicate field"),
                "{json}: {err}"
            );
        }
        assert!(serde_json::from_str::<RenderSection>(r#"{"steps":"64"}"#).is_err());
    }

    #[test]
    fn render_validation_messages_name_the_field() {
        /// A change to a valid section, and the message it must fail with.
        type Case = (fn(&mut RenderSection), &'static str);
        let cases: [Case; 4] = [
            (
                |r| r.settings.size = 8,
                "render.size: must be between 16 and 4096, got 8",
            ),
            (
                |r| r.settings.lr = f64::NAN,
                "render.lr: must be greater than 0 and at most 10, got NaN",
            ),
            (
                |r| r.settings.lr = 10.5,
                "render.lr: must be greater than 0 and at most 10, got 10.5",
            ),
            (
                |r| r.batch = 5000,
                "render.batch: must be between 0 and 4096, got 5000",
            ),
        ];
        for (change, expected) in cases {
            let mut spec = minimal();
            change(&mut spec.render);
            assert_eq!(invalid(&spec), expected);
        }
    }
}
