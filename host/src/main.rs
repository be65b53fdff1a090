//! The `sluice` command.

use clap::{Parser, Subcommand};
use sluice::plugins::{Bundle, Runtime, RuntimeConfig, builtin};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "AI API gateway with sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugin bundles.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Lists the plugins built into this binary.
    Builtins,
    /// Loads a bundle directory the way the gateway would and reports what
    /// it is, or exactly why it would be refused.
    Check {
        /// A directory holding `plugin.toml` and its component.
        bundle: PathBuf,
    },
}

fn main() -> ExitCode {
    sluice::telemetry::init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Plugin(PluginCommand::Builtins) => {
                for bundle in builtin::bundles() {
                    describe(&bundle);
                }
                Ok(())
            }
            Command::Plugin(PluginCommand::Check { bundle }) => check(bundle).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn describe(bundle: &Bundle) {
    let id = bundle.id();
    println!(
        "{id}  kind={}  {} bytes  sha256={}",
        id.kind,
        bundle.component.len(),
        id.content_hash
    );
}

async fn check(dir: PathBuf) -> Result<(), String> {
    let bundle = Bundle::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    describe(&bundle);
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    runtime.load(&bundle).await.map_err(|e| e.to_string())?;
    println!(
        "ok: compiled, checked against the {} world and started in {:?}",
        bundle.manifest.kind,
        started.elapsed()
    );
    Ok(())
}
