//! A static HTML gallery of a lucid-sweep run, written next to the run's images.
//!
//! The crate does no network I/O: it reads the run through a [`GallerySource`] and writes the gallery
//! through a [`GallerySink`], so the coordinator (S3) and the worker's local mode (a folder, through
//! [`FolderStore`]) share one implementation.
//!
//! # Layout
//!
//! Keys are relative to the run root (`{prefix}/{run}/`), where the workers store
//! `{model}/{layer}/{channel:04}.png` and its `.json` sidecar. The gallery adds:
//!
//! ```text
//! gallery/index.html                          models × layers: counts, previews, links
//! gallery/{model}/{layer}.html                 contact sheet of a layer (lazy-loaded sprites + tile links)
//! gallery/{model}/{layer}-{n}.png              sprite n: up to sprite_max_thumbs thumbnails in a grid
//! gallery/{model}/{layer}-preview.png          the first few thumbnails, for the index
//! gallery/{model}/{layer}/{channel:04}.html    one channel: the full PNG and its sidecar's metadata,
//!                                             and every other view of it side by side
//! gallery/{model}/{layer}/view-{view}.html     every channel of the layer in another view (the
//!                                             layer page and these switch between the views)
//! gallery/{model}/{layer}/examples.html        the layer's dataset examples instead of its
//!                                             visualizations, when the run has a probe pass
//! gallery/match/index.html                    channels matched across seeds: the curve over depth
//! gallery/match/{layer}.html                  each reference channel with its partner in every seed
//! gallery/match/{name}.svg                    the plots (plotters): depth, {layer}-consistency,
//!                                             {layer}-histogram
//! gallery/compare/{layer}.html                every channel of a layer, one tile per model, aligned
//! gallery/compare/{layer}/{channel:04}.html   one channel across every model, side by side
//! ```
//!
//! Every link is relative (computed from the page's key to the target's key), pages embed their CSS and
//! load nothing from elsewhere, and all text is HTML-escaped, so the gallery works opened from disk and
//! served from a bucket. Pages are written with content type [`HTML_CONTENT_TYPE`], images with
//! [`PNG_CONTENT_TYPE`].
//!
//! A run with a probe pass (issue 15) has its dataset examples beside each channel: the merged
//! `probe/{model}/{layer}.examples.json`, resolved through `probe/{model}/probe.json` and
//! `probe/images.json` to the prepared pictures `probe/images/{file:06}.jpg`, which the pages link
//! to where they are (no copy). Receptive-field crops are those pictures scaled and clipped by CSS.
//!
//! A channel whose sidecar is missing or malformed, or whose PNG is missing or undecodable, still gets its
//! tile and page, marked as such, and is counted in the [`GallerySummary`].
//!
//! # Calling from async code
//!
//! [`build`] blocks: decoding and downscaling thousands of PNGs is CPU work, spread over scoped threads
//! that call [`GallerySource::read`] concurrently (hence `GallerySource: Sync`). From Tokio, run it
//! inside `spawn_blocking` and let the source and sink bridge to the async client with a runtime
//! `Handle`:
//!
//! ```text
//! let handle = tokio::runtime::Handle::current();
//! tokio::task::spawn_blocking(move || {
//!     let source = S3Source { client, bucket, run_root, handle: handle.clone() };
//!     let mut sink = S3Sink { /* same */ };
//!     lucid_gallery::build(&source, &mut sink, &opts)
//! }).await??;
//! // where S3Source::read is `self.handle.block_on(get_object(key))`
//! ```
//!
//! `Handle::block_on` is fine there: neither the blocking thread nor the gallery's own worker threads
//! are runtime threads. A sink may also start uploads without waiting and wait for them all in
//! [`GallerySink::flush`], which [`build`] calls last.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! use lucid_gallery::{FolderStore, GalleryOptions};
//! let mut store = FolderStore::new(dir.path()); // the run folder: {model}/{layer}/{channel:04}.png
//! let source = store.clone();
//! let summary = lucid_gallery::build(&source, &mut store, &GalleryOptions::recommended("run1"))?;
//! assert_eq!(summary.images, 0); // an empty run still gets an index page
//! assert_eq!(summary.pages, 1);
//! # Ok(())
//! # }
//! ```

mod examples;
mod html;
mod inventory;
mod matches;
mod paths;
mod plots;
mod store;
mod thumbs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

use crate::inventory::{Inventory, LayerChannels, Presence};
pub use crate::store::FolderStore;
pub use crate::thumbs::encode_png;

/// Content type of every page the gallery writes.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// Content type of every image the gallery writes.
pub const PNG_CONTENT_TYPE: &str = "image/png";
/// Content type of the matching pages' plots.
pub const SVG_CONTENT_TYPE: &str = "image/svg+xml";

/// Thumbnails in a layer's preview on the index page.
const PREVIEW_THUMBS: usize = 8;
/// Columns of a layer's preview.
const PREVIEW_COLUMNS: usize = 4;
/// The most pixels a sprite may have on a side (browsers and memory stay comfortable below this).
const MAX_SPRITE_SIDE: u64 = 16_384;

/// Where the gallery reads a run: its keys and their bytes.
///
/// `Sync` because [`build`] reads from several threads at once.
pub trait GallerySource: Sync {
    /// Every key under the run root, relative to it (`model/layer/0001.png`, `run.json`, …), in any order.
    /// Keys that are not channel images or sidecars are ignored.
    fn list_keys(&self) -> Result<Vec<String>, GalleryError>;

    /// The bytes of `key`, one of the keys [`list_keys`](Self::list_keys) returned.
    fn read(&self, key: &str) -> Result<Vec<u8>, GalleryError>;
}

