//! The command line: `chogate serve`, `chogate check-config`, the simulator's
//! `chogate phone` and `chogate loadtest`, and the database commands `migrate`,
//! `households import|export`, `seed-demo` and `stats`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
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
    /// Menu files: `menus check [DIR]`.
    Menus {
        /// What to do with them.
        #[command(subcommand)]
        action: MenusAction,
    },
    /// Dial chogate from a simulated feature phone, bound as a USSD centre. Reads one line
    /// per action from standard input (a terminal or a pipe).
    Phone(PhoneArgs),
    /// Generate load: virtual subscribers through a USSD-centre bind (`ussdc`) or an SMSC
    /// chogate binds to (`smsc`), or an SMSC that accepts SMS and sends receipts
    /// (`mt-sink`). Progress on stderr every second, one JSON line on stdout at the end.
    Loadtest(LoadtestArgs),
    /// Apply the migrations of `[database] url` and print the applied versions.
    Migrate,
    /// Households: `households import FILE.csv`, `households export`.
    Households {
        /// What to do.
        #[command(subcommand)]
        action: HouseholdsAction,
    },
    /// Fill the database with a small demo market (villages, leaders, households, listings,
    /// orders in every state); running it again changes nothing.
    SeedDemo,
    /// Counts of households, listings, orders by status, payments, events, dialogues and
    /// outbox SMS by status.
    Stats {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// HTTP API tokens: `tokens create --name shopee --scope orders:write` prints a new
    /// token once (only its hash is stored); `tokens list`; `tokens revoke ID`.
    Tokens {
        /// What to do.
        #[command(subcommand)]
        action: crate::api::tokens::TokensAction,
    },
}

/// `chogate menus ...`.
#[derive(Debug, Subcommand)]
pub enum MenusAction {
    /// Validate every menu file: references resolve, actions exist, every screen fits one
    /// USSD message in both languages and both encodings. Exit 1 with file:line: reason.
    Check {
        /// The menu directory [default: `[ussd] menus_dir` of the configuration, else the
        /// menus built into chogate].
        dir: Option<PathBuf>,
        /// Also drive every reachable path against a worst-case market (longest names, many
        /// orders and listings, largest numbers, both languages and encodings) and fail on
        /// any screen that does not fit, cuts a prompt or an entry, moves a list after an
        /// invalid key, or shows no way back.
        #[arg(long)]
        walk: bool,
    },
    /// Write every screen of the tree as a printable guide (Markdown) for the community
    /// technology teams who train households.
    Print {
        /// The menu directory [default: `[ussd] menus_dir` of the configuration, else the
        /// menus built into chogate].
        dir: Option<PathBuf>,
        /// Language: vi (default) or en.
        #[arg(long, default_value = "vi")]
        lang: String,
    },
}

