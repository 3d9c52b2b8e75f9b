//! A rendered image as the run's result: its sidecar (the proto schema) and the one way both are
//! stored, shared by `serve`, `local` and `render`, so that a gallery, `verify` and a resume read the
//! output of every mode alike.

use std::time::{SystemTime, UNIX_EPOCH};

use lucid_proto::TaskMessage;
use lucid_proto::keys::KeyPrefix;
use lucid_proto::result::{CopyOutcome, Provenance, RenderOutcome, ResultSidecar};
use lucid_storage::{StorageError, Store};
use sha2::{Digest, Sha256};

use super::gpu::RenderMode;
use crate::render::RenderedImage;

/// The version recorded in sidecars.
pub const CODE_VERSION: &str = concat!("lucid-worker ", env!("CARGO_PKG_VERSION"));

/// The sidecars' `code_version` for images made in `mode`: results of the benchmark renderer say so.
pub fn code_version(mode: RenderMode) -> String {
    match mode {
        RenderMode::Optimise => CODE_VERSION.to_string(),
        RenderMode::SkipOptimisation => {
            format!("{CODE_VERSION} (benchmark renderer: stand-in images, not optimised)")
        }
    }
}

/// Who made an image, stamped now.
pub fn provenance(worker_id: &str, code_version: &str) -> Provenance {
    Provenance {
        worker_id: worker_id.to_string(),
        code_version: code_version.to_string(),
        created_at: rfc3339_now(),
    }
}

/// The sidecar of `task`'s images (one per copy of its view, in copy order), whose encoded PNGs are
/// `pngs`; `None` without an image, which no sidecar may record. Its `render_seconds` is the task's
/// share of the batch: `seconds_per_image` for each of its images (every copy of a diversity view).
pub fn sidecar(
    task: &TaskMessage,
    images: &[RenderedImage],
    pngs: &[Vec<u8>],
    seconds_per_image: f64,
    provenance: Provenance,
) -> Option<ResultSidecar> {
    let render_seconds = seconds_per_image * images.len() as f64;
    let mut copies = images.iter().zip(pngs).map(|(image, png)| CopyOutcome {
        objective_start: image.objective_start,
        objective_end: image.objective_end,
        png_sha256: hex(&Sha256::digest(png)),
    });
    let first = copies.next()?;
    Some(ResultSidecar::from_task(
        task,
        RenderOutcome {
            objective_start: first.objective_start,
            objective_end: first.objective_end,
            render_seconds,
            png_sha256: first.png_sha256,
            further_copies: copies.collect(),
        },
        provenance,
    ))
}

/// Stores the PNGs (copy by copy), then the sidecar: a stored sidecar is what marks a task done, so
/// it must never exist without its images.
pub async fn store(
    store: &Store,
    prefix: &KeyPrefix,
    sidecar: &ResultSidecar,
    pngs: Vec<Vec<u8>>,
) -> Result<(), StorageError> {
    let id = sidecar.result_id();
    for (copy, png) in (0u32..).zip(pngs) {
        let png_key = prefix.png_key(&sidecar.run_id, &id, copy);
        store.put(&png_key, png, "image/png").await?;
    }
    store
        .put(
            &prefix.sidecar_key(&sidecar.run_id, &id),
            sidecar.encode(),
            "application/json",
        )
        .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time as RFC 3339 in UTC with seconds precision.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lucid_proto::spec::{ModelLocation, RenderSection};

    fn image(copy: usize) -> RenderedImage {
        RenderedImage {
            channel: 3,
            copy,
            size: 1,
            rgb: vec![0; 3],
            objective_start: 0.5,
            objective_end: 2.0 + copy as f64,
        }
    }

    #[test]
    fn a_sidecar_records_its_tasks_share_of_the_batch_with_every_copy() {
        let task = TaskMessage::new(
            "run".parse().expect("run id"),
            "s1".parse().expect("model id"),
            "conv2".parse().expect("layer"),
            3,
            RenderSection::default().settings(),
            ModelLocation::parse("/data/s1").expect("location"),
        );
        let images: Vec<RenderedImage> = (0..3).map(image).collect();
        let pngs = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let who = || provenance("w", CODE_VERSION);
        let three = sidecar(&task, &images, &pngs, 0.25, who()).expect("a sidecar");
        assert_eq!(three.render_seconds, 0.75, "three images at 0.25 s each");
        assert_eq!(three.further_copies.len(), 2);
        let one = sidecar(&task, &images[..1], &pngs[..1], 0.25, who()).expect("a sidecar");
        assert_eq!(one.render_seconds, 0.25);
        assert!(
            sidecar(&task, &[], &[], 0.25, who()).is_none(),
            "no image, no sidecar"
        );
    }
}