/// Where the gallery writes its pages and images, keyed relative to the run root (`gallery/index.html`).
pub trait GallerySink {
    /// Stores `bytes` under `key` with `content_type` ([`HTML_CONTENT_TYPE`] or [`PNG_CONTENT_TYPE`]),
    /// replacing any object already there.
    fn write(&mut self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), GalleryError>;

    /// Called once after the last write: a sink that writes in the background waits for those writes
    /// here and reports the first failure. The default does nothing.
    fn flush(&mut self) -> Result<(), GalleryError> {
        Ok(())
    }
}

/// How to build a gallery. Deliberately no `Default`: [`GalleryOptions::recommended`] names the usual
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryOptions {
    /// The run's id, shown in page titles.
    pub run_id: String,
    /// Side of a thumbnail in pixels (4 to 1024); images are scaled to fit with a box filter.
    pub thumb_size: u32,
    /// Thumbnails per sprite row (at most; a smaller layer gets a narrower sprite).
    pub sprite_columns: u32,
    /// Thumbnails per sprite: a layer with more channels gets several sprites.
    pub sprite_max_thumbs: u32,
    /// Threads reading and decoding images; 0 means one per available core. More than the cores helps
    /// when reads wait on the network.
    pub threads: usize,
}

impl GalleryOptions {
    /// 64-pixel thumbnails in sprites of 32 × 32, one thread per core: a 4096-channel layer loads as
    /// four 2048-pixel sprites.
    pub fn recommended(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            thumb_size: 64,
            sprite_columns: 32,
            sprite_max_thumbs: 1024,
            threads: 0,
        }
    }

    fn validate(&self) -> Result<(), GalleryError> {
        let fail = |m: String| Err(GalleryError::InvalidOptions(m));
        if !(4..=1024).contains(&self.thumb_size) {
            return fail(format!(
                "thumb_size must be 4 to 1024, got {}",
                self.thumb_size
            ));
        }
        if self.sprite_columns == 0 || self.sprite_max_thumbs == 0 {
            return fail("sprite_columns and sprite_max_thumbs must be at least 1".into());
        }
        let thumb = u64::from(self.thumb_size);
        let cols = u64::from(self.sprite_columns.min(self.sprite_max_thumbs));
        let rows = u64::from(self.sprite_max_thumbs).div_ceil(cols);
        if cols * thumb > MAX_SPRITE_SIDE || rows * thumb > MAX_SPRITE_SIDE {
            return fail(format!(
                "sprites of {cols}x{rows} thumbnails of {thumb} px exceed {MAX_SPRITE_SIDE} px a side"
            ));
        }
        Ok(())
    }
}

/// What [`build`] wrote and what it found wrong (serialisable: `lucid-coordinator gallery --json`
/// prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GallerySummary {
    /// HTML pages written.
    pub pages: usize,
    /// Contact-sheet sprites written (not counting previews).
    pub sprites: usize,
    /// Index previews written, one per model and layer.
    pub previews: usize,
    /// Channel images decoded into thumbnails.
    pub images: usize,
    /// Channels found (a PNG or a sidecar or both).
    pub channels: usize,
    /// Channels with a sidecar but no PNG.
    pub missing_images: usize,
    /// Channels whose PNG could not be decoded.
    pub unreadable_images: usize,
    /// Channels with a PNG but no sidecar.
    pub missing_sidecars: usize,
    /// Channels whose sidecar is not a JSON object.
    pub unreadable_sidecars: usize,
    /// Layers shown with their dataset examples.
    #[serde(default)]
    pub examples_layers: usize,
    /// Layers whose examples could not be read (shown with the reason).
    #[serde(default)]
    pub unreadable_examples: usize,
    /// Layers with a page of channels matched across seeds.
    #[serde(default)]
    pub match_layers: usize,
}

/// Why a gallery could not be built. Problems with single channels are not errors: they are marked in the
/// gallery and counted in [`GallerySummary`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GalleryError {
    /// The source could not list the run.
    #[error("failed to list the run's objects: {message}")]
    List {
        /// The source's description of the failure.
        message: String,
    },
    /// The source could not read a key.
    #[error("failed to read {key}: {message}")]
    Read {
        /// The key relative to the run root.
        key: String,
        /// The source's description of the failure.
        message: String,
    },
    /// The sink could not write a key.
    #[error("failed to write {key}: {message}")]
    Write {
        /// The key relative to the run root.
        key: String,
        /// The sink's description of the failure.
        message: String,
    },
    /// A file-system operation of [`FolderStore`] failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename into`, …).
        op: &'static str,
        /// The path it was done to.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key that [`FolderStore`] refuses because it could leave the root.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// [`GalleryOptions`] out of range.
    #[error("invalid gallery options: {0}")]
    InvalidOptions(String),
    /// Two objects would need the same key, or one would need a folder where the other is a file (for
    /// example a model named `compare`); nothing was written.
    #[error("gallery object {key} collides with {other}")]
    Collision {
        /// The gallery key.
        key: String,
        /// The key or folder it collides with.
        other: String,
    },
    /// A sprite or preview could not be encoded.
    #[error("failed to encode {key}: {message}")]
    Encode {
        /// The key of the image.
        key: String,
        /// The encoder's message.
        message: String,
    },
    /// A worker thread panicked (a bug).
    #[error("a gallery worker thread panicked")]
    WorkerPanicked,
}

/// What became of a channel's PNG.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ImageState {
    /// Decoded; its size in pixels.
    Ok { width: u32, height: u32 },
    /// No PNG, only a sidecar.
    Missing,
    /// The PNG did not decode; the decoder's message.
    Unreadable(String),
}

