//! The command line: `chogate serve`, `chogate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::daemon::Daemon;

/// chogate: an SMPP/USSD gateway for feature-phone household shops (*384#).
#[derive(Debug, Parser)]
#[command(name = "chogate", version, about)]
pub struct Cli {
    /// Configuration file (TOML); `CHOGATE_SECTION__KEY` variables override its keys.
    #[arg(long, short, global = true, env = "CHOGATE_CONFIG", default_value = "chogate.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Serve,
    /// Validate the configuration and exit (0 when valid).
    CheckConfig,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chogate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(&cli.config).with_context(|| format!("configuration {}", cli.config.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(&cli)?;
            println!(
                "{}: ok ({} server accounts, {} SMSCs)",
                cli.config.display(),
                config.smpp_server.accounts.len(),
                config.smsc.len()
            );
            Ok(())
        }
        Command::Serve => {
            let config = load(&cli)?;
            crate::logging::init(&config.log);
            let rt =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
            rt.block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, shutdown.clone()).await?;
    info!(smpp = %daemon.smpp_addr, http = %daemon.http_addr, "chogate ready");
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: unbinding peers and draining");
        signals.cancel();
        wait_for_signal().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
    daemon.wait().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
