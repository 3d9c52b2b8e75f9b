//! `gallery`: the static HTML gallery of a stored run, built by [`lucid_gallery`] and written next to
//! the run's images under `{prefix}/{run}/gallery/`.
//!
//! [`lucid_gallery::build`] blocks and reads from several threads at once, so it runs inside
//! `spawn_blocking`, with [`StoreSource`] and [`StoreSink`] bridging to the async [`Store`] through a
//! runtime [`Handle`]:
//!
//! - [`StoreSource`] holds the run's keys from one listing of `{prefix}/{run}/` (made before the build,
//!   relative to the run root) and reads each object with `Handle::block_on(store.get(..))`.
//! - [`StoreSink`] starts each upload on the runtime without waiting for it, keeping at most
//!   [`UPLOADS_IN_FLIGHT`] running, and waits for the rest in [`GallerySink::flush`]. Pages go up as
//!   `text/html; charset=utf-8` and images as `image/png`, as the gallery asks.
//!
//! Neither the blocking thread nor the gallery's worker threads are runtime threads, so `block_on` is
//! allowed there.

use std::fmt;

use lucid_gallery::{GalleryError, GalleryOptions, GallerySink, GallerySource, GallerySummary};
use lucid_proto::SweepSpec;
use lucid_proto::spec::StorageKind;
use lucid_storage::{StorageError, Store};
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::error::{Error, Result, chain};
use crate::submit::key_prefix;

/// Uploads [`StoreSink`] keeps running at once.
pub const UPLOADS_IN_FLIGHT: usize = 16;

/// The gallery's index page, relative to the run root.
pub const INDEX_KEY: &str = "gallery/index.html";

/// A run's objects as a [`GallerySource`]: the keys of one listing, read through a runtime handle.
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Store,
    run_root: String,
    keys: Vec<String>,
    handle: Handle,
}

impl StoreSource {
    /// Lists `run_root` (`{prefix}/{run}/`, with the trailing `/`) once; the source then serves those
    /// keys, relative to `run_root`, and reads them through `handle`.
    pub async fn list(store: Store, run_root: String, handle: Handle) -> Result<Self> {
        let listed = store
            .list(&run_root)
            .await
            .map_err(|e| Error::storage(format!("list {run_root}"), e))?;
        let keys = listed
            .iter()
            .filter_map(|key| key.strip_prefix(&run_root))
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            store,
            run_root,
            keys,
            handle,
        })
    }

    /// The listed keys, relative to the run root.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

impl GallerySource for StoreSource {
    fn list_keys(&self) -> Result<Vec<String>, GalleryError> {
        Ok(self.keys.clone())
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, GalleryError> {
        let full = format!("{}{key}", self.run_root);
        match self.handle.block_on(self.store.get(&full)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(GalleryError::Read {
                key: key.to_owned(),
                message: format!("{full} disappeared after the listing"),
            }),
            Err(error) => Err(GalleryError::Read {
                key: key.to_owned(),
                message: chain(&error),
            }),
        }
    }
}

/// A [`GallerySink`] that uploads to a [`Store`] under the run root, [`UPLOADS_IN_FLIGHT`] at a time in
/// the background; [`GallerySink::flush`] waits for the rest and reports the first failure.
#[derive(Debug)]
pub struct StoreSink {
    store: Store,
    run_root: String,
    handle: Handle,
    uploads: JoinSet<Result<(), (String, StorageError)>>,
    written: usize,
}

impl StoreSink {
    /// A sink writing `{run_root}{key}` (`run_root` ends with `/`) through `handle`'s runtime.
    pub fn new(store: Store, run_root: String, handle: Handle) -> Self {
        Self {
            store,
            run_root,
            handle,
            uploads: JoinSet::new(),
            written: 0,
        }
    }

    /// Objects uploaded so far (all of them after a successful flush).
    pub fn written(&self) -> usize {
        self.written
    }