/// What became of a channel's sidecar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SidecarState {
    /// A JSON object; its fields are dropped once the channel's page is written.
    Ok(serde_json::Map<String, Value>),
    /// No sidecar, only a PNG.
    Missing,
    /// Not a JSON object; why.
    Unreadable(String),
}

/// Where a channel's thumbnail sits: sprite `sprite`, cell (`col`, `row`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tile {
    pub sprite: usize,
    pub col: u32,
    pub row: u32,
}

/// One channel of one model's layer.
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub channel: u32,
    pub image: ImageState,
    pub sidecar: SidecarState,
    pub objective_start: Option<f64>,
    pub objective_end: Option<f64>,
    /// The channel's other views, shown beside it on its page.
    pub views: Vec<inventory::ViewObjects>,
    pub tile: Tile,
}

/// One sprite of a contact sheet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sprite {
    /// Index of the first channel (in the layer's sorted channels) it holds.
    pub first: usize,
    /// Channels it holds.
    pub count: usize,
    pub cols: u32,
    pub rows: u32,
}

/// One model's layer, as its pages need it.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub model: String,
    pub layer: String,
    /// The view the contact sheet and each channel's leading figure show ([`LayerChannels::lead`]).
    pub lead: lucid_proto::View,
    pub channels: Vec<Channel>,
    pub sprites: Vec<Sprite>,
    pub thumb: u32,
    /// The layer's dataset examples, when the run has a probe pass for it (dropped once its pages
    /// are written).
    pub examples: Option<examples::LayerExamples>,
    /// Each channel's best example by mean (picture key, file name), kept for the matching pages.
    pub top_pictures: BTreeMap<u32, (String, String)>,
    /// Whether the run has this layer matched across seeds (its pages link there instead of the
    /// index-aligned comparison).
    pub matched: bool,
}

impl Layer {
    /// The key of `channel`'s image in the lead view.
    pub(crate) fn lead_image(&self, channel: u32) -> String {
        paths::view_image(&self.model, &self.layer, channel, self.lead, 0)
    }

    /// The key of `channel`'s sidecar in the lead view.
    pub(crate) fn lead_sidecar(&self, channel: u32) -> String {
        paths::view_sidecar(&self.model, &self.layer, channel, self.lead)
    }

    /// The other views (beside the lead view) that any of the layer's channels has.
    pub(crate) fn other_views(&self) -> Vec<lucid_proto::View> {
        views_of(self.channels.iter().map(|c| &c.views))
    }

    /// Channels per state: (missing images, unreadable images, missing sidecars, unreadable sidecars).
    pub(crate) fn problems(&self) -> [usize; 4] {
        let mut p = [0; 4];
        for c in &self.channels {
            match c.image {
                ImageState::Missing => p[0] += 1,
                ImageState::Unreadable(_) => p[1] += 1,
                ImageState::Ok { .. } => {}
            }
            match c.sidecar {
                SidecarState::Missing => p[2] += 1,
                SidecarState::Unreadable(_) => p[3] += 1,
                SidecarState::Ok(_) => {}
            }
        }
        p
    }
}

/// Splits `count` channels into sprites of at most `opts.sprite_max_thumbs`.
fn sprite_layout(count: usize, opts: &GalleryOptions) -> Vec<Sprite> {
    let max = opts.sprite_max_thumbs as usize;
    let cols = opts.sprite_columns.min(opts.sprite_max_thumbs) as usize;
    let cols = cols.min(count.max(1));
    (0..count.div_ceil(max))
        .map(|n| {
            let first = n * max;
            let count = max.min(count - first);
            Sprite {
                first,
                count,
                cols: cols as u32,
                rows: count.div_ceil(cols) as u32,
            }
        })
        .collect()
}

/// Columns and rows of a preview of `count` channels.
fn preview_layout(count: usize) -> (u32, u32) {
    let shown = count.min(PREVIEW_THUMBS);
    let cols = shown.clamp(1, PREVIEW_COLUMNS);
    (cols as u32, shown.div_ceil(cols).max(1) as u32)
}

/// Builds the gallery of the run that `source` lists and writes it to `sink` under `gallery/`.
///
/// Reads every channel PNG and sidecar once. Fails without writing anything on invalid options or a key
/// collision; fails part-way on a source or sink error (a rerun rewrites every object).
pub fn build(
    source: &dyn GallerySource,
    sink: &mut dyn GallerySink,
    opts: &GalleryOptions,
) -> Result<GallerySummary, GalleryError> {
    opts.validate()?;
    let keys = source.list_keys()?;
    let inventory = Inventory::from_keys(&keys);
    let mut examples = examples::ExamplesReader::new(source, &keys);
    let matched = matches::matched_layers(&keys);
    let match_reads = matches::read_layers(source, &matched)?;
    let match_pages: Vec<(String, usize)> = match_reads
        .iter()
        .map(|(layer, read)| (layer.clone(), matches::page_count(read)))
        .collect();
    check_collisions(
        &planned_keys(&inventory, examples.objects(), &match_pages, opts),
        &keys,
    )?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };

    let mut summary = GallerySummary::default();
    let mut built: Vec<Layer> = Vec::new();
    for (model, layers) in &inventory.models {
        for (layer, entries) in layers {
            let layer_examples = examples.layer(model, layer)?;
            let mut built_layer = build_layer(
                source,
                sink,
                opts,
                threads,
                (model, layer, entries),
                (layer_examples, matched.contains(layer)),
                &mut summary,
            )?;
            built_layer.top_pictures = top_pictures(&built_layer);
            built_layer.examples = None; // its pages are written
            for c in &mut built_layer.channels {
                if let SidecarState::Ok(map) = &mut c.sidecar {
                    map.clear(); // the page is written: keep only the objectives for compare pages
                }
            }
            built.push(built_layer);
        }
    }

    // a run matched across seeds gets its matching pages instead of the index-aligned comparison
    // (channel k of one seed has nothing to do with channel k of another)
    for layer in inventory
        .layer_names
        .iter()
        .filter(|l| !matched.contains(l))
    {
        build_compare_pages(sink, opts, &inventory, &built, layer, &mut summary)?;
    }
    if !matched.is_empty() {
        build_match_pages(sink, opts, match_reads, &built, &mut summary)?;
    }

    let key = paths::index();
    let page = html::index_page(&key, &opts.run_id, &inventory, &built, &matched);
    put_page(sink, &mut summary, &key, page)?;
    sink.flush()?;
    Ok(summary)
}

