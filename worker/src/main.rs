//! `lucid-worker`: inspect model files and render feature visualizations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lucid_worker::cli;

/// The lucid-sweep GPU worker.
#[derive(Debug, Parser)]
#[command(name = "lucid-worker", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print each seed's layers (kernel, stride, channels) and the channel totals.
    Inspect {
        /// A checkpoint prefix, a `.safetensors` file or a folder of `training_seed_NN` sub-folders.
        path: PathBuf,
    },
    /// Render channels of one layer to a folder.
    Render(Box<cli::RenderArgs>),
    /// Measure images/s and the time per phase (add `--all-layers` for a sweep estimate).
    Bench(Box<lucid_worker::bench::BenchArgs>),
    /// Write the synthetic demo models (Gabor and colour-opponent first layers) under a folder.
    DemoModels {
        /// Output folder; gets `training_seed_NN/model.safetensors`.
        out: PathBuf,
        /// Number of seeds.
        #[arg(long, default_value_t = 2)]
        seeds: u32,
        /// Random weights at the ecoset AlexNet's widths (64 … 4096, 565) instead of the small demo
        /// network: for benchmarks (194 MB per seed; not committed).
        #[arg(long)]
        ecoset_widths: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUCID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = match &args.command {
        Command::Inspect { path } => cli::inspect(path, &mut std::io::stdout().lock()),
        Command::Render(render) => cli::render(render),
        Command::DemoModels {
            out,
            seeds,
            ecoset_widths,
        } => cli::demo_models(out, *seeds, *ecoset_widths),
        Command::Bench(bench) => lucid_worker::bench::bench(bench).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
