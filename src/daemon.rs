//! The daemon: binds the listeners, starts the SMSC bind loops and the request dispatcher,
//! all under one cancellation token and one task tracker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api;
use crate::config::Config;
use crate::market::{Market, MarketError};
use crate::menu::{MenuError, Menus};
use crate::notify::Notifier;
use crate::smpp::client::{self, ClientContext};
use crate::smpp::server::{self, Accounts, Connections, ServerContext};
use crate::smpp::session::{InboundRequest, Registry};
use crate::smpp::transport::TlsSettings;
use crate::ussd::{self, Ussd};

/// Requests from all SMPP peers waiting for the application, at most.
const INBOUND_QUEUE: usize = 8192;

/// The first pruning of old idempotency keys and API request records, after the start (not
/// at once: a restart loop must not prune in a loop, and start-up has other work).
const FIRST_PRUNE: Duration = Duration::from_secs(60);
/// Then every hour.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Why the daemon could not start. Each message says its cause and none has a `source()`,
/// so `chogate serve` prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A menu file is invalid.
    #[error("invalid menus: {0}")]
    Menu(MenuError),
    /// The database could not be opened or migrated.
    #[error("cannot open the database: {0}")]
    Market(MarketError),
    /// A listener could not bind its address.
    #[error("cannot listen on {addr} ({what}): {error}")]
    Listen {
        /// which listener.
        what: &'static str,
        /// the address.
        addr: SocketAddr,
        /// why.
        error: std::io::Error,
    },
    /// A TLS certificate, key or trusted root could not be used.
    #[error(transparent)]
    Tls(#[from] crate::smpp::transport::TlsError),
    /// A thread (the HTTP API's) could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

impl From<MenuError> for DaemonError {
    fn from(e: MenuError) -> Self {
        DaemonError::Menu(e)
    }
}

impl From<MarketError> for DaemonError {
    fn from(e: MarketError) -> Self {
        DaemonError::Market(e)
    }
}

/// A running daemon.
pub struct Daemon {
    /// Where the SMPP server listens (useful with port 0).
    pub smpp_addr: SocketAddr,
    /// Where the SMPP server listens in TLS, when it does.
    pub smpp_tls_addr: Option<SocketAddr>,
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Where the operations endpoints listen (`[http] ops_listen`), if apart.
    pub ops_addr: Option<SocketAddr>,
    /// Bound SMPP sessions by label.
    pub registry: Arc<Registry>,
    /// The market (for tests and the CLI).
    pub market: Market,
    /// The USSD service.
    pub ussd: Arc<Ussd>,
    /// The SMS notifier.
    pub notifier: Arc<Notifier>,
    shutdown: CancellationToken,
    /// Stops the store's writer once every session has drained.
    store_shutdown: CancellationToken,
    tracker: TaskTracker,
}

async fn listen(what: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).await.map_err(|error| DaemonError::Listen { what, addr, error })
}

impl Daemon {
    /// Binds everything and starts serving; returns once the listeners are bound.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Daemon, DaemonError> {
        let tracker = TaskTracker::new();
        let registry = Arc::new(Registry::default());
        let tls = TlsSettings::load(&config)?;
        let menus = Arc::new(Menus::load(config.ussd.menus_dir.as_deref())?);
        match &config.ussd.menus_dir {
            Some(dir) => info!(dir = %dir.display(), screens = menus.screens.len(), "menus loaded"),
            None => info!(screens = menus.screens.len(), "built-in menus loaded"),
        }
        let store_shutdown = CancellationToken::new();
        let market = Market::open_with(&config.database, &config.security, store_shutdown.clone()).await?;
        let ussd = Arc::new(Ussd::new(&config, menus, market.clone()));

        let smpp_listener = listen("SMPP server", config.smpp_server.listen).await?;
        let tls_listener = match config.smpp_server.tls_listen {
            Some(addr) => {
                let l = listen("SMPP over TLS", addr).await?;
                let local = l.local_addr().map_err(|error| DaemonError::Listen {
                    what: "SMPP over TLS",
                    addr,
                    error,
                })?;
                Some((l, local))
            }
            None => None,
        };
        let http_listener = listen("HTTP", config.http.listen).await?;
        let smpp_addr = smpp_listener.local_addr().map_err(|error| DaemonError::Listen {
            what: "SMPP server",
            addr: config.smpp_server.listen,
            error,
        })?;
        let http_addr = http_listener.local_addr().map_err(|error| DaemonError::Listen {
            what: "HTTP",
            addr: config.http.listen,
            error,
        })?;
        let ops = match config.http.ops_listen {
            Some(addr) => {
                let listener = listen("HTTP operations", addr).await?;
                let local = listener.local_addr().map_err(|error| DaemonError::Listen {
                    what: "HTTP operations",
                    addr,
                    error,
                })?;
                Some((listener, local))
            }
            None => None,
        };
        let ops_addr = ops.as_ref().map(|(_, local)| *local);

        let (other_tx, other_rx) = mpsc::channel(INBOUND_QUEUE);
        let inbound = ussd::start(ussd.clone(), other_tx, shutdown.clone(), tracker.clone());
        let notifier = Notifier::start(&config, market.clone(), registry.clone(), shutdown.clone(), &tracker);
        let hotline: Arc<str> = Arc::from(config.ussd.hotline.trim());
        tracker.spawn(dispatch(
            notifier.clone(),
            market.clone(),
            hotline,
            other_rx,
            shutdown.clone(),
            tracker.clone(),
        ));
        tracker.spawn(prune(market.clone(), config.database.retention(), shutdown.clone()));