/// Each channel's best example by mean (rendered or not), as the matching pages show it.
fn top_pictures(layer: &Layer) -> BTreeMap<u32, (String, String)> {
    let Some(examples) = &layer.examples else {
        return BTreeMap::new();
    };
    examples
        .listed()
        .into_iter()
        .filter_map(|channel| {
            let picture = examples.top_picture(channel)?;
            Some((channel, (picture.key?, picture.name)))
        })
        .collect()
}

/// The matching pages: a page and two plots per matched layer, the index with the curve over
/// depth. A layer whose matching cannot be read is named on the index.
fn build_match_pages(
    sink: &mut dyn GallerySink,
    opts: &GalleryOptions,
    reads: Vec<matches::LayerRead>,
    built: &[Layer],
    summary: &mut GallerySummary,
) -> Result<(), GalleryError> {
    let mut lines = Vec::new();
    let mut curve = Vec::new();
    for (layer, read) in reads {
        let pages = matches::page_count(&read);
        let m = match read {
            Ok(m) => m,
            Err(reason) => {
                lines.push((layer, Err(reason)));
                continue;
            }
        };
        let layer = &layer;
        for page in 1..=pages {
            let key = paths::match_page_n(layer, page);
            let html = html::match_layer_page(&key, &opts.run_id, &m, built, (page, pages));
            put_page(sink, summary, &key, html)?;
        }
        let heat = plots::consistency_heatmap(layer, &m.models, &m.consistency.r);
        put_plot(sink, &format!("{layer}-consistency"), heat)?;
        let values = matches::best_match_correlations(&m);
        put_plot(
            sink,
            &format!("{layer}-histogram"),
            plots::correlation_histogram(layer, &values),
        )?;
        lines.push((layer.clone(), Ok(matches::MatchLine::of(&m))));
        let pairs = m.pairs.iter().map(|p| p.mean_assigned).collect();
        curve.push((layer.clone(), m.mean_matched_correlation, pairs));
        summary.match_layers += 1;
    }
    put_plot(sink, "depth", plots::depth_curve(&curve))?;
    let key = paths::match_index();
    put_page(
        sink,
        summary,
        &key,
        html::match_index_page(&key, &opts.run_id, &lines),
    )
}

fn put_plot(
    sink: &mut dyn GallerySink,
    name: &str,
    svg: Result<String, String>,
) -> Result<(), GalleryError> {
    let key = paths::match_plot(name);
    let svg = svg.map_err(|message| GalleryError::Encode {
        key: key.clone(),
        message,
    })?;
    sink.write(&key, svg.into_bytes(), SVG_CONTENT_TYPE)
}

/// The cross-model pages of `layer`: its contact sheet across models and a page per channel number
/// that any model has.
fn build_compare_pages(
    sink: &mut dyn GallerySink,
    opts: &GalleryOptions,
    inventory: &Inventory,
    built: &[Layer],
    layer: &str,
    summary: &mut GallerySummary,
) -> Result<(), GalleryError> {
    // every model, so that a model without this layer shows up as such
    let per_model: Vec<(&str, Option<&Layer>)> = inventory
        .models
        .iter()
        .map(|(model, _)| {
            let found = built.iter().find(|l| &l.model == model && l.layer == layer);
            (model.as_str(), found)
        })
        .collect();
    let numbers: BTreeSet<u32> = per_model
        .iter()
        .filter_map(|(_, l)| *l)
        .flat_map(|l| l.channels.iter().map(|c| c.channel))
        .collect();
    let numbers: Vec<u32> = numbers.into_iter().collect();
    let key = paths::compare_layer(layer);
    let page = html::compare_layer_page(
        &key,
        &opts.run_id,
        layer,
        opts.thumb_size,
        &per_model,
        &numbers,
    );
    put_page(sink, summary, &key, page)?;
    for (i, &channel) in numbers.iter().enumerate() {
        let key = paths::compare_channel(layer, channel);
        let prev = i.checked_sub(1).map(|p| numbers[p]);
        let next = numbers.get(i + 1).copied();
        let page = html::compare_channel_page(
            &key,
            &opts.run_id,
            layer,
            channel,
            &per_model,
            (prev, next),
        );
        put_page(sink, summary, &key, page)?;
    }
    Ok(())
}

impl GallerySummary {
    /// Counts `channel` and what was found wrong with its image and sidecar.
    fn count(&mut self, channel: &Channel) {
        self.channels += 1;
        match channel.image {
            ImageState::Ok { .. } => self.images += 1,
            ImageState::Missing => self.missing_images += 1,
            ImageState::Unreadable(_) => self.unreadable_images += 1,
        }
        match channel.sidecar {
            SidecarState::Ok(_) => {}
            SidecarState::Missing => self.missing_sidecars += 1,
            SidecarState::Unreadable(_) => self.unreadable_sidecars += 1,
        }
    }
}

fn put_page(
    sink: &mut dyn GallerySink,
    summary: &mut GallerySummary,
    key: &str,
    page: String,
) -> Result<(), GalleryError> {
    sink.write(key, page.into_bytes(), HTML_CONTENT_TYPE)?;
    summary.pages += 1;
    Ok(())
}

