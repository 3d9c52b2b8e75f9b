//! A probe task from delivery to acknowledgement: one model over one shard of the probe set,
//! forward only (issue 15, docs/dataset-examples.md). The same for `serve` and `local`, and settled
//! like a render task (`settle`): acknowledged only once the shard's data and then its sidecar are
//! stored; a stored sidecar makes a redelivery a no-op.
//!
//! Each file is fetched from the probe set (a folder or an S3 prefix), decoded and prepared once on
//! the blocking pool, and its image serves every layer of the task in one forward pass per batch on
//! the render thread. A file that is gone, unreadable or not a usable image is set aside with its
//! reason in the sidecar; only a transient storage failure fails the task (it is requeued).

use std::time::Instant;

use futures::stream::{self, StreamExt};
use lucid_probe::{DecodeLimits, Prepared, Preprocessing};
use lucid_proto::keys::ShardPart;
use lucid_proto::probe::{
    PROBE_SHARD_SCHEMA_VERSION, ProbeTask, ShardLayer, ShardSidecar, Skipped,
};
use lucid_storage::StorageError;

use super::failure::Failure;
use super::gpu::{ProbeJob, ProbeReply};
use super::metrics::phase;
use super::settle::{self, Stored, settle};
use super::{BatchContext, ProbeItem, result};

/// Probe files fetched at once per task.
const FETCH_CONCURRENCY: usize = 16;

/// Probes, stores and settles one probe task.
pub async fn process_probe(item: ProbeItem, ctx: &BatchContext) {
    if item.handle.is_stale() {
        tracing::info!(task_id = %item.task.task_id, "skipping a delivery of a lost connection; the broker delivers it again");
        ctx.metrics.in_flight.dec();
        return;
    }
    let task = &item.task;
    let sidecar_key =
        ctx.prefix
            .probe_shard_key(&task.run_id, &task.model_id, task.shard, ShardPart::Sidecar);
    if ctx.store.exists(&sidecar_key).await.unwrap_or(false) {
        settle::skipped_existing(ctx, &item).await;
        return;
    }
    let outcome = probe_shard(ctx, task).await;
    settle(ctx, &item, outcome).await;
}

/// The shard's files read, run and stored.
async fn probe_shard(ctx: &BatchContext, task: &ProbeTask) -> Result<Stored, Failure> {
    let started = Instant::now();
    let model = ctx.models.resolve(&task.model_location).await?;
    let network = ctx.models.network(&task.network).await?;
    let download_seconds = started.elapsed().as_secs_f64();
    let read = read_shard(ctx, task).await?;
    ctx.metrics.time(phase::PROBE_READ, read.seconds);
    let images = read.images.len();
    let reply = ctx
        .gpu
        .probe(|reply| ProbeJob {
            model,
            network,
            layers: task.layers.iter().map(ToString::to_string).collect(),
            images: read.images,
            side: task.side as usize,
            k: task.k as usize,
            batch: task.batch as usize,
            reply,
        })
        .await?;
    ctx.metrics
        .time(phase::LOAD, download_seconds + reply.load_seconds);
    ctx.metrics
        .time(phase::PROBE_FORWARD, reply.forward_seconds);
    ctx.metrics.gpu_busy_seconds.inc_by(reply.forward_seconds);
    let sidecar = shard_sidecar(ctx, task, &read.names, read.skipped, read.seconds, &reply);
    store_shard(ctx, task, reply, &sidecar).await?;
    Ok(Stored::Shard { images })
}

/// A shard's files, fetched, decoded and prepared.
struct ReadShard {
    names: Vec<String>,
    images: Vec<Prepared>,
    skipped: Vec<Skipped>,
    seconds: f64,
}

