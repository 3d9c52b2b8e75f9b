//! GPU-time rates from the engine's own benchmark (issue 13): `lucid-worker bench --all-layers
//! --rates-out FILE` on the CPU with the small fixture model writes a rates file, and
//! `lucid-coordinator plan --rates FILE` estimates with it instead of the shipped H200 rates; a
//! malformed file is refused naming the file and the field. Needs no services.

use std::path::Path;

use lucid_e2e::{CommandOutput, fixture_model, json_document, run_binary as run};
use serde_json::Value;

/// `output`'s stdout as one JSON document, after checking that `what` succeeded.
fn json_stdout(what: &str, output: &CommandOutput) -> Value {
    json_document(output.expect_success(what))
}

/// A spec planning channels 0-1 of every layer of one fixture seed at `steps` steps, 224 px.
fn write_spec(dir: &Path, steps: u32) -> String {
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            "run_id = \"rates\"\nchannels = \"0-1\"\n[models]\ntraining_seed_01 = \"{}\"\n\
             [render]\nsteps = {steps}\nsize = 224\n[storage]\nkind = \"local\"\nlocal_dir = \"{}\"\n",
            fixture_model("training_seed_01").display(),
            dir.join("out").display()
        ),
    )
    .expect("write the spec");
    spec.display().to_string()
}

#[test]
fn bench_writes_a_rates_file_that_plan_estimates_with() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rates = dir.path().join("rates.json");
    let rates_arg = rates.display().to_string();
    let model = fixture_model("training_seed_01").display().to_string();
    let bench = run(
        "lucid-worker",
        &[
            "bench",
            "--checkpoint",
            &model,
            "--all-layers",
            "--device",
            "cpu",
            "--batch",
            "2",
            "--steps",
            "8",
            "--updates",
            "2",
            "--warmup",
            "1",
            "--seeds",
            "1",
            "--json",
            "--rates-out",
            &rates_arg,
        ],
    );
    let report = json_stdout("lucid-worker bench --json", &bench);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&rates).expect("rates file"))
        .expect("the rates file is JSON");
    assert_eq!(file["schema_version"], 1, "{file}");
    assert_eq!(
        (&file["precision"], &file["steps"], &file["size"]),
        (&"tf32".into(), &8.into(), &224.into()),
        "{file}"
    );
    assert!(
        file["device"]
            .as_str()
            .is_some_and(|d| d.starts_with("cpu")),
        "{file}"
    );
    assert_eq!(file["device"], report["device_name"]);
    let measured: Vec<(String, f64)> = file["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            assert_eq!(l["batch"], 2, "{l}");
            let rate = l["images_per_second"].as_f64().expect("a rate");
            (l["layer"].as_str().expect("a layer").to_owned(), rate)
        })
        .collect();
    let benched: Vec<(String, f64)> = report["layers"]
        .as_array()
        .expect("bench layers")
        .iter()
        .map(|l| {
            let rate = l["images_per_second"].as_f64().expect("a rate");
            (l["layer"].as_str().expect("a layer").to_owned(), rate)
        })
        .collect();
    assert_eq!(measured, benched, "the file holds what bench measured");
    assert_eq!(measured.len(), 8, "every layer: {measured:?}");

    // the same steps and size as the bench: plan uses the measured rates as they are
    let spec = write_spec(dir.path(), 8);
    let default = json_stdout(
        "plan --json",
        &run("lucid-coordinator", &["plan", "--spec", &spec, "--json"]),
    );
    let args = ["plan", "--spec", &spec, "--rates", &rates_arg, "--json"];
    let plan = json_stdout("plan --rates --json", &run("lucid-coordinator", &args));
    assert_eq!(default["estimate"]["rates"]["built_in"], true);
    let used = &plan["estimate"]["rates"];
    assert_eq!(used["built_in"], false, "{used}");
    assert_eq!(used["path"], rates_arg.as_str());
    assert_eq!(used["device"], file["device"]);
    let layers = plan["estimate"]["layers"]
        .as_array()
        .expect("estimate layers");
    assert_eq!(layers.len(), measured.len());
    let mut total = 0.0;
    for (layer, (name, rate)) in layers.iter().zip(&measured) {
        assert_eq!(layer["layer"], name.as_str());
        assert_eq!(layer["measured"], true);
        let used_rate = layer["images_per_second"].as_f64().expect("rate");
        assert!((used_rate - rate).abs() <= 1e-9 * rate, "{layer} vs {rate}");
        let seconds = layer["seconds"].as_f64().expect("seconds");
        assert!((seconds - 2.0 / rate).abs() <= 1e-9 * seconds, "{layer}");
        total += seconds;
    }
    let estimated = plan["estimate"]["total_seconds"].as_f64().expect("total");
    assert!(
        (estimated - total).abs() <= 1e-9 * total,
        "{estimated} vs {total}"
    );
    let built_in = default["estimate"]["total_seconds"]
        .as_f64()
        .expect("total");
    assert!(
        estimated > 2.0 * built_in,
        "a 2-core CPU estimate ({estimated} s) should be far above the H200's ({built_in} s)"
    );

    // a malformed file is refused, naming the file and the field
    let mut broken = file.clone();
    broken["layers"][3]["images_per_second"] = (-1.0).into();
    std::fs::write(&rates, broken.to_string()).expect("write the broken rates file");
    let refused = run("lucid-coordinator", &args);
    let stderr = &refused.stderr;
    assert!(
        !refused.status.success(),
        "a broken rates file must be refused"
    );
    assert!(
        stderr.contains(&format!(
            "rates file {rates_arg}: field `layers[3].images_per_second`"
        )),
        "{stderr}"
    );
}