/// The distinct views among `views`, in view order.
fn views_of<'a>(
    views: impl Iterator<Item = &'a Vec<inventory::ViewObjects>>,
) -> Vec<lucid_proto::View> {
    views
        .flatten()
        .map(|v| v.view)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Every key [`build`] will write for `inventory` (and the layers `probe` has examples of), in
/// writing order.
fn planned_keys(
    inventory: &Inventory,
    probe: &examples::ProbeObjects,
    match_pages: &[(String, usize)],
    opts: &GalleryOptions,
) -> Vec<String> {
    let mut keys = Vec::new();
    for (model, layers) in &inventory.models {
        for (layer, entries) in layers {
            let entries = &entries.channels;
            for n in 0..sprite_layout(entries.len(), opts).len() {
                keys.push(paths::sprite(model, layer, n));
            }
            keys.push(paths::preview(model, layer));
            keys.push(paths::layer_page(model, layer));
            for view in views_of(entries.iter().map(|(_, p)| &p.views)) {
                keys.push(paths::view_page(model, layer, view));
            }
            if probe.has_examples(model, layer) {
                keys.push(paths::examples_page(model, layer));
            }
            for (channel, _) in entries {
                keys.push(paths::channel_page(model, layer, *channel));
            }
        }
    }
    for layer in inventory
        .layer_names
        .iter()
        .filter(|l| !match_pages.iter().any(|(m, _)| m == *l))
    {
        keys.push(paths::compare_layer(layer));
        let numbers: BTreeSet<u32> = inventory
            .models
            .iter()
            .flat_map(|(_, layers)| layers.iter().filter(|(l, _)| l == layer))
            .flat_map(|(_, entries)| entries.channels.iter().map(|(c, _)| *c))
            .collect();
        for channel in numbers {
            keys.push(paths::compare_channel(layer, channel));
        }
    }
    for (layer, pages) in match_pages {
        keys.extend((1..=*pages).map(|page| paths::match_page_n(layer, page)));
        keys.push(paths::match_plot(&format!("{layer}-consistency")));
        keys.push(paths::match_plot(&format!("{layer}-histogram")));
    }
    if !match_pages.is_empty() {
        keys.push(paths::match_plot("depth"));
        keys.push(paths::match_index());
    }
    keys.push(paths::index());
    keys
}

/// Fails if two planned keys are equal, or if any key (planned or source) would need a folder where
/// another key is a file.
fn check_collisions(planned: &[String], source: &[String]) -> Result<(), GalleryError> {
    let collision = |key: &str, other: &str| {
        Err(GalleryError::Collision {
            key: key.to_owned(),
            other: other.to_owned(),
        })
    };
    let mut all: BTreeSet<&str> = source.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    for key in planned {
        // replacing a source key is fine: planned names are never channel objects (`0001.html`,
        // `conv1-0.png`), so such a key is an earlier build's output
        if !seen.insert(key.as_str()) {
            return collision(key, key);
        }
        all.insert(key);
    }
    for key in &all {
        for (i, _) in key.match_indices('/') {
            if all.contains(&key[..i]) {
                return collision(key, &key[..i]);
            }
        }
    }
    Ok(())
}

/// The RGB pixels of a layer's sprites and its index preview, with their keys and sizes.
fn compose_sheets(
    model: &str,
    layer: &str,
    thumb: u32,
    sprites: &[Sprite],
    channels: &[Channel],
    thumbs: &[Option<Vec<u8>>],
) -> Vec<(String, u32, u32, Vec<u8>)> {
    let mut sheets: Vec<(String, u32, u32, Vec<u8>)> = Vec::new();
    for (n, sprite) in sprites.iter().enumerate() {
        let (w, h) = (sprite.cols * thumb, sprite.rows * thumb);
        let mut rgb = thumbs::solid(w, h, thumbs::BACKGROUND);
        for i in sprite.first..sprite.first + sprite.count {
            let t = channels[i].tile;
            paste_cell(&mut rgb, w, thumb, t.col, t.row, &channels[i], &thumbs[i]);
        }
        sheets.push((paths::sprite(model, layer, n), w, h, rgb));
    }
    let (pcols, prows) = preview_layout(channels.len());
    let (pw, ph) = (pcols * thumb, prows * thumb);
    let mut rgb = thumbs::solid(pw, ph, thumbs::BACKGROUND);
    for (i, channel) in channels.iter().take(PREVIEW_THUMBS).enumerate() {
        let (col, row) = (i as u32 % pcols, i as u32 / pcols);
        paste_cell(&mut rgb, pw, thumb, col, row, channel, &thumbs[i]);
    }
    sheets.push((paths::preview(model, layer), pw, ph, rgb));
    sheets
}

/// Reads, thumbnails and writes one model's layer: sprites, preview, contact sheet, view and
/// examples pages and channel pages.
fn build_layer(
    source: &dyn GallerySource,
    sink: &mut dyn GallerySink,
    opts: &GalleryOptions,
    threads: usize,
    (model, layer, entries): (&str, &str, &LayerChannels),
    (examples, matched): (Option<examples::LayerExamples>, bool),
    summary: &mut GallerySummary,
) -> Result<Layer, GalleryError> {
    let thumb = opts.thumb_size;
    let lead = entries.lead;
    let entries = entries.channels.as_slice();
    let loaded = parallel_map(entries, threads, |(channel, presence)| {
        let unit = (model, layer, *channel, lead);
        load_channel(source, unit, presence, thumb)
    })?;
    let sprites = sprite_layout(entries.len(), opts);
    let max = opts.sprite_max_thumbs as usize;
    let mut channels = Vec::with_capacity(loaded.len());
    let mut thumbs = Vec::with_capacity(loaded.len());
    for (i, (mut channel, pixels)) in loaded.into_iter().enumerate() {
        let sprite = &sprites[i / max];
        let j = (i % max) as u32;
        channel.tile = Tile {
            sprite: i / max,
            col: j % sprite.cols,
            row: j / sprite.cols,
        };
        summary.count(&channel);
        channels.push(channel);
        thumbs.push(pixels);
    }

    // Compose the sprites and the preview, then encode them in parallel.
    let sheets = compose_sheets(model, layer, thumb, &sprites, &channels, &thumbs);
    drop(thumbs);
    let encoded = parallel_map(&sheets, threads, |(key, w, h, rgb)| {
        thumbs::encode_png(*w, *h, rgb).map_err(|message| GalleryError::Encode {
            key: key.clone(),
            message,
        })
    })?;
    let sprite_count = sprites.len();
    for (n, ((key, ..), png)) in sheets.iter().zip(encoded).enumerate() {
        sink.write(key, png, PNG_CONTENT_TYPE)?;
        if n < sprite_count {
            summary.sprites += 1;
        } else {
            summary.previews += 1;
        }
    }
    drop(sheets);

    let built = Layer {
        model: model.to_owned(),
        layer: layer.to_owned(),
        lead,
        channels,
        sprites,
        thumb,
        examples,
        top_pictures: BTreeMap::new(),
        matched,
    };
    let key = paths::layer_page(model, layer);
    put_page(
        sink,
        summary,
        &key,
        html::layer_page(&key, &opts.run_id, &built),
    )?;
    for view in built.other_views() {
        let key = paths::view_page(model, layer, view);
        let page = html::view_page(&key, &opts.run_id, &built, view);
        put_page(sink, summary, &key, page)?;
    }
    if let Some(shown) = &built.examples {
        match shown {
            examples::LayerExamples::Ok { .. } => summary.examples_layers += 1,
            examples::LayerExamples::Unreadable(_) => summary.unreadable_examples += 1,
        }
        let key = paths::examples_page(model, layer);
        let page = html::examples_page(&key, &opts.run_id, &built);
        put_page(sink, summary, &key, page)?;
    }
    for i in 0..built.channels.len() {
        let key = paths::channel_page(model, layer, built.channels[i].channel);
        let page = html::channel_page(&key, &opts.run_id, &built, i);
        put_page(sink, summary, &key, page)?;
    }
    Ok(built)
}

/// Paints a channel's cell: its thumbnail, or the colour of its problem.
fn paste_cell(
    rgb: &mut [u8],
    width: u32,
    thumb: u32,
    col: u32,
    row: u32,
    channel: &Channel,
    pixels: &Option<Vec<u8>>,
) {
    let fill;
    let cell = match (pixels, &channel.image) {
        (Some(p), _) => p,
        (None, ImageState::Missing) => {
            fill = thumbs::solid(thumb, thumb, thumbs::MISSING);
            &fill
        }
        (None, _) => {
            fill = thumbs::solid(thumb, thumb, thumbs::UNREADABLE);
            &fill
        }
    };
    thumbs::paste(rgb, width, cell, thumb, thumb, col * thumb, row * thumb);
}

/// Reads and decodes one channel (model, layer, channel, lead view): its state in the lead view and,
/// if the PNG decoded, its thumbnail.
fn load_channel(
    source: &dyn GallerySource,
    (model, layer, channel, lead): (&str, &str, u32, lucid_proto::View),
    presence: &Presence,
    thumb: u32,
) -> Result<(Channel, Option<Vec<u8>>), GalleryError> {
    let (image, pixels) = if presence.png {
        let bytes = source.read(&paths::view_image(model, layer, channel, lead, 0))?;
        match thumbs::decode_png(&bytes) {
            Ok(img) => (
                ImageState::Ok {
                    width: img.width,
                    height: img.height,
                },
                Some(thumbs::thumbnail(&img, thumb)),
            ),
            Err(e) => (ImageState::Unreadable(e), None),
        }
    } else {
        (ImageState::Missing, None)
    };
    let sidecar = if presence.sidecar {
        let bytes = source.read(&paths::view_sidecar(model, layer, channel, lead))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => SidecarState::Ok(map),
            Ok(_) => SidecarState::Unreadable("not a JSON object".into()),
            Err(e) => SidecarState::Unreadable(e.to_string()),
        }
    } else {
        SidecarState::Missing
    };
    let number = |field: &str| match &sidecar {
        SidecarState::Ok(map) => map.get(field).and_then(Value::as_f64),
        _ => None,
    };
    let (objective_start, objective_end) = (number("objective_start"), number("objective_end"));
    Ok((
        Channel {
            channel,
            image,
            sidecar,
            objective_start,
            objective_end,
            views: presence.views.clone(),
            tile: Tile {
                sprite: 0,
                col: 0,
                row: 0,
            },
        },
        pixels,
    ))
}

