//! One result schema: what `lucid-worker render` writes is a run like `local`'s, so that the
//! coordinator's `verify` and `gallery` and a `local` resume read it as they read any run, and the
//! sidecars of both writers decode as the same proto type. (The S3 side, `serve`'s output read by
//! `verify`, `gallery` and `submit`'s resume, is `tests/sweep.rs`.)
//!
//! No service is needed: storage is a local folder and `verify --skip-queue` reads no broker.

use std::path::Path;

use lucid_e2e::{fixture_model, json_document, run_binary};
use lucid_proto::{ResultSidecar, RunManifest};

const RUN: &str = "one_schema";

/// Runs a workspace binary, returning (success, stdout, stderr).
fn run(name: &str, args: &[&str]) -> (bool, String, String) {
    let out = run_binary(name, args);
    (out.status.success(), out.stdout, out.stderr)
}

/// The spec of the run `render` makes with [`render_args`], channels `channels` of conv1.
fn write_spec(dir: &Path, out: &Path, channels: &str, steps: u32) -> String {
    let spec = format!(
        "run_id = {RUN:?}\nlayers = [\"conv1\"]\nchannels = {channels:?}\n\n[models]\n\
         training_seed_01 = {:?}\n\n[render]\nsteps = {steps}\nsize = 64\n\n[storage]\n\
         kind = \"local\"\nlocal_dir = {:?}\nprefix = \"\"\n",
        fixture_model("training_seed_01").display().to_string(),
        out.display().to_string()
    );
    let path = dir.join(format!("spec-{steps}.toml"));
    std::fs::write(&path, spec).expect("write spec");
    path.display().to_string()
}

/// `lucid-worker local --json --no-gallery` of `spec` on the CPU.
fn local_without_gallery(spec: &str) -> (bool, String, String) {
    run(
        "lucid-worker",
        &[
            "local",
            "--spec",
            spec,
            "--device",
            "cpu",
            "--json",
            "--no-gallery",
        ],
    )
}

/// `lucid-worker render --json` of `channels` of the fixture seed's conv1 at `steps` steps, 64 px
/// on the CPU, into run [`RUN`] under `out`.
fn render(out: &str, channels: &str, steps: &str) -> (bool, String, String) {
    let checkpoint = fixture_model("training_seed_01").display().to_string();
    run(
        "lucid-worker",
        &[
            "render",
            "--checkpoint",
            &checkpoint,
            "--layer",
            "conv1",
            "--channels",
            channels,
            "--steps",
            steps,
            "--size",
            "64",
            "--device",
            "cpu",
            "--run",
            RUN,
            "--out",
            out,
            "--json",
        ],
    )
}