/// Fetches every file of the shard (in parallel) and prepares each on the blocking pool, in the
/// task's order. Only a transient storage failure is an error; anything else about one file sets
/// that file aside.
async fn read_shard(ctx: &BatchContext, task: &ProbeTask) -> Result<ReadShard, Failure> {
    let started = Instant::now();
    let set = ctx.models.probe_set(&task.probe_set).await?;
    let how = Preprocessing::for_side(task.side);
    let fetched: Vec<(String, Result<Vec<u8>, StorageError>)> = stream::iter(task.files.clone())
        .map(|name| {
            let set = set.clone();
            async move {
                let read = set.read(&name).await;
                (name, read)
            }
        })
        .buffered(FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut bytes = Vec::with_capacity(fetched.len());
    for (name, read) in fetched {
        match read {
            Ok(body) => bytes.push((name, Ok(body))),
            Err(e) if e.is_transient() => {
                return Err(Failure::fetching(&format!("probe file {name}"), &e));
            }
            Err(e) => bytes.push((name.clone(), Err(format!("probe image {name}: {e}")))),
        }
    }
    let prepared = tokio::task::spawn_blocking(move || {
        bytes
            .into_iter()
            .map(|(name, body)| {
                let prepared = body.and_then(|b| {
                    crate::probe::files::prepare_file(&name, &b, how, DecodeLimits::default())
                });
                (name, prepared)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Failure::transient(format!("preparing the probe images failed: {e}")))?;
    let mut read = ReadShard {
        names: Vec::new(),
        images: Vec::new(),
        skipped: Vec::new(),
        seconds: 0.0,
    };
    for (name, prepared) in prepared {
        match prepared {
            Ok(image) => {
                read.names.push(name);
                read.images.push(image);
            }
            Err(reason) => {
                tracing::warn!(task_id = %task.task_id, file = %name, %reason, "probe file set aside");
                read.skipped.push(Skipped { file: name, reason });
            }
        }
    }
    read.seconds = started.elapsed().as_secs_f64();
    Ok(read)
}

fn shard_sidecar(
    ctx: &BatchContext,
    task: &ProbeTask,
    names: &[String],
    skipped: Vec<Skipped>,
    read_seconds: f64,
    reply: &ProbeReply,
) -> ShardSidecar {
    ShardSidecar {
        schema_version: PROBE_SHARD_SCHEMA_VERSION,
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        model_id: task.model_id.clone(),
        shard: task.shard,
        images: names.to_vec(),
        skipped,
        layers: task
            .layers
            .iter()
            .zip(&reply.layers)
            .map(|(layer, kept)| ShardLayer {
                layer: layer.clone(),
                channels: kept.channels.len() as u32,
            })
            .collect(),
        k: task.k,
        side: task.side,
        read_seconds,
        forward_seconds: reply.forward_seconds,
        provenance: result::provenance(&ctx.worker_id, &ctx.code_version),
    }
}

/// Stores the shard's data, then its sidecar: a stored sidecar always has its data.
async fn store_shard(
    ctx: &BatchContext,
    task: &ProbeTask,
    reply: ProbeReply,
    sidecar: &ShardSidecar,
) -> Result<(), Failure> {
    let started = Instant::now();
    let (images, k) = (sidecar.images.len(), task.k as usize);
    let data =
        tokio::task::spawn_blocking(move || lucid_probe::shard::encode(&reply.layers, images, k))
            .await
            .map_err(|e| Failure::transient(format!("encoding the probe shard failed: {e}")))?
            .map_err(|e| Failure::transient(format!("encoding the probe shard failed: {e}")))?;
    let key = |part| {
        ctx.prefix
            .probe_shard_key(&task.run_id, &task.model_id, task.shard, part)
    };
    ctx.store
        .put(&key(ShardPart::Data), data, "application/octet-stream")
        .await
        .map_err(|e| Failure::storing(&e))?;
    ctx.store
        .put(
            &key(ShardPart::Sidecar),
            sidecar.encode(),
            "application/json",
        )
        .await
        .map_err(|e| Failure::storing(&e))?;
    ctx.metrics
        .time(phase::UPLOAD, started.elapsed().as_secs_f64());
    Ok(())
}