/// `f` over `items` on up to `threads` scoped threads, results in input order; stops at the first error.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, GalleryError> + Sync,
) -> Result<Vec<R>, GalleryError> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<GalleryError>> = Mutex::new(None);
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match f(item) {
                            Ok(r) => done.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                let mut slot =
                                    first_error.lock().unwrap_or_else(|p| p.into_inner());
                                slot.get_or_insert(e);
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| GalleryError::WorkerPanicked))
            .collect::<Result<_, _>>()
    })?;
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|r| r.ok_or(GalleryError::WorkerPanicked))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory run: a source of fixed objects and a sink that records writes.
    #[derive(Default)]
    struct Memory {
        objects: BTreeMap<String, Vec<u8>>,
        written: Vec<(String, String)>,
        /// What was written, by key.
        output: BTreeMap<String, Vec<u8>>,
    }

    impl GallerySource for Memory {
        fn list_keys(&self) -> Result<Vec<String>, GalleryError> {
            Ok(self.objects.keys().cloned().collect())
        }
        fn read(&self, key: &str) -> Result<Vec<u8>, GalleryError> {
            self.objects
                .get(key)
                .cloned()
                .ok_or_else(|| GalleryError::Read {
                    key: key.into(),
                    message: "no such key".into(),
                })
        }
    }

    impl GallerySink for Memory {
        fn write(&mut self, key: &str, bytes: Vec<u8>, ct: &str) -> Result<(), GalleryError> {
            self.written.push((key.into(), ct.into()));
            self.output.insert(key.into(), bytes);
            Ok(())
        }
    }

    fn opts() -> GalleryOptions {
        GalleryOptions {
            run_id: "r".into(),
            thumb_size: 8,
            sprite_columns: 4,
            sprite_max_thumbs: 6,
            threads: 3,
        }
    }

    #[test]
    fn writes_exactly_the_planned_keys() {
        let mut run = Memory::default();
        let png = thumbs::encode_png(2, 2, &[200; 12]).unwrap();
        for model in ["s1", "s2"] {
            for ch in 0..9 {
                run.objects
                    .insert(paths::image(model, "c1", ch), png.clone());
                run.objects.insert(
                    paths::sidecar(model, "c1", ch),
                    br#"{"objective_start": 1, "objective_end": 2.5}"#.to_vec(),
                );
            }
        }
        run.objects
            .insert(paths::image("s2", "fc", 3), b"junk".to_vec());
        run.objects.insert("run.json".into(), b"{}".to_vec());
        let source = Memory {
            objects: run.objects.clone(),
            ..Memory::default()
        };
        let summary = build(&source, &mut run, &opts()).unwrap();
        let inventory = Inventory::from_keys(&source.list_keys().unwrap());
        let planned = planned_keys(&inventory, &examples::ProbeObjects::default(), &[], &opts());
        let written: Vec<String> = run.written.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(written, planned);
        for (key, ct) in &run.written {
            let expected = if key.ends_with(".png") {
                PNG_CONTENT_TYPE
            } else {
                HTML_CONTENT_TYPE
            };
            assert_eq!(ct, expected, "{key}");
        }
        // 9 channels in sprites of 6 → 2 sprites per model for c1, 1 for s2/fc
        assert_eq!(summary.sprites, 5);
        assert_eq!(summary.previews, 3);
        assert_eq!(summary.channels, 19);
        assert_eq!(summary.images, 18);
        assert_eq!(summary.unreadable_images, 1);
        assert_eq!(summary.missing_sidecars, 1);
        assert_eq!(
            summary.pages,
            written.iter().filter(|k| k.ends_with(".html")).count()
        );
    }

    #[test]
    fn a_run_without_the_channel_view_leads_with_its_first_view() {
        use lucid_proto::View;
        let png = thumbs::encode_png(2, 2, &[200; 12]).unwrap();
        let mut objects = BTreeMap::new();
        for ch in 0..3 {
            objects.insert(
                paths::view_image("s1", "c1", ch, View::Neuron, 0),
                png.clone(),
            );
            objects.insert(
                paths::view_sidecar("s1", "c1", ch, View::Neuron),
                br#"{"objective_start": 1, "objective_end": 2.5}"#.to_vec(),
            );
            let diversity = View::Diversity { copies: 2 };
            for copy in 0..2 {
                let key = paths::view_image("s1", "c1", ch, diversity, copy);
                objects.insert(key, png.clone());
            }
        }
        let source = Memory {
            objects,
            ..Memory::default()
        };
        let mut out = Memory::default();
        let summary = build(&source, &mut out, &opts()).unwrap();
        assert_eq!((summary.channels, summary.images), (3, 3), "{summary:?}");
        assert_eq!(summary.missing_images + summary.missing_sidecars, 0);
        let page = |key: String| String::from_utf8(out.output[&key].clone()).unwrap();
        let channel = page(paths::channel_page("s1", "c1", 1));
        for shown in [
            "0001.neuron.png",
            "0001.neuron.json",
            "0001.diversity-2.1.png",
        ] {
            assert!(channel.contains(shown), "the channel page shows {shown}");
        }
        assert!(!channel.contains("0001.png"), "no channel view is named");
        let layer = page(paths::layer_page("s1", "c1"));
        assert!(layer.contains("view: <b>neuron</b>"), "{layer}");
        assert!(layer.contains("view-diversity-2.html"), "{layer}");
        assert!(
            !out.output
                .contains_key(&paths::view_page("s1", "c1", View::Neuron))
        );
    }

    /// Two seeds with three rendered channels of layers c1 and c2, and c1 matched over `width`
    /// channels.
    fn matched_run(width: usize) -> Memory {
        let mut run = Memory::default();
        let png = thumbs::encode_png(2, 2, &[200; 12]).unwrap();
        for model in ["s1", "s2"] {
            for layer in ["c1", "c2"] {
                for ch in 0..3 {
                    run.objects
                        .insert(paths::image(model, layer, ch), png.clone());
                    run.objects
                        .insert(paths::sidecar(model, layer, ch), b"{}".to_vec());
                }
            }
        }
        let means =
            ndarray::Array2::from_shape_fn((6, width), |(i, c)| ((i * 3 + c * 5) % 7) as f32);
        let seeds = [
            lucid_match::SeedMeans {
                model: "s1",
                means: means.view(),
            },
            lucid_match::SeedMeans {
                model: "s2",
                means: means.view(),
            },
        ];
        let m = lucid_match::match_layer("c1", &seeds, lucid_match::MatchOptions::recommended())
            .unwrap();
        run.objects.insert(
            paths::match_layer_json("c1"),
            serde_json::to_vec(&m).unwrap(),
        );
        run
    }

    #[test]
    fn a_matched_layer_gets_its_matching_pages_instead_of_the_comparison() {
        let mut run = matched_run(3);
        let source = Memory {
            objects: run.objects.clone(),
            ..Memory::default()
        };
        let summary = build(&source, &mut run, &opts()).unwrap();
        assert_eq!(summary.match_layers, 1);
        let keys = source.list_keys().unwrap();
        let planned = planned_keys(
            &Inventory::from_keys(&keys),
            &examples::ProbeObjects::default(),
            &[("c1".to_owned(), 1)],
            &opts(),
        );
        let written: Vec<String> = run.written.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(written, planned);
        for key in [
            "gallery/match/index.html",
            "gallery/match/c1.html",
            "gallery/match/c1-consistency.svg",
            "gallery/match/depth.svg",
            "gallery/compare/c2.html",
        ] {
            assert!(written.iter().any(|k| k == key), "{key}");
        }
        assert!(!written.iter().any(|k| k.starts_with("gallery/compare/c1")));
        let svg = run
            .written
            .iter()
            .find(|(k, _)| k.ends_with(".svg"))
            .map(|(_, ct)| ct.clone());
        assert_eq!(svg.as_deref(), Some(SVG_CONTENT_TYPE));
    }

    #[test]
    fn a_wide_matched_layer_is_paged_and_every_page_is_planned() {
        let width = 2 * matches::ROWS_PER_PAGE + 88;
        let mut run = matched_run(width);
        let source = Memory {
            objects: run.objects.clone(),
            ..Memory::default()
        };
        build(&source, &mut run, &opts()).unwrap();
        let keys = source.list_keys().unwrap();
        let planned = planned_keys(
            &Inventory::from_keys(&keys),
            &examples::ProbeObjects::default(),
            &[("c1".to_owned(), 3)],
            &opts(),
        );
        let written: Vec<String> = run.written.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(written, planned);
        let page = |n: usize| String::from_utf8(run.output[&paths::match_page_n("c1", n)].clone());
        let pages: Vec<String> = (1..=3).map(|n| page(n).unwrap()).collect();
        assert_eq!(paths::match_page_n("c1", 2), "gallery/match/c1/page-2.html");
        let rows = |html: &str| html.matches("<tr><td>").count();
        assert_eq!(
            pages.iter().map(|p| rows(p)).collect::<Vec<_>>(),
            [matches::ROWS_PER_PAGE, matches::ROWS_PER_PAGE, 88],
            "rows per page"
        );
        assert!(
            pages[0].contains("page <b>1</b> of 3"),
            "{}",
            &pages[0][..400]
        );
        assert!(
            pages[0].contains("c1/page-3.html"),
            "the first page links the last"
        );
        assert!(
            pages[2].contains("../c1.html"),
            "the last page links the first"
        );
    }

    #[test]
    fn collisions_are_refused_before_writing() {
        let mut run = Memory::default();
        let png = thumbs::encode_png(2, 2, &[200; 12]).unwrap();
        // model "compare" would put its pages where the compare pages go: gallery/compare/c1.html twice
        run.objects.insert(paths::image("compare", "c1", 0), png);
        let source = Memory {
            objects: run.objects.clone(),
            ..Memory::default()
        };
        let err = build(&source, &mut run, &opts()).unwrap_err();
        assert!(matches!(err, GalleryError::Collision { .. }), "{err}");
        assert!(run.written.is_empty());
        assert!(check_collisions(&["a/b".into()], &["a".into()]).is_err());
        assert!(check_collisions(&["a".into(), "a".into()], &[]).is_err());
        assert!(check_collisions(&["a/b".into(), "a/c".into()], &["x".into()]).is_ok());
    }

    #[test]
    fn options_are_validated() {
        let mut o = opts();
        o.thumb_size = 2;
        assert!(build(&Memory::default(), &mut Memory::default(), &o).is_err());
        let mut o = opts();
        o.sprite_columns = 0;
        assert!(o.validate().is_err());
        let mut o = GalleryOptions::recommended("r");
        o.sprite_max_thumbs = 1 << 20;
        assert!(o.validate().is_err());
        assert!(GalleryOptions::recommended("r").validate().is_ok());
    }

    #[test]
    fn sprite_layouts() {
        let o = GalleryOptions::recommended("r");
        let s = sprite_layout(4096, &o);
        assert_eq!(s.len(), 4);
        assert!(
            s.iter()
                .all(|s| (s.cols, s.rows, s.count) == (32, 32, 1024))
        );
        let s = sprite_layout(8, &o);
        assert_eq!((s.len(), s[0].cols, s[0].rows), (1, 8, 1));
        let s = sprite_layout(40, &opts());
        assert_eq!(s.len(), 7);
        assert_eq!(
            (s[6].first, s[6].count, s[6].cols, s[6].rows),
            (36, 4, 4, 1)
        );
        assert_eq!(preview_layout(3), (3, 1));
        assert_eq!(preview_layout(40), (4, 2));
    }

    #[test]
    fn parallel_map_keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = parallel_map(&items, 4, |&x| Ok(x * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let err = parallel_map(&items, 4, |&x| {
            if x == 50 {
                Err(GalleryError::InvalidOptions("boom".into()))
            } else {
                Ok(x)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert!(
            parallel_map(&[] as &[u32], 4, |&x| Ok(x))
                .unwrap()
                .is_empty()
        );
    }
}