/// `chogate households ...`.
#[derive(Debug, Subcommand)]
pub enum HouseholdsAction {
    /// Import households from CSV, all or nothing: header `msisdn,name,commune_code,village`
    /// plus optional `language,leader,has_epay,pending`. Refused lines are reported as
    /// FILE:LINE: reason and nothing is written (exit 1).
    Import {
        /// The CSV file (UTF-8).
        file: PathBuf,
    },
    /// Write every household as CSV on standard output (leaders first); the file imports
    /// back into an empty database.
    Export {
        /// Write to this file instead (created with mode 0600: it holds numbers and names).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `chogate phone`.
#[derive(Debug, clap::Args)]
pub struct PhoneArgs {
    /// The subscriber's number: 84912345678, 0912345678 or +84 912 345 678.
    pub msisdn: String,
    /// chogate's SMPP server as HOST:PORT [default: `smpp_server.listen` of the configuration].
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// USSD-centre account [default: the first `[[smpp_server.accounts]]`].
    #[arg(long, value_name = "ID")]
    pub system_id: Option<String>,
    /// Its password [default: the configured account's].
    #[arg(long, value_name = "PW")]
    pub password: Option<String>,
    /// What an empty line dials [default: `ussd.service_code`, or *384#].
    #[arg(long, value_name = "CODE")]
    pub service_code: Option<String>,
}

/// The part `chogate loadtest` plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadRole {
    /// A USSD centre bound to chogate's SMPP server (`--connect`).
    Ussdc,
    /// The operator's SMSC and USSD centre; chogate binds to it (`--listen`).
    Smsc,
    /// An SMSC accepting submit_sm and sending delivery receipts (`--listen`).
    MtSink,
    /// A gateway that does no work, for a `ussdc` run to measure the benchmark's own
    /// ceiling against (`--listen`; give it the same --script and --msisdn-base).
    NullGateway,
}

/// `chogate loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// The part to play.
    #[arg(long, value_enum)]
    pub role: LoadRole,
    /// ussdc: chogate's SMPP server as HOST:PORT (loopback only) [default: `smpp_server.listen`].
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// smsc, mt-sink, null-gateway: where to listen, HOST:PORT (loopback only).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// ussdc: our account on chogate [default: the first configured]; smsc, mt-sink: the
    /// system_id chogate must bind with; null-gateway: the one the USSD centre binds with.
    #[arg(long, value_name = "ID")]
    pub system_id: Option<String>,
    /// The password that goes with --system-id.
    #[arg(long, value_name = "PW")]
    pub password: Option<String>,
    /// Virtual subscribers.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Seconds to run.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub duration: u64,
    /// Answers sent one per screen after dialling, comma-separated; repeatable (subscribers
    /// take scripts round-robin).
    #[arg(long, default_value = "1,1,10,25000,1")]
    pub script: Vec<String>,
    /// Mean pause between a screen and the answer, in milliseconds: each pause is drawn
    /// from half to one and a half times it, so that subscribers do not move in step.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub think_ms: u64,
    /// Spread the subscribers' first dials over this many milliseconds (0: all at once).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub ramp_ms: u64,
    /// Subscriber i has MSISDN base+i.
    #[arg(long, default_value_t = 84_900_000_000)]
    pub msisdn_base: u64,
    /// What subscribers dial.
    #[arg(long, default_value = "*384#")]
    pub service_code: String,
    /// Outstanding requests we send on a bind.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub window: u32,
    /// Dialogues per subscriber at most (0: as many as the duration allows).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dialogues: u64,
    /// mt-sink: delay before each delivery receipt, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub receipt_delay_ms: u64,
    /// Threads the generator runs on. One (the default) serves a bind with the fewest
    /// wake-ups and leaves the rest of the machine to what is measured.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
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
    Config::load(&cli.config).map_err(|e| config_error(&cli.config, e))
}

/// A configuration error, naming the file where the error itself does not.
fn config_error(path: &std::path::Path, e: ConfigError) -> anyhow::Error {
    match e {
        ConfigError::Read { .. } | ConfigError::Parse { .. } => e.into(),
        ConfigError::Invalid { .. } | ConfigError::Env { .. } => {
            anyhow::Error::new(e).context(format!("configuration {}", path.display()))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(&cli)?;
            crate::smpp::transport::TlsSettings::load(&config)
                .with_context(|| format!("configuration {}", cli.config.display()))?;
            println!(
                "{}: ok ({} server accounts, {} SMSCs)",
                cli.config.display(),
                config.smpp_server.accounts.len(),
                config.smsc.len()
            );
            Ok(())
        }
        Command::Menus { action: MenusAction::Check { ref dir, walk } } => {
            let dir = menus_dir(&cli, dir.clone())?;
            let menus = crate::menu::Menus::load(dir.as_deref())?;
            let name = dir.as_ref().map_or_else(|| "built-in menus".to_owned(), |d| d.display().to_string());
            println!(
                "{name}: ok ({} screens, every one fits one USSD message with its placeholders at {} characters)",
                menus.screens.len(),
                crate::menu::engine::PLACEHOLDER_BUDGET
            );
            if walk {
                let worst = crate::ussd::backend::worst_case();
                let report = runtime()?.block_on(crate::menu::walk::walk(&menus, &worst, WALK_DEPTH));
                for p in &report.problems {
                    eprintln!(
                        "{name}: screen `{}` ({:?}/{:?}) {} after inputs [{}]:\n{}\n",
                        p.screen,
                        p.target.lang,
                        p.target.mode,
                        p.what,
                        p.path.join(", "),
                        p.text
                    );
                }
                if !report.problems.is_empty() {
                    anyhow::bail!("{} screens break the household-screen rules", report.problems.len());
                }
                println!(
                    "walk: ok ({} screens rendered, {} of {} screens reached, worst-case market, 2 languages x 2 encodings)",
                    report.screens,
                    report.reached,
                    menus.screens.len()
                );
            }
            Ok(())
        }
        Command::Menus { action: MenusAction::Print { ref dir, ref lang } } => {
            let dir = menus_dir(&cli, dir.clone())?;
            let menus = crate::menu::Menus::load(dir.as_deref())?;
            let lang = match lang.as_str() {
                "vi" => crate::menu::Lang::Vi,
                "en" => crate::menu::Lang::En,
                other => anyhow::bail!("--lang {other}: vi or en"),
            };
            print!("{}", crate::menu::guide::markdown(&menus, lang));
            Ok(())
        }
        Command::Phone(ref args) => phone(&cli, args),
        Command::Loadtest(ref args) => loadtest(&cli, args),
        Command::Migrate | Command::Households { .. } | Command::SeedDemo | Command::Stats { .. } => {
            database_command(&cli)
        }
        Command::Tokens { ref action } => {
            let config = load(&cli)?;
            quiet_logs("warn");
            crate::api::tokens::run(&config, action)
        }
        Command::Serve => {
            let config = load(&cli)?;
            crate::logging::init(&config.log);
            let rt = runtime()?;
            rt.block_on(serve(config))
        }
    }
}