fn sidecar(out: &Path, channel: u32) -> ResultSidecar {
    let path = out.join(format!("{RUN}/training_seed_01/conv1/{channel:04}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ResultSidecar::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn render_output_is_verified_galleried_and_resumed_like_a_local_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out_str = out.display().to_string();

    // render writes channels 0-1 of the run
    let (ok, stdout, stderr) = render(&out_str, "0-1", "3");
    assert!(ok, "render failed: {stderr}");
    let summary = json_document(&stdout);
    assert_eq!(
        (summary["expected"].as_u64(), summary["rendered"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    let manifest = std::fs::read(out.join(RUN).join("run.json")).expect("render writes run.json");
    let manifest = RunManifest::decode(&manifest).expect("render writes the proto manifest");
    assert_eq!(manifest.task_count, 2);
    let rendered = sidecar(&out, 1);
    assert_eq!(
        (rendered.channel, rendered.steps, rendered.size),
        (1, 3, 64)
    );

    // local, on the spec of the same run widened to channels 0-3 (a rerun may extend a run),
    // resumes it: render's two are done, it renders only 2-3
    let spec = write_spec(dir.path(), &out, "0-3", 3);
    let (ok, stdout, stderr) = local_without_gallery(&spec);
    assert!(ok, "local on render's run: {stderr}");
    let resumed = json_document(&stdout);
    assert_eq!(
        (
            resumed["already_stored"].as_u64(),
            resumed["rendered"].as_u64()
        ),
        (Some(2), Some(2)),
        "local reads render's sidecars as done: {resumed}"
    );

    // other settings under the same run are refused, whichever writer made it
    let (ok, _, stderr) = render(&out_str, "0-1", "4");
    assert!(
        !ok,
        "render with other steps into the same run must be refused"
    );
    assert!(stderr.contains("render settings differ"), "{stderr}");

    // the coordinator verifies and galleries render's run from the spec that describes it
    let (ok, stdout, stderr) = run(
        "lucid-coordinator",
        &["verify", "--spec", &spec, "--skip-queue", "--json"],
    );
    let report = json_document(&stdout);
    assert!(ok, "verify of render's run failed: {report}\n{stderr}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        (report["expected"].as_u64(), report["complete"].as_u64()),
        (Some(4), Some(4)),
        "{report}"
    );

    let (ok, stdout, stderr) = run("lucid-coordinator", &["gallery", "--spec", &spec, "--json"]);
    assert!(ok, "gallery of render's run failed: {stderr}");
    let gallery = json_document(&stdout);
    assert!(
        out.join(RUN).join("gallery/index.html").is_file(),
        "{gallery}"
    );
    let text = gallery.to_string();
    assert!(
        text.contains(r#""images":4"#) && text.contains(r#""missing_sidecars":0"#),
        "the gallery decodes all four images and finds every sidecar: {gallery}"
    );
}

#[test]
fn render_and_local_write_the_same_sidecar_for_the_same_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let by_render = dir.path().join("render");
    let by_local = dir.path().join("local");
    let render_out = by_render.display().to_string();
    let (ok, _, stderr) = render(&render_out, "2", "3");
    assert!(ok, "render failed: {stderr}");
    let spec = write_spec(dir.path(), &by_local, "2", 3);
    let (ok, _, stderr) = local_without_gallery(&spec);
    assert!(ok, "local failed: {stderr}");

    let (a, b) = (sidecar(&by_render, 2), sidecar(&by_local, 2));
    // the same task, settings and image; only who made it, when and how long it took differ
    assert_eq!(a.task_id, b.task_id);
    assert_eq!(a.settings, b.settings);
    assert_eq!(
        a.png_sha256, b.png_sha256,
        "the same task renders the same image"
    );
    assert_eq!(a.objective_end, b.objective_end);
}

/// Copies the fixture checkpoint of `seed` into `dir/seed/` and cuts its first data shard to a third.
fn truncated_copy(seed: &str, dir: &Path) -> std::path::PathBuf {
    let target = dir.join(seed);
    std::fs::create_dir_all(&target).expect("create seed folder");
    for entry in std::fs::read_dir(fixture_model(seed)).expect("read fixture folder") {
        let from = entry.expect("fixture entry").path();
        let to = target.join(from.file_name().expect("a file name"));
        std::fs::copy(&from, &to).expect("copy fixture");
        if to.to_string_lossy().ends_with(".data-00000-of-00002") {
            let bytes = std::fs::read(&to).expect("read data");
            std::fs::write(&to, &bytes[..bytes.len() / 3]).expect("truncate");
        }
    }
    target
}

#[test]
fn verify_reads_a_local_runs_dead_letters_and_accepts_its_gallery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let bad = truncated_copy("training_seed_02", dir.path());
    let spec = format!(
        "run_id = {RUN:?}\nlayers = [\"conv1\"]\nchannels = \"0-1\"\n\n[models]\n\
         training_seed_01 = {:?}\ntraining_seed_02 = {:?}\n\n[render]\nsteps = 2\nsize = 64\n\n\
         [storage]\nkind = \"local\"\nlocal_dir = {:?}\n",
        fixture_model("training_seed_01").display().to_string(),
        bad.display().to_string(),
        out.display().to_string()
    );
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec).expect("write spec");
    let spec = spec_path.display().to_string();

    // local renders seed 01, gives up seed 02's tasks and builds the gallery anyway
    let (ok, _, stderr) = run(
        "lucid-worker",
        &["local", "--spec", &spec, "--device", "cpu", "--json"],
    );
    assert!(!ok, "two of four tasks fail: {stderr}");
    assert!(out.join(RUN).join("gallery/index.html").is_file());

    let (ok, stdout, _) = run(
        "lucid-coordinator",
        &["verify", "--spec", &spec, "--skip-queue", "--json"],
    );
    assert!(!ok, "a run with dead planned tasks does not verify");
    let report = json_document(&stdout);
    let violations = report["violations"].as_array().expect("violations");
    let mut dead: Vec<&str> = violations
        .iter()
        .filter(|v| v["kind"] == "dead_lettered")
        .filter_map(|v| v["task"].as_str())
        .collect();
    dead.sort_unstable();
    assert_eq!(
        dead,
        [
            "one_schema/training_seed_02/conv1/0000",
            "one_schema/training_seed_02/conv1/0001"
        ],
        "verify reads dead-letters.json: {report}"
    );
    // the dead tasks also have no objects; nothing else is wrong: the gallery and the report are
    // the run's own objects, not unexpected ones
    let others: Vec<&serde_json::Value> = violations
        .iter()
        .filter(|v| {
            !["dead_lettered", "missing_png", "missing_sidecar"]
                .contains(&v["kind"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(report["complete"], 2, "{report}");
    assert_eq!(
        report["dead_letters"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
}