    /// Waits for the next upload to finish; `false` when none is running.
    fn wait_one(&mut self) -> Result<bool, GalleryError> {
        let Some(joined) = self.handle.block_on(self.uploads.join_next()) else {
            return Ok(false);
        };
        match joined {
            Ok(Ok(())) => {
                self.written += 1;
                Ok(true)
            }
            Ok(Err((key, error))) => Err(GalleryError::Write {
                key,
                message: chain(&error),
            }),
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(GalleryError::Write {
                key: "(upload)".into(),
                message: join.to_string(),
            }),
        }
    }
}

impl GallerySink for StoreSink {
    fn write(&mut self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), GalleryError> {
        while self.uploads.len() >= UPLOADS_IN_FLIGHT {
            self.wait_one()?;
        }
        let store = self.store.clone();
        let full = format!("{}{key}", self.run_root);
        let key = key.to_owned();
        let content_type = content_type.to_owned();
        self.uploads.spawn_on(
            async move {
                store
                    .put(&full, bytes, &content_type)
                    .await
                    .map_err(|e| (key, e))
            },
            &self.handle,
        );
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GalleryError> {
        while self.wait_one()? {}
        Ok(())
    }
}

/// `gallery`'s settings besides the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryArgs {
    /// Side of a thumbnail in pixels (4 to 1024).
    pub thumb_size: u32,
    /// Threads reading and decoding images; 0 means one per core.
    pub threads: usize,
}

impl Default for GalleryArgs {
    /// The gallery's recommended thumbnails, and 16 threads: reads wait on the network.
    fn default() -> Self {
        Self {
            thumb_size: GalleryOptions::recommended("").thumb_size,
            threads: 16,
        }
    }
}

/// What `gallery` built and where to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryReport {
    /// The run.
    pub run_id: String,
    /// The index page's full key (`{prefix}/{run}/gallery/index.html`).
    pub index_key: String,
    /// Where a browser may find the index (`{endpoint}/{bucket}/{key}`, or a `file://` path).
    pub url: String,
    /// Counts of what was written and what was wrong.
    pub summary: GallerySummary,
}

impl fmt::Display for GalleryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "gallery of run {}: {} channels, {} pages, {} sprites, {} previews",
            self.run_id, s.channels, s.pages, s.sprites, s.previews
        )?;
        let problems = [
            (s.missing_images, "missing images"),
            (s.unreadable_images, "unreadable images"),
            (s.missing_sidecars, "missing sidecars"),
            (s.unreadable_sidecars, "unreadable sidecars"),
        ];
        let problems: Vec<String> = problems
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !problems.is_empty() {
            writeln!(f, "marked in the gallery: {}", problems.join(", "))?;
        }
        writeln!(f, "index: {}", self.index_key)?;
        write!(f, "url: {}", self.url)
    }
}

/// Builds the gallery of `spec`'s run in `store` and uploads it under `{prefix}/{run}/gallery/`.
///
/// Must be called from a multi-threaded Tokio runtime's context; the build itself runs in
/// `spawn_blocking`.
pub async fn build(spec: &SweepSpec, store: &Store, args: &GalleryArgs) -> Result<GalleryReport> {
    let run_id = spec.run_id.to_string();
    let run_root = key_prefix(spec)?.run_prefix(&spec.run_id);
    let handle = Handle::current();
    let source = StoreSource::list(store.clone(), run_root.clone(), handle.clone()).await?;
    tracing::info!(run = %run_id, objects = source.keys().len(), "building gallery");
    let mut sink = StoreSink::new(store.clone(), run_root.clone(), handle);
    let opts = GalleryOptions {
        thumb_size: args.thumb_size,
        threads: args.threads,
        ..GalleryOptions::recommended(run_id.clone())
    };
    let built = tokio::task::spawn_blocking(move || {
        let result = lucid_gallery::build(&source, &mut sink, &opts);
        if result.is_err() {
            // let uploads already started finish (or fail) before the error is reported
            let _ = sink.flush();
        }
        result
    })
    .await;
    let summary = match built {
        Ok(result) => result.map_err(|source| Error::Gallery {
            run: run_id.clone(),
            source,
        })?,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => {
            return Err(Error::Gallery {
                run: run_id,
                source: GalleryError::Write {
                    key: INDEX_KEY.into(),
                    message: join.to_string(),
                },
            });
        }
    };
    let index_key = format!("{run_root}{INDEX_KEY}");
    Ok(GalleryReport {
        url: url_hint(spec, &index_key),
        run_id,
        index_key,
        summary,
    })
}