/// How many inputs deep `menus check --walk` goes from each root.
const WALK_DEPTH: usize = 14;

/// The menu folder a `menus` command reads: the one given, else the configuration's
/// `[ussd] menus_dir`; `None` for the built-in menus (also when there is no configuration
/// file).
fn menus_dir(cli: &Cli, dir: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if dir.is_some() {
        return Ok(dir);
    }
    match Config::load(&cli.config) {
        Ok(c) => Ok(c.ussd.menus_dir),
        Err(ConfigError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_error(&cli.config, e)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")
}

fn quiet_logs(filter: &str) {
    crate::logging::init(&crate::config::LogConfig {
        filter: filter.to_owned(),
        format: crate::config::LogFormat::Text,
    });
}

/// The configured account with this system_id, or the first one.
fn account<'a>(
    config: &'a Config,
    system_id: Option<&str>,
) -> anyhow::Result<&'a crate::config::ServerAccount> {
    let accounts = &config.smpp_server.accounts;
    match system_id {
        Some(id) => accounts.iter().find(|a| a.system_id == id),
        None => accounts.first(),
    }
    .ok_or_else(|| match system_id {
        Some(id) => anyhow::anyhow!(
            "no [[smpp_server.accounts]] with system_id {id:?} to take the password from: give --password"
        ),
        None => anyhow::anyhow!(
            "no [[smpp_server.accounts]] in the configuration: give --system-id and --password"
        ),
    })
}

fn phone(cli: &Cli, args: &PhoneArgs) -> anyhow::Result<()> {
    use crate::sim::phone::{self, PhoneOptions};
    let msisdn = crate::msisdn::normalize(&args.msisdn)
        .with_context(|| format!("{:?} is not a Vietnamese mobile number", args.msisdn))?;
    let needs_config = args.connect.is_none() || args.password.is_none();
    let config = if needs_config { Some(load(cli)?) } else { None };
    let connect = match (&args.connect, &config) {
        (Some(c), _) => crate::sim::resolve(c)?,
        (None, Some(cfg)) => cfg.smpp_server.listen,
        (None, None) => anyhow::bail!("--connect is needed without a configuration"),
    };
    let (system_id, password) = match (&args.system_id, &args.password, &config) {
        (Some(id), Some(pw), _) => (id.clone(), pw.clone()),
        (id, None, Some(cfg)) => {
            let a = account(cfg, id.as_deref())?;
            (a.system_id.clone(), a.password.expose().to_owned())
        }
        (None, Some(pw), Some(cfg)) => (account(cfg, None)?.system_id.clone(), pw.clone()),
        _ => anyhow::bail!("give --system-id and --password, or a configuration with an account"),
    };
    let service_code = args
        .service_code
        .clone()
        .or_else(|| config.as_ref().map(|c| c.ussd.service_code.clone()))
        .unwrap_or_else(|| "*384#".to_owned());
    let tuning = config.map(|c| c.smpp).unwrap_or_default();
    quiet_logs("error");
    let opts = PhoneOptions {
        connect,
        system_id,
        password: crate::config::Secret::new(password),
        msisdn,
        service_code,
        tuning,
    };
    let lines = phone::stdin_lines();
    let mut out = std::io::stdout();
    runtime()?.block_on(phone::run(opts, lines, &mut out)).context("phone")
}

