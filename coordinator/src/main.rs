//! `lucid-coordinator`: plans, submits and tracks sweeps.

fn main() -> anyhow::Result<()> {
    Ok(())
}
