//! Probe tasks from delivery to acknowledgement: each is one model over one shard of the probe set,
//! forward only (issue 15, docs/dataset-examples.md). The same for `serve` and `local`, and settled
//! like a render task (`settle`): acknowledged only once the shard's data and then its sidecar are
//! stored; a stored sidecar makes a redelivery a no-op.
//!
//! The runner hands over the tasks of one shard together (every model's that arrived with it), and
//! the shard is read once for all of them: each file is fetched from the probe set (a folder or an
//! S3 prefix), decoded and prepared once on the blocking pool, and its image serves every layer of
//! every model in one forward pass per batch and model on the render thread. A file that is gone,
//! unreadable or not a usable image is set aside with its reason in each model's sidecar; only a
//! transient storage failure fails the tasks (they are requeued).

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

/// Probes, stores and settles the probe tasks of one shard (one per model), reading the shard once.
pub async fn process_probes(items: Vec<ProbeItem>, ctx: &BatchContext) {
    let mut todo = Vec::with_capacity(items.len());
    for item in items {
        if item.handle.is_stale() {
            tracing::info!(task_id = %item.task.task_id, "skipping a delivery of a lost connection; the broker delivers it again");
            ctx.metrics.in_flight.dec();
            continue;
        }
        let task = &item.task;
        let sidecar_key = ctx.prefix.probe_shard_key(
            &task.run_id,
            &task.model_id,
            task.shard,
            ShardPart::Sidecar,
        );
        if ctx.store.exists(&sidecar_key).await.unwrap_or(false) {
            settle::skipped_existing(ctx, &item).await;
            continue;
        }
        todo.push(item);
    }
    let Some(first) = todo.first() else {
        return;
    };
    let read = match read_shard(ctx, &first.task).await {
        Ok(read) => read,
        Err(failure) => {
            for item in &todo {
                settle(ctx, item, Err(failure.clone())).await;
            }
            return;
        }
    };
    ctx.metrics.time(phase::PROBE_READ, read.seconds);
    let files = read.names.len() + read.skipped.len();
    ctx.metrics.probe_files_read.inc_by(files as u64);
    for item in &todo {
        let outcome = probe_model(ctx, &item.task, &read).await;
        settle(ctx, item, outcome).await;
    }
}

/// One model's pass over a shard already read, stored.
async fn probe_model(
    ctx: &BatchContext,
    task: &ProbeTask,
    read: &ReadShard,
) -> Result<Stored, Failure> {
    let started = Instant::now();
    let model = ctx.models.resolve(&task.model_location).await?;
    let network = ctx.models.network(&task.network).await?;
    let download_seconds = started.elapsed().as_secs_f64();
    let images = read.images.len();
    let reply = ctx
        .gpu
        .probe(|reply| ProbeJob {
            model,
            network,
            layers: task.layers.iter().map(ToString::to_string).collect(),
            images: read.images.clone(),
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
    let sidecar = shard_sidecar(ctx, task, read, &reply);
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

/// The sidecar of `task`'s shard: the read's files and set-aside files and its seconds (shared by
/// every model the read served), the task's forward pass.
fn shard_sidecar(
    ctx: &BatchContext,
    task: &ProbeTask,
    read: &ReadShard,
    reply: &ProbeReply,
) -> ShardSidecar {
    ShardSidecar {
        schema_version: PROBE_SHARD_SCHEMA_VERSION,
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        model_id: task.model_id.clone(),
        shard: task.shard,
        images: read.names.clone(),
        skipped: read.skipped.clone(),
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
        read_seconds: read.seconds,
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