        let ctx = ServerContext {
            accounts: Arc::new(Accounts::new(&config.smpp_server.accounts, &config.smpp)),
            connections: Connections::new(&config.smpp_server),
            tuning: config.smpp.clone(),
            inbound: inbound.clone(),
            registry: registry.clone(),
        };
        let smpp_tls_addr = tls_listener.as_ref().map(|(_, a)| *a);
        let tls_serve = match (tls_listener, tls.server.clone()) {
            (Some((listener, addr)), Some(acceptor)) => {
                info!(%addr, "SMPP server listening in TLS");
                Some((listener, acceptor))
            }
            _ => None,
        };
        tracker.spawn(server::serve(smpp_listener, tls_serve, ctx, shutdown.clone(), tracker.clone()));
        info!(addr = %smpp_addr, accounts = config.smpp_server.accounts.len(), "SMPP server listening");

        let client_ctx = ClientContext { tuning: config.smpp.clone(), inbound, registry: registry.clone() };
        for smsc in &config.smsc {
            for &kind in client::bind_kinds(smsc.bind) {
                let smsc_tls = tls.smsc.get(&smsc.name).cloned();
                tracker.spawn(client::run_bind(
                    smsc.clone(),
                    kind,
                    smsc_tls,
                    client_ctx.clone(),
                    shutdown.clone(),
                ));
            }
            info!(name = %smsc.name, host = %smsc.host, port = smsc.port, "SMSC bind started");
        }

        // The HTTP API runs on a thread of its own: its SQLite reads run in the calling
        // thread, and a report over a large database (hundreds of milliseconds) must not hold
        // up a worker serving the SMPP binds. The tracker waits for it to finish.
        let state = api::AppState::new(&config.api, market.clone(), registry.clone(), shutdown.clone());
        let http_shutdown = shutdown.clone();
        let to_std = |l: TcpListener, addr: SocketAddr| {
            l.into_std().map_err(|error| DaemonError::Listen { what: "HTTP", addr, error })
        };
        let std_listener = to_std(http_listener, config.http.listen)?;
        let std_ops = ops.map(|(l, addr)| to_std(l, addr)).transpose()?;
        let http_config = config.http.clone();
        let http_done = crate::thread::on_own_thread("chogate-http", async move {
            let listeners = TcpListener::from_std(std_listener)
                .and_then(|l| Ok((l, std_ops.map(TcpListener::from_std).transpose()?)));
            match listeners {
                Ok((listener, ops)) => api::serve(listener, ops, state, &http_config, http_shutdown).await,
                Err(e) => warn!(error = %e, "HTTP server failed"),
            }
        })
        .map_err(DaemonError::Thread)?;
        tracker.spawn(async move { http_done.cancelled().await });
        info!(addr = %http_addr, "HTTP listening");
        if let Some(addr) = ops_addr {
            info!(%addr, "HTTP operations endpoints listening");
        }
        Ok(Daemon {
            smpp_addr,
            smpp_tls_addr,
            http_addr,
            ops_addr,
            registry,
            market,
            ussd,
            notifier,
            shutdown,
            store_shutdown,
            tracker,
        })
    }

    /// The token that stops the daemon.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown has been requested and every task has finished (sessions
    /// unbound, in-flight requests drained).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        self.tracker.wait().await;
        // Dialogues still open end here, so that each has its audit event.
        self.ussd.close_all(ussd::Cut::Shutdown).await;
        // Every session has drained: the writer commits what it holds, then stops.
        self.store_shutdown.cancel();
        self.market.stopped().await;
        info!("stopped");
    }
}

/// Requests that are not USSD go, one task each, to the notifier (delivery receipts) or to
/// the keywords (households' SMS).
async fn dispatch(
    notifier: std::sync::Arc<Notifier>,
    market: Market,
    hotline: std::sync::Arc<str>,
    mut rx: mpsc::Receiver<InboundRequest>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => break },
            () = shutdown.cancelled() => break,
        };
        if crate::notify::is_receipt(&req.pdu) {
            let n = notifier.clone();
            tracker.spawn(async move { n.handle_receipt(req).await });
        } else {
            let (m, h) = (market.clone(), hotline.clone());
            tracker.spawn(async move { crate::keywords::handle_request(&m, &h, req).await });
        }
    }
}

/// Deletes idempotency keys and API request records older than `retention`, a minute after
/// the start and then every hour, until shutdown. With several nodes each prunes; the
/// batches skip rows another node is deleting.
async fn prune(market: Market, retention: Duration, shutdown: CancellationToken) {
    let mut next = tokio::time::Instant::now() + FIRST_PRUNE;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            pruned = market.prune(retention) => match pruned {
                Ok(p) if p.keys + p.requests > 0 => {
                    info!(keys = p.keys, api_requests = p.requests, "pruned records past the retention");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruning failed; trying again in an hour"),
            },
        }
        next = tokio::time::Instant::now() + PRUNE_EVERY;
    }
}
