//! The `sluice` command.

use clap::{Parser, Subcommand};
use sluice::authoring::{push, scaffold};
use sluice::config::Config;
use sluice::plugins::{Bundle, Runtime, RuntimeConfig, builtin, selftest};
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
    /// Runs the gateway. Without --config: the embedded default, which
    /// serves the demo upstream with the key sk-sluice-demo.
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Overrides the configuration's `listen` address.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Runs only the demo upstream, a fake OpenAI-compatible provider.
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: std::net::SocketAddr,
    },
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
    /// Runs the self-tests in a bundle's manifest and reports each one.
    Test {
        /// A directory holding `plugin.toml` and its component.
        bundle: PathBuf,
    },
    /// Creates a plugin crate (router, risk or pricing) that builds and
    /// passes its own tests as generated.
    New {
        kind: String,
        name: String,
        /// Where to create it (a folder named after the plugin).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Sluice SDK crate to build against; by default the one this
        /// binary was built from, if its source is still there.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Uploads a bundle to a gateway's admin API.
    Push {
        /// A directory holding `plugin.toml` and its component.
        bundle: PathBuf,
        /// The gateway's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin token: the operator's, or a tenant's own.
        #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Upload into this tenant's plugins (with the operator's token).
        #[arg(long)]
        tenant: Option<String>,
        /// Make the version active once it is stored.
        #[arg(long)]
        activate: bool,
    },
}

// glibc's allocator showed as a tenth of the gateway's CPU under load;
// jemalloc's thread caches suit many short-lived request buffers, and it
// returns memory to the system steadily (mimalloc, also tried, held 95 MiB
// resident at idle).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc returns freed memory to the system only as it allocates, so an
/// idle gateway kept what compiling the plugins at start-up had used (about
/// 35 MiB): a background thread purges it on jemalloc's decay schedule.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";

fn main() -> ExitCode {
    let _log_writer = sluice::telemetry::init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, listen } => {
                let mut config = match config {
                    Some(path) => Config::load(&path).map_err(|e| e.to_string())?,
                    None => Config::embedded_default(),
                };
                config.listen = listen.unwrap_or(config.listen);
                sluice::server::run(config).await
            }
            Command::DemoUpstream { listen } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                println!(
                    "demo upstream listening on http://{}",
                    listener.local_addr().map_err(|e| e.to_string())?
                );
                sluice::demo::serve(listener)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Plugin(PluginCommand::Builtins) => {
                for bundle in builtin::bundles() {
                    describe(&bundle);
                }
                Ok(())
            }
            Command::Plugin(PluginCommand::Check { bundle }) => check(bundle).await,
            Command::Plugin(PluginCommand::Test { bundle }) => test(bundle).await,
            Command::Plugin(PluginCommand::New {
                kind,
                name,
                dir,
                sdk,
            }) => {
                let sdk = sdk.or_else(scaffold::default_sdk).ok_or(
                    "this binary's SDK source is not on this machine: give --sdk <path to sluice/sdk>",
                )?;
                let root = scaffold::scaffold(&kind, &name, &dir, &sdk)?;
                println!("{}", scaffold::next_steps(&root, &name));
                Ok(())
            }
            Command::Plugin(PluginCommand::Push {
                bundle,
                url,
                token,
                tenant,
                activate,
            }) => {
                let stored = push::push(&push::Push {
                    bundle: &bundle,
                    url: &url,
                    token: &token,
                    tenant: tenant.as_deref(),
                    activate,
                })
                .await?;
                println!("{stored}");
                Ok(())
            }
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

async fn test(dir: PathBuf) -> Result<(), String> {
    let bundle = Bundle::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    describe(&bundle);
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| e.to_string())?;
    let loaded = runtime.compile(&bundle).await.map_err(|e| e.to_string())?;
    let outcomes = selftest::run(&loaded.plugin, &bundle.manifest.tests).await;
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("ok      {}", outcome.name),
            Some(reason) => println!("FAILED  {}: {reason}", outcome.name),
        }
    }
    println!(
        "{} self-tests: {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    match failed {
        0 => Ok(()),
        _ => Err(format!("{failed} self-tests failed")),
    }
}