/// Where a browser may find `key`: `{endpoint}/{bucket}/{key}` for S3 (AWS's path-style URL when no
/// endpoint is set), `file://{local_dir}/{key}` for local storage. Any user info in the endpoint is
/// dropped.
pub fn url_hint(spec: &SweepSpec, key: &str) -> String {
    let storage = &spec.storage;
    match storage.kind {
        StorageKind::Local => {
            let dir = storage
                .local_dir
                .as_deref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            format!("file://{}/{key}", dir.trim_end_matches('/'))
        }
        StorageKind::S3 => {
            let endpoint = match storage.endpoint.as_deref() {
                Some(endpoint) => strip_userinfo(endpoint.trim_end_matches('/')),
                None => format!("https://s3.{}.amazonaws.com", storage.region),
            };
            let bucket = storage.bucket.as_deref().unwrap_or_default();
            format!("{endpoint}/{bucket}/{key}")
        }
    }
}

/// `scheme://host…` without a `user[:password]@` before the host.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(storage: &str) -> SweepSpec {
        SweepSpec::parse_toml(&format!(
            "run_id = \"r1\"\nmodels = {{ s1 = \"/m\" }}\n[storage]\n{storage}\n"
        ))
        .expect("spec")
    }

    #[test]
    fn url_hint_names_endpoint_bucket_and_key() {
        let s3 = spec("endpoint = \"http://u:p@127.0.0.1:8333/\"\nbucket = \"b\"\nprefix = \"p\"");
        assert_eq!(
            url_hint(&s3, "p/r1/gallery/index.html"),
            "http://127.0.0.1:8333/b/p/r1/gallery/index.html"
        );
        let aws = spec("bucket = \"b\"\nregion = \"eu-west-1\"");
        assert_eq!(
            url_hint(&aws, "r1/gallery/index.html"),
            "https://s3.eu-west-1.amazonaws.com/b/r1/gallery/index.html"
        );
        let local = spec("kind = \"local\"\nlocal_dir = \"/data/out/\"");
        assert_eq!(
            url_hint(&local, "r1/gallery/index.html"),
            "file:///data/out/r1/gallery/index.html"
        );
    }

    fn png(size: u32) -> Vec<u8> {
        lucid_gallery::encode_png(size, size, &vec![200u8; (size * size * 3) as usize])
            .expect("png")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_a_local_run_through_the_store_bridge() {
        let dir = tempfile::tempdir().expect("temp dir");
        let local_dir = dir.path().display().to_string();
        let spec = spec(&format!(
            "kind = \"local\"\nlocal_dir = \"{local_dir}\"\nprefix = \"p\""
        ));
        let store = Store::local(dir.path());
        for channel in 0..3 {
            let base = format!("p/r1/s1/conv1/{channel:04}");
            store
                .put(&format!("{base}.png"), png(8), "image/png")
                .await
                .expect("put png");
            store
                .put(&format!("{base}.json"), b"{}".to_vec(), "application/json")
                .await
                .expect("put sidecar");
        }
        store
            .put("p/r2/s1/conv1/0000.png", png(8), "image/png")
            .await
            .expect("put another run");
        let args = GalleryArgs {
            thumb_size: 8,
            threads: 2,
        };
        let report = build(&spec, &store, &args).await.expect("gallery");
        assert_eq!(report.index_key, "p/r1/gallery/index.html");
        assert_eq!(report.summary.channels, 3);
        assert_eq!(report.summary.images, 3);
        for key in [
            "p/r1/gallery/index.html",
            "p/r1/gallery/s1/conv1.html",
            "p/r1/gallery/s1/conv1-0.png",
            "p/r1/gallery/s1/conv1/0002.html",
            "p/r1/gallery/compare/conv1.html",
        ] {
            assert!(store.exists(key).await.expect("head"), "{key} missing");
        }
        assert!(!store.exists("p/r2/gallery/index.html").await.expect("head"));
        let text = report.to_string();
        assert!(text.contains("index: p/r1/gallery/index.html"), "{text}");
        // a rerun replaces its own output instead of colliding with it
        let again = build(&spec, &store, &args).await.expect("rebuild");
        assert_eq!(again.summary, report.summary);
    }
}
