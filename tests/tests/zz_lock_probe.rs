#[test]
fn probe() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("CARGO={cargo:?}");
    let mut child = std::process::Command::new(cargo).args(["build", "-p", "lucid-e2e"]).spawn().unwrap();
    for _ in 0..60 {
        if let Some(s) = child.try_wait().unwrap() { eprintln!("done {s}"); return; }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    child.kill().unwrap();
    panic!("cargo build blocked");
}