fn loadtest(cli: &Cli, args: &LoadtestArgs) -> anyhow::Result<()> {
    use std::time::Duration;

    use crate::sim::loadtest::{self, LoadOptions, Role};
    use crate::sim::subscriber::Script;

    let listen = || -> anyhow::Result<std::net::SocketAddr> {
        let l = args.listen.as_deref().context("--listen HOST:PORT is needed for this role")?;
        Ok(crate::sim::resolve(l)?)
    };
    let mut config = None;
    let role = match args.role {
        LoadRole::Ussdc => {
            let connect = match &args.connect {
                Some(c) => crate::sim::resolve(c)?,
                None => config.get_or_insert(load(cli)?).smpp_server.listen,
            };
            Role::Ussdc { connect }
        }
        LoadRole::Smsc => Role::Smsc { listen: listen()? },
        LoadRole::NullGateway => Role::NullGateway { listen: listen()? },
        LoadRole::MtSink => {
            Role::MtSink { listen: listen()?, receipt_delay: Duration::from_millis(args.receipt_delay_ms) }
        }
    };
    let (system_id, password) = match (&args.system_id, &args.password, args.role) {
        (Some(id), Some(pw), _) => (id.clone(), pw.clone()),
        (id, pw, LoadRole::Ussdc) => {
            let cfg = match config.take() {
                Some(c) => c,
                None => load(cli)?,
            };
            let a = account(&cfg, id.as_deref())?;
            (a.system_id.clone(), pw.clone().unwrap_or_else(|| a.password.expose().to_owned()))
        }
        _ => anyhow::bail!("--system-id and --password are needed for this role"),
    };
    let opts = LoadOptions {
        role,
        system_id,
        password: crate::config::Secret::new(password),
        subscribers: args.subscribers,
        duration: Duration::from_secs(args.duration),
        scripts: args.script.iter().map(|s| s.parse::<Script>()).collect::<Result<_, _>>()?,
        think: Duration::from_millis(args.think_ms),
        ramp: Duration::from_millis(args.ramp_ms),
        msisdn_base: args.msisdn_base,
        service_code: args.service_code.clone(),
        window: args.window,
        dialogues: args.dialogues,
        tuning: crate::config::SmppTuning::default(),
    };
    opts.validate()?;
    quiet_logs("warn");
    let rt = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n.into()).enable_all().build(),
    }
    .context("tokio runtime")?;
    let mut installed = rt.block_on(async { Signals::install() })?;
    let report = rt.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        let signals = tokio::spawn(async move {
            installed.recv().await;
            on_signal.cancel();
        });
        let report = loadtest::run(opts, stop, &mut std::io::stderr()).await;
        signals.abort();
        report
    })?;
    println!("{}", report.to_json());
    if report.bind_failed() {
        anyhow::bail!("no bind: nothing was measured");
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: from the moment the daemon says it listens, SIGTERM means a graceful
    // stop, never the default kill.
    let mut signals = Signals::install()?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, shutdown.clone()).await?;
    info!(smpp = %daemon.smpp_addr, http = %daemon.http_addr, "chogate ready");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.recv().await;
        info!("signal received: unbinding peers and draining");
        stop.cancel();
        signals.recv().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
    daemon.wait().await;
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere), listened to from creation on.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `migrate`, `households import|export`, `seed-demo`, `stats`: the database of
/// `[database] url`, through the market (its writer, its audit events).
fn database_command(cli: &Cli) -> anyhow::Result<()> {
    let config = load(cli)?;
    quiet_logs("warn");
    let db = config.database;
    let security = config.security;
    runtime()?.block_on(async {
        let mut stdout = std::io::stdout().lock();
        if matches!(cli.command, Command::Migrate) {
            crate::manage::migrate(&db, &mut stdout).await?;
            return Ok(());
        }
        let shutdown = CancellationToken::new();
        let market = crate::market::Market::open_with(&db, &security, shutdown.clone())
            .await
            .context("opening the database")?;
        let result = match &cli.command {
            Command::Households { action: HouseholdsAction::Import { file } } => {
                let mut stderr = std::io::stderr();
                crate::manage::import_households(&market, file, &mut stdout, &mut stderr, true)
                    .await
                    .map(|_| ())
            }
            Command::Households { action: HouseholdsAction::Export { output: None } } => {
                crate::manage::export_households(&market, &mut stdout).await.map(|_| ())
            }
            Command::Households { action: HouseholdsAction::Export { output: Some(path) } } => {
                match crate::files::create_private(path) {
                    Ok(file) => {
                        let mut out = std::io::BufWriter::new(file);
                        crate::manage::export_households(&market, &mut out).await.map(|_| ())
                    }
                    Err(source) => {
                        Err(crate::manage::ManageError::Write { path: path.display().to_string(), source })
                    }
                }
            }
            Command::SeedDemo => crate::manage::seed_demo(&market, &mut stdout).await.map(|_| ()),
            Command::Stats { json } => crate::manage::stats(&market, *json, &mut stdout).await.map(|_| ()),
            _ => Ok(()),
        };
        // Let the writer commit what it has and close the connections, whatever happened.
        shutdown.cancel();
        market.stopped().await;
        market.store().close().await;
        Ok(result?)
    })
}
