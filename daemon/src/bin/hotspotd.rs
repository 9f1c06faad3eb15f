//! `hotspotd`: the service. Parses the command line, loads and validates the configuration,
//! runs the daemon until SIGTERM or SIGINT; or, with `--release`, frees the LAN of what
//! stopped daemons left in the kernel.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use clap::Parser;
use hotspotd::config::{Config, DEFAULT_CONFIG_PATH};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Traffic accounting and session enforcement for WiFi hotspots"
)]
struct Cli {
    #[arg(
        long,
        value_name = "PATH",
        default_value = DEFAULT_CONFIG_PATH,
        help = "Configuration file (TOML); every key can be overridden with HOTSPOTD__SECTION__KEY"
    )]
    config: PathBuf,
    /// Validate the configuration, print what is wrong, and exit.
    #[arg(long, conflicts_with = "release")]
    check_config: bool,
    /// Detach the programs, remove the pinned grants and counters, the speed-limit trees and
    /// the IFB that stopped daemons left, and exit: every client then gets through, uncounted.
    /// A stop keeps them, so the gate holds across restarts; this is for removing hotspotd.
    /// Refuses while a daemon runs.
    #[arg(long)]
    release: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(Some(&cli.config)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("hotspotd: {}", hotspotd::text::chain(&error));
            return ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        eprintln!("hotspotd: {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if cli.release {
        return match release(&config) {
            Ok(message) => {
                eprintln!("hotspotd: {message}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("hotspotd: {}", hotspotd::text::chain(error.as_ref()));
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // journald shows escape codes as they are; colour only for a person at a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match serve(config, &cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain, each cause once: anyhow's `{:#}` would repeat a cause that an
            // error of another crate also writes into its own message.
            tracing::error!("{}", hotspotd::text::chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `--release`: what it did, in a sentence.
fn release(config: &Config) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let found = runtime.block_on(hotspotd::release(config))?;
    let pins = config.kernel.pin_dir.display();
    Ok(if found {
        format!(
            "released {}: the programs are detached, {pins} and the speed-limit trees are removed",
            config.network.lan_interface
        )
    } else {
        format!(
            "nothing pinned under {pins}; speed-limit trees on {} removed if there were any",
            config.network.lan_interface
        )
    })
}

fn serve(config: Config, path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        let (reload, reloads) = watch::channel(Arc::clone(&config));
        let signals = tokio::spawn(wait_for_signals(shutdown.clone(), path.to_owned(), reload));
        let result = hotspotd::run_reloadable(config, shutdown.clone(), reloads).await;
        // If run() failed on its own, stop listening for signals too.
        shutdown.cancel();
        signals.await.context("signal task")??;
        result.context("hotspotd stopped")
    })
}

/// Cancels `shutdown` on SIGTERM or SIGINT. On SIGHUP reads the configuration file again and,
/// if it is valid, hands it to the daemon; if not, says why and keeps the running one.
async fn wait_for_signals(
    shutdown: CancellationToken,
    path: PathBuf,
    reload: watch::Sender<Arc<Config>>,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = hangup.recv() => {
                match Config::load(Some(&path)) {
                    Ok(config) => {
                        tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
                        reload.send_replace(Arc::new(config));
                    }
                    Err(error) => tracing::error!(
                        "SIGHUP: {}; keeping the running configuration",
                        hotspotd::text::chain(&error)
                    ),
                }
                continue;
            }
        }
        shutdown.cancel();
        return Ok(());
    }
}
