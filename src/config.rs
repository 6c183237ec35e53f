//! TOML configuration for chogate, with `CHOGATE_` environment overrides.
//!
//! Loading goes: parse the TOML text into a [`toml::Table`], apply the environment
//! overrides (`CHOGATE_SMSC__0__PASSWORD=x` sets `smsc[0].password`), deserialize
//! through `serde_path_to_error` so every error names its key, then [`Config::validate`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CHOGATE_";

/// Separator between key levels in an override variable name (`CHOGATE_SMPP__WINDOW`).
const ENV_SEPARATOR: &str = "__";

/// Everything that can go wrong while loading or checking the configuration. Each message
/// says its cause and none has a `source()`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// The text is not valid TOML; `message` carries toml's line/column report.
    #[error("{path}: {message}")]
    Parse {
        /// Where the text came from (usually the file path).
        path: String,
        /// toml's error message, including line and column.
        message: String,
    },
    /// A key has a wrong type, an unknown name or a value that fails validation.
    #[error("{key}: {message}")]
    Invalid {
        /// The key path, e.g. `smsc[1].port` or `smpp_server.accounts[0].system_id`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `CHOGATE_` environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// A secret (password) whose `Debug` and `Display` never show the value.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret value itself; use only where it is really needed (e.g. a bind PDU).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[database]`: where sessions and shop data live.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[http]`: health endpoints and the partner API.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[api]`: limits of the HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[smpp_server]`: the SMPP listener that USSD centres bind to.
    #[serde(default)]
    pub smpp_server: SmppServerConfig,
    /// `[[smsc]]`: operator SMSCs chogate binds to as a client.
    #[serde(default)]
    pub smsc: Vec<SmscConfig>,
    /// `[smpp]`: engine settings shared by the server and client roles.
    #[serde(default)]
    pub smpp: SmppTuning,
    /// `[ussd]`: USSD session behaviour.
    #[serde(default)]
    pub ussd: UssdConfig,
    /// `[log]`: logging filter and format.
    #[serde(default)]
    pub log: LogConfig,
    /// `[notify]`: SMS notifications.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[security]`: secrets kept outside the database.
    #[serde(default)]
    pub security: SecurityConfig,
}

/// `[security]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// The PIN pepper: 32 random bytes, Argon2's secret for every PIN hash, so that a copied
    /// database alone does not give the PINs away. Default: `pin_pepper` next to a SQLite
    /// database, or in the working directory (PostgreSQL). Made (mode 0600) at the first
    /// start when absent; a file that is there but unreadable or short stops the start.
    /// Nodes sharing one PostgreSQL database must all use the same file (copy the first
    /// node's before starting the others).
    #[serde(default)]
    pub pin_pepper_file: Option<PathBuf>,
}

/// `[database]` settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite:...`, `postgres://...` or `postgresql://...`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connections in the read pool (default 4, 1..=64).
    #[serde(default = "default_read_pool")]
    pub read_pool: u32,
    /// Most actions the writer commits in one transaction (default 256, 1..=10000).
    #[serde(default = "default_write_batch")]
    pub write_batch: u32,
    /// Actions waiting for the writer, at most; callers wait while it is full (default 4096,
    /// 1..=1000000).
    #[serde(default = "default_write_queue")]
    pub write_queue: u32,
    /// SQLite `synchronous` setting (default `full`).
    #[serde(default)]
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long a statement waits for a lock held by another connection or process, in
    /// milliseconds (default 5000, at least 1).
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// Days idempotency keys and API request records are kept (default 30, 1..=3650); a
    /// task deletes older ones every hour. The audit events are kept.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    30
}

/// The URL's password (PostgreSQL) never shows.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("read_pool", &self.read_pool)
            .field("write_batch", &self.write_batch)
            .field("write_queue", &self.write_queue)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

fn default_database_url() -> String {
    "sqlite://chogate.db".to_owned()
}

fn default_read_pool() -> u32 {
    4
}

fn default_write_batch() -> u32 {
    256
}

fn default_write_queue() -> u32 {
    4096
}

fn default_busy_timeout_ms() -> u64 {
    5000
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            read_pool: default_read_pool(),
            write_batch: default_write_batch(),
            write_queue: default_write_queue(),
            sqlite_synchronous: SqliteSynchronous::default(),
            busy_timeout_ms: default_busy_timeout_ms(),
            retention_days: default_retention_days(),
        }
    }
}

impl DatabaseConfig {
    /// The lock wait as a duration.
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    /// How long idempotency keys and API request records are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// SQLite's `synchronous` setting (the database runs in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSynchronous {
    /// Every commit is flushed to disk before the action is acknowledged: an acknowledged
    /// action survives a crash of chogate and a power loss (`"full"`).
    #[default]
    Full,
    /// Commits reach the disk at checkpoints: an acknowledged action survives a crash of
    /// chogate, but the last ones may be lost on a power loss or OS crash (`"normal"`).
    Normal,
}

/// `[http]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server listens on (default `127.0.0.1:8080`).
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// A second listener for the operations endpoints (`/live`, `/ready` with details,
    /// `/metrics`). When set, the public port serves only `/live` and a `/ready` that names
    /// no account; when absent, `/metrics` stays on the public port. Not named `admin`: that
    /// word is the partners' admin scope and `/v1/admin` routes, which stay on `listen`.
    #[serde(default)]
    pub ops_listen: Option<SocketAddr>,
    /// Seconds a client has to send a request's head once it has begun (default 10, 1..).
    #[serde(default = "default_ten_secs")]
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay idle between requests (default 60, 1..).
    #[serde(default = "default_http_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Seconds a request may take, body included, before it is answered 408 (the body was
    /// still coming) or 503 (default 30, 1..).
    #[serde(default = "default_http_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Connections served at once, per listener (default 512, 1..=100000); one beyond is
    /// closed at once and counted in `chogate_http_connections_refused_total`.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: u32,
    /// Seconds the requests in flight get to finish once shutdown starts (default 10); then
    /// their connections are dropped.
    #[serde(default = "default_ten_secs")]
    pub grace_secs: u64,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)
}

fn default_http_idle_timeout_secs() -> u64 {
    60
}

fn default_http_request_timeout_secs() -> u64 {
    30
}

fn default_http_max_connections() -> u32 {
    512
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            ops_listen: None,
            header_timeout_secs: default_ten_secs(),
            idle_timeout_secs: default_http_idle_timeout_secs(),
            request_timeout_secs: default_http_request_timeout_secs(),
            max_connections: default_http_max_connections(),
            grace_secs: default_ten_secs(),
        }
    }
}

impl HttpConfig {
    /// Time to send a request's head.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// Idle time after which a keep-alive connection is closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Time a request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Time the requests in flight get at shutdown.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }
}

/// `[api]`: limits of the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest request body in bytes; larger ones get 413 (default 65536, 1024..=16777216).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Requests per second each token may make, sustained (default 50, 1..=100000).
    #[serde(default = "default_rate_per_sec")]
    pub rate_per_sec: u32,
    /// Requests a token may make at once before the rate applies (default 100, 1..=100000).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Requests per second one client address may make without a valid token (no token, a
    /// wrong one, `/live`, `/ready`, `/openapi.json`), sustained (default 5, 1..=100000).
    #[serde(default = "default_unauthenticated_rate_per_sec")]
    pub unauthenticated_rate_per_sec: u32,
    /// Such requests one address may make at once (default 50, 1..=100000).
    #[serde(default = "default_unauthenticated_burst")]
    pub unauthenticated_burst: u32,
}

fn default_unauthenticated_rate_per_sec() -> u32 {
    5
}

fn default_unauthenticated_burst() -> u32 {
    50
}

fn default_max_body_bytes() -> usize {
    65_536
}

fn default_rate_per_sec() -> u32 {
    50
}

fn default_burst() -> u32 {
    100
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            rate_per_sec: default_rate_per_sec(),
            burst: default_burst(),
            unauthenticated_rate_per_sec: default_unauthenticated_rate_per_sec(),
            unauthenticated_burst: default_unauthenticated_burst(),
        }
    }
}

/// `[smpp_server]` settings: the listener USSD centres (ESMEs) bind to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppServerConfig {
    /// Address the SMPP server listens on (default `127.0.0.1:2775`).
    #[serde(default = "default_smpp_listen")]
    pub listen: SocketAddr,
    /// `[[smpp_server.accounts]]`: the peers allowed to bind.
    #[serde(default)]
    pub accounts: Vec<ServerAccount>,
    /// Address of a second listener that speaks SMPP over TLS (default none).
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// PEM file with the TLS listener's certificate chain (required with `tls_listen`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the TLS listener's private key (required with `tls_listen`).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Connections open at once on the SMPP listeners together (default 256, at least 1);
    /// beyond it no connection is accepted until one closes.
    #[serde(default = "default_smpp_max_connections")]
    pub max_connections: u32,
    /// Connections open at once from one address (an IPv6 /64 counts as one; default 32, at
    /// least 1); beyond it a new connection is closed at once.
    #[serde(default = "default_smpp_max_connections_per_ip")]
    pub max_connections_per_ip: u32,
}

fn default_smpp_max_connections() -> u32 {
    256
}

fn default_smpp_max_connections_per_ip() -> u32 {
    32
}

fn default_smpp_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2775)
}

impl Default for SmppServerConfig {
    fn default() -> Self {
        Self {
            listen: default_smpp_listen(),
            accounts: Vec::new(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            max_connections: default_smpp_max_connections(),
            max_connections_per_ip: default_smpp_max_connections_per_ip(),
        }
    }
}

/// One account a peer may bind to the SMPP server with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerAccount {
    /// SMPP system_id, 1..=15 octets, unique across accounts.
    pub system_id: String,
    /// SMPP password, 0..=8 octets.
    pub password: Secret,
    /// Simultaneous binds allowed for this account (default 8, at least 1).
    #[serde(default = "default_max_binds")]
    pub max_binds: u32,
    /// Outstanding requests chogate sends to this peer (default 50, 1..=10000).
    #[serde(default = "default_window")]
    pub window: u32,
    /// PDU used for USSD screens towards this peer (default `deliver_sm`).
    #[serde(default)]
    pub reply_pdu: ReplyPdu,
    /// How a USSD dialogue is identified across PDUs (default `its_session_info`).
    #[serde(default)]
    pub dialogue_key: DialogueKey,
    /// How screen text is encoded (default `ucs2`).
    #[serde(default)]
    pub text_mode: TextMode,
    /// Addresses this account may bind from: IP addresses or CIDR blocks such as
    /// `10.20.0.0/16` (default empty: any address).
    #[serde(default)]
    pub allowed_ips: Vec<Cidr>,
    /// MSISDN prefixes (digits) of the subscribers this account may speak for; a PDU from
    /// another number is refused with `ESME_RINVSRCADR` (default empty: any number).
    #[serde(default)]
    pub msisdn_prefixes: Vec<String>,
}

fn default_max_binds() -> u32 {
    8
}

fn default_window() -> u32 {
    50
}

/// One `[[smsc]]`: an operator SMSC chogate binds to as an ESME.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmscConfig {
    /// Unique name made of `[A-Za-z0-9_-]`, used in logs and metrics.
    pub name: String,
    /// Host name or IP address of the SMSC.
    pub host: String,
    /// TCP port of the SMSC (not 0).
    pub port: u16,
    /// SMPP system_id, 1..=15 octets.
    pub system_id: String,
    /// SMPP password, 0..=8 octets.
    pub password: Secret,
    /// SMPP system_type, at most 12 octets (default empty).
    #[serde(default)]
    pub system_type: String,
    /// One transceiver bind or a transmitter + receiver pair (default transceiver).
    #[serde(default)]
    pub bind: BindMode,
    /// Outstanding requests chogate sends to this SMSC (default 50, 1..=10000).
    #[serde(default = "default_window")]
    pub window: u32,
    /// Maximum submits per second; 0 means unthrottled (default 0).
    #[serde(default)]
    pub tps: u32,
    /// MSISDN prefixes (digits only) routed to this SMSC; longest match wins.
    #[serde(default)]
    pub route_prefixes: Vec<String>,
    /// How a USSD dialogue is identified across PDUs (default `its_session_info`).
    #[serde(default)]
    pub dialogue_key: DialogueKey,
    /// How screen text is encoded (default `ucs2`).
    #[serde(default)]
    pub text_mode: TextMode,
    /// First reconnect delay in milliseconds (default 1000, at least 1).
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay in milliseconds (default 60000, at least `reconnect_min_ms`).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// TCP connect timeout in milliseconds (default 5000, at least 1).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How this SMSC writes message ids in delivery receipts compared with its
    /// `submit_sm_resp` (default `as_given`; leading zeros and case never matter).
    #[serde(default)]
    pub receipt_ids: ReceiptIds,
    /// Speak SMPP over TLS to this SMSC (default false).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the certificate authorities trusted for this SMSC's certificate (default:
    /// the system's trusted roots).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The name the SMSC's certificate must carry (default `host`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// MSISDN prefixes (digits) of the numbers this SMSC may deliver messages from; a PDU
    /// from another number is refused with `ESME_RINVSRCADR` (default empty: any number).
    #[serde(default)]
    pub msisdn_prefixes: Vec<String>,
}

/// How an SMSC's delivery receipts write the ids its `submit_sm_resp` gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIds {
    /// The same way (`"as_given"`).
    #[default]
    AsGiven,
    /// The response gave hex, the receipt writes decimal (`"decimal"`).
    Decimal,
    /// The response gave decimal, the receipt writes hex (`"hex"`).
    Hex,
}

fn default_reconnect_min_ms() -> u64 {
    1000
}

fn default_reconnect_max_ms() -> u64 {
    60_000
}

fn default_connect_timeout_ms() -> u64 {
    5000
}

impl SmscConfig {
    /// First reconnect delay.
    pub fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }

    /// Largest reconnect delay.
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }

    /// TCP connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// How chogate binds to an SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum BindMode {
    /// One `bind_transceiver` session (`"transceiver"`).
    #[default]
    #[serde(rename = "transceiver")]
    Transceiver,
    /// A `bind_transmitter` plus a `bind_receiver` session (`"transmitter+receiver"`).
    #[serde(rename = "transmitter+receiver")]
    TransmitterReceiver,
}

/// The PDU used to send USSD screens to a peer bound to the SMPP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyPdu {
    /// `deliver_sm` (`"deliver_sm"`).
    #[default]
    DeliverSm,
    /// `submit_sm` (`"submit_sm"`).
    SubmitSm,
    /// `data_sm` (`"data_sm"`).
    DataSm,
}

/// What identifies one USSD dialogue across PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DialogueKey {
    /// The `its_session_info` TLV (`"its_session_info"`).
    #[default]
    ItsSessionInfo,
    /// The `user_message_reference` TLV (`"user_message_reference"`).
    UserMessageReference,
    /// The subscriber's MSISDN alone (`"msisdn"`).
    Msisdn,
}

/// How USSD screen text is encoded towards a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextMode {
    /// Vietnamese with accents, encoded as UCS2 (`"ucs2"`).
    #[default]
    Ucs2,
    /// Unaccented text in the GSM 03.38 default alphabet (`"gsm"`).
    Gsm,
}

/// `[smpp]`: SMPP engine settings shared by the server and client roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppTuning {
    /// Send `enquire_link` after this many idle seconds (default 30, at least 1).
    #[serde(default = "default_enquire_link_secs")]
    pub enquire_link_secs: u64,
    /// Seconds to wait for a response to a request (default 10, at least 1).
    #[serde(default = "default_ten_secs")]
    pub response_timeout_secs: u64,
    /// Server: a connection must bind within this; client: `bind_resp` wait (default 10, at least 1).
    #[serde(default = "default_ten_secs")]
    pub bind_timeout_secs: u64,
    /// Largest accepted PDU in octets (default 65536, 64..=1048576).
    #[serde(default = "default_max_pdu_len")]
    pub max_pdu_len: u32,
    /// Graceful shutdown: seconds to wait for `unbind_resp` and in-flight requests (default 5).
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Unanswered requests accepted from one peer before `ESME_RTHROTTLED` (default 1000, at least 1).
    #[serde(default = "default_inbound_window")]
    pub inbound_window: u32,
    /// Base delay before answering a failed bind; doubles per consecutive failure from one IP (default 500).
    #[serde(default = "default_failed_bind_delay_ms")]
    pub failed_bind_delay_ms: u64,
    /// Cap on the failed-bind delay in milliseconds (default 10000).
    #[serde(default = "default_failed_bind_max_delay_ms")]
    pub failed_bind_max_delay_ms: u64,
    /// Failed binds from one address within `failed_bind_window_secs` after which the address
    /// is refused whatever it sends (default 10, at least 1).
    #[serde(default = "default_failed_bind_limit")]
    pub failed_bind_limit: u32,
    /// The window the failed binds are counted in, in seconds (default 300, at least 1).
    #[serde(default = "default_failed_bind_window_secs")]
    pub failed_bind_window_secs: u64,
    /// How long an address over the limit is refused, in seconds (default 900, at least 1).
    #[serde(default = "default_failed_bind_cooldown_secs")]
    pub failed_bind_cooldown_secs: u64,
}

fn default_failed_bind_limit() -> u32 {
    10
}

fn default_failed_bind_window_secs() -> u64 {
    300
}

fn default_failed_bind_cooldown_secs() -> u64 {
    900
}

fn default_enquire_link_secs() -> u64 {
    30
}

fn default_ten_secs() -> u64 {
    10
}

fn default_max_pdu_len() -> u32 {
    65_536
}

fn default_drain_timeout_secs() -> u64 {
    5
}

fn default_inbound_window() -> u32 {
    1000
}

fn default_failed_bind_delay_ms() -> u64 {
    500
}

fn default_failed_bind_max_delay_ms() -> u64 {
    10_000
}

impl Default for SmppTuning {
    fn default() -> Self {
        Self {
            enquire_link_secs: default_enquire_link_secs(),
            response_timeout_secs: default_ten_secs(),
            bind_timeout_secs: default_ten_secs(),
            max_pdu_len: default_max_pdu_len(),
            drain_timeout_secs: default_drain_timeout_secs(),
            inbound_window: default_inbound_window(),
            failed_bind_delay_ms: default_failed_bind_delay_ms(),
            failed_bind_max_delay_ms: default_failed_bind_max_delay_ms(),
            failed_bind_limit: default_failed_bind_limit(),
            failed_bind_window_secs: default_failed_bind_window_secs(),
            failed_bind_cooldown_secs: default_failed_bind_cooldown_secs(),
        }
    }
}

impl SmppTuning {
    /// Idle time after which an `enquire_link` is sent.
    pub fn enquire_link(&self) -> Duration {
        Duration::from_secs(self.enquire_link_secs)
    }

    /// How long to wait for a response to a request.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }

    /// How long a bind may take (server: after accept; client: waiting for `bind_resp`).
    pub fn bind_timeout(&self) -> Duration {
        Duration::from_secs(self.bind_timeout_secs)
    }

    /// How long graceful shutdown waits for `unbind_resp` and in-flight requests.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// Base delay before answering a failed bind.
    pub fn failed_bind_delay(&self) -> Duration {
        Duration::from_millis(self.failed_bind_delay_ms)
    }

    /// Cap on the failed-bind delay.
    pub fn failed_bind_max_delay(&self) -> Duration {
        Duration::from_millis(self.failed_bind_max_delay_ms)
    }

    /// The window failed binds are counted in.
    pub fn failed_bind_window(&self) -> Duration {
        Duration::from_secs(self.failed_bind_window_secs)
    }

    /// How long an address over the failed-bind limit is refused.
    pub fn failed_bind_cooldown(&self) -> Duration {
        Duration::from_secs(self.failed_bind_cooldown_secs)
    }
}

/// An IP address block: `10.20.0.0/16`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4 address written as IPv6, `::ffff:a.b.c.d`, counts
    /// as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr.trim().parse().map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr: addr.to_canonical(), bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[ussd]`: USSD session behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UssdConfig {
    /// Seconds of silence after which a USSD session is dropped (default 120, at least 1).
    #[serde(default = "default_session_timeout_secs")]
    pub session_timeout_secs: u64,
    /// Seconds during which a dropped session can be resumed where it left off (default 300).
    #[serde(default = "default_resume_secs")]
    pub resume_secs: u64,
    /// The service code subscribers dial (default `*384#`).
    #[serde(default = "default_service_code")]
    pub service_code: String,
    /// Directory of menu files to run instead of the ones built into the binary (default:
    /// none, the built-in menus). Relative to the configuration file's folder.
    #[serde(default)]
    pub menus_dir: Option<PathBuf>,
    /// Dialogues open at once, at most (default 200 000, about 250 MB; 1..=10 000 000): a
    /// dial beyond it is answered `ESME_RTHROTTLED`, so that no peer can make chogate run out
    /// of memory. Dialogues kept for resumption are capped at the same number.
    #[serde(default = "default_max_dialogues")]
    pub max_dialogues: u64,
    /// The number help screens give where a village has no team leader (and to leaders
    /// themselves), e.g. the programme's hotline. Empty (the default): the commune's
    /// People's Committee is named instead.
    #[serde(default)]
    pub hotline: String,
    /// Inputs a dial string runs at most (`*384*1*2#` runs 1 then 2; default 16, 0..=100):
    /// the rest of a longer one is ignored and the dialogue shows the screen reached, so one
    /// dial cannot make chogate walk thousands of screens.
    #[serde(default = "default_max_inputs_per_dial")]
    pub max_inputs_per_dial: u32,
}

fn default_max_inputs_per_dial() -> u32 {
    16
}

fn default_max_dialogues() -> u64 {
    200_000
}

fn default_session_timeout_secs() -> u64 {
    120
}

fn default_resume_secs() -> u64 {
    300
}

fn default_service_code() -> String {
    "*384#".to_owned()
}

impl Default for UssdConfig {
    fn default() -> Self {
        Self {
            session_timeout_secs: default_session_timeout_secs(),
            resume_secs: default_resume_secs(),
            service_code: default_service_code(),
            menus_dir: None,
            max_dialogues: default_max_dialogues(),
            hotline: String::new(),
            max_inputs_per_dial: default_max_inputs_per_dial(),
        }
    }
}

impl UssdConfig {
    /// Idle time after which a USSD session is dropped.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs)
    }

    /// Time during which a dropped session can be resumed.
    pub fn resume(&self) -> Duration {
        Duration::from_secs(self.resume_secs)
    }
}

/// `[notify]`: SMS notifications from the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Sender address of notifications (default `384`, alphanumeric allowed).
    #[serde(default = "default_source_addr")]
    pub source_addr: String,
    /// SMSC for numbers no `route_prefixes` match (default: the first `[[smsc]]`).
    #[serde(default)]
    pub default_smsc: Option<String>,
    /// How long a notification stays worth sending (default 86400 s); later it is expired.
    #[serde(default = "default_validity_secs")]
    pub validity_secs: u64,
    /// How long a claimed message stays this node's before it is due again when no outcome
    /// was recorded for it (the node crashed), in seconds (default 120, at least 1): longer
    /// than a submit can take, since a message whose lease ran out may be sent again.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Retry rules per `command_status`; statuses without a rule are permanent failures.
    /// Default: 0x58 back off 1 s doubling to 60 s; 0x14 up to 5 tries; 0x08 3 tries.
    #[serde(default = "default_retry_rules")]
    pub retry: Vec<RetryRuleConfig>,
}

/// One `[[notify.retry]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRuleConfig {
    /// The status, as a number or "0x58".
    pub status: String,
    /// Attempts in all; 0 retries until the message expires.
    #[serde(default)]
    pub max_tries: u32,
    /// First delay, doubling after each failure.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest delay.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl RetryRuleConfig {
    /// The status as a number.
    pub fn status_code(&self) -> Option<u32> {
        let s = self.status.trim();
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    }
}

fn default_source_addr() -> String {
    "384".to_owned()
}

fn default_validity_secs() -> u64 {
    86_400
}

fn default_lease_secs() -> u64 {
    120
}

fn default_backoff_ms() -> u64 {
    1000
}

fn default_max_backoff_ms() -> u64 {
    60_000
}

fn default_retry_rules() -> Vec<RetryRuleConfig> {
    let rule = |status: &str, max_tries| RetryRuleConfig {
        status: status.to_owned(),
        max_tries,
        backoff_ms: default_backoff_ms(),
        max_backoff_ms: default_max_backoff_ms(),
    };
    vec![rule("0x58", 0), rule("0x14", 5), rule("0x08", 3)]
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            source_addr: default_source_addr(),
            default_smsc: None,
            validity_secs: default_validity_secs(),
            lease_secs: default_lease_secs(),
            retry: default_retry_rules(),
        }
    }
}

impl NotifyConfig {
    /// How long a notification stays worth sending.
    pub fn validity(&self) -> Duration {
        Duration::from_secs(self.validity_secs)
    }

    /// How long a claimed message is this node's (see `lease_secs`).
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

/// `[log]`: logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive (default `info`).
    #[serde(default = "default_log_filter")]
    pub filter: String,
    /// Output format (default text).
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_filter() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: default_log_filter(), format: LogFormat::default() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    #[default]
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

/// Longest SMPP system_id in octets (C-Octet String of 16 including the NUL).
const MAX_SYSTEM_ID: usize = 15;
/// Longest SMPP password in octets (9 including the NUL).
const MAX_PASSWORD: usize = 8;
/// Longest SMPP system_type in octets (13 including the NUL).
const MAX_SYSTEM_TYPE: usize = 12;
/// Largest send window.
const MAX_WINDOW: u32 = 10_000;
/// Smallest and largest accepted `max_pdu_len`.
const PDU_LEN_RANGE: std::ops::RangeInclusive<u32> = 64..=1_048_576;

impl Config {
    /// Parse TOML text, apply environment overrides from `env` (name, value pairs;
    /// in production `std::env::vars()`), deserialize, then validate. Relative paths stay
    /// relative to the working directory.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::parse(text, origin, None, env)
    }

    /// [`Config::from_toml_str`], with the relative paths of the text (and the defaults it
    /// leaves in place) taken from `base`, the configuration file's folder; those set by
    /// environment variables stay relative to the working directory.
    fn parse(
        text: &str,
        origin: &str,
        base: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let applied = apply_env_overrides(&mut table, env)?;
        let config: Config = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
            let key = match e.path().to_string() {
                root if root == "." => "config".to_owned(),
                key => key,
            };
            // `message()` is toml's text without its own (index-less) `in `key`` suffix.
            let mut message = e.inner().message().trim_end().to_owned();
            if let Some(var) = override_for_key(&applied, &key) {
                message.push_str(&format!(" (set by environment variable {var})"));
            }
            invalid(key, message)
        })?;
        let mut config = config;
        if let Some(base) = base {
            config.resolve_paths(base, |key| override_for_key(&applied, key).is_some())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Read the file and parse it with the process environment: relative paths in it are
    /// taken from the file's folder, those of `CHOGATE_` variables from the working
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        let env = process_env()?;
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Absolute, so that logs name the real place; as given if the working directory is
        // gone.
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        Self::parse(&text, &path.display().to_string(), Some(&folder), env)
    }

    /// Takes every relative path setting from `base` (the configuration file's folder),
    /// but those `from_env` says an environment variable set: the SQLite file of
    /// `database.url`, `ussd.menus_dir`, the TLS files (`smpp_server.tls_cert`, `tls_key`,
    /// `smsc[i].tls_ca`). A new path setting belongs here too.
    fn resolve_paths(&mut self, base: &Path, from_env: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        if !from_env("database.url")
            && let Some(url) = sqlite_url_under(&self.database.url, base)?
        {
            self.database.url = url;
        }
        let under = |key: &str, path: &mut Option<PathBuf>| {
            if !from_env(key)
                && let Some(p) = path
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        };
        under("ussd.menus_dir", &mut self.ussd.menus_dir);
        under("smpp_server.tls_cert", &mut self.smpp_server.tls_cert);
        under("smpp_server.tls_key", &mut self.smpp_server.tls_key);
        for (i, smsc) in self.smsc.iter_mut().enumerate() {
            under(&format!("smsc[{i}].tls_ca"), &mut smsc.tls_ca);
        }
        Ok(())
    }

    /// Semantic checks (lengths, ranges, uniqueness, URL scheme, prefix digits);
    /// the error names the key path, like `smsc[0].window`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_notify()?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                format!("`{}` must start with `sqlite:`, `postgres://` or `postgresql://`", redact_url(url)),
            ));
        }
        let db = &self.database;
        check_range("database.read_pool", u64::from(db.read_pool), 1, 64)?;
        check_range("database.write_batch", u64::from(db.write_batch), 1, 10_000)?;
        check_range("database.write_queue", u64::from(db.write_queue), 1, 1_000_000)?;
        check_ms("database.busy_timeout_ms", db.busy_timeout_ms, 1)?;
        check_range("database.retention_days", u64::from(db.retention_days), 1, 3650)?;

        for (i, account) in self.smpp_server.accounts.iter().enumerate() {
            let key = format!("smpp_server.accounts[{i}]");
            check_octets(&format!("{key}.system_id"), &account.system_id, 1, MAX_SYSTEM_ID)?;
            check_octets(&format!("{key}.password"), account.password.expose(), 0, MAX_PASSWORD)?;
            if let Some(j) =
                self.smpp_server.accounts[..i].iter().position(|other| other.system_id == account.system_id)
            {
                return Err(invalid(
                    format!("{key}.system_id"),
                    format!("duplicate system_id `{}` (also smpp_server.accounts[{j}])", account.system_id),
                ));
            }
            if account.max_binds == 0 {
                return Err(invalid(format!("{key}.max_binds"), "must be at least 1"));
            }
            check_window(&format!("{key}.window"), account.window)?;
            check_prefixes(&format!("{key}.msisdn_prefixes"), &account.msisdn_prefixes)?;
        }
        let server = &self.smpp_server;
        check_at_least_one("smpp_server.max_connections", u64::from(server.max_connections))?;
        check_at_least_one("smpp_server.max_connections_per_ip", u64::from(server.max_connections_per_ip))?;
        if server.tls_listen.is_some() {
            for (key, value) in
                [("smpp_server.tls_cert", &server.tls_cert), ("smpp_server.tls_key", &server.tls_key)]
            {
                if value.is_none() {
                    return Err(invalid(key, "is required with smpp_server.tls_listen"));
                }
            }
        }

        for (i, smsc) in self.smsc.iter().enumerate() {
            self.validate_smsc(i, smsc)?;
        }

        let smpp = &self.smpp;
        check_secs("smpp.enquire_link_secs", smpp.enquire_link_secs, 1)?;
        check_secs("smpp.response_timeout_secs", smpp.response_timeout_secs, 1)?;
        check_secs("smpp.bind_timeout_secs", smpp.bind_timeout_secs, 1)?;
        check_secs("smpp.drain_timeout_secs", smpp.drain_timeout_secs, 0)?;
        check_ms("smpp.failed_bind_max_delay_ms", smpp.failed_bind_max_delay_ms, 0)?;
        check_at_least_one("smpp.failed_bind_limit", u64::from(smpp.failed_bind_limit))?;
        check_secs("smpp.failed_bind_window_secs", smpp.failed_bind_window_secs, 1)?;
        check_secs("smpp.failed_bind_cooldown_secs", smpp.failed_bind_cooldown_secs, 1)?;
        if !PDU_LEN_RANGE.contains(&smpp.max_pdu_len) {
            return Err(invalid(
                "smpp.max_pdu_len",
                format!(
                    "must be between {} and {}, got {}",
                    PDU_LEN_RANGE.start(),
                    PDU_LEN_RANGE.end(),
                    smpp.max_pdu_len
                ),
            ));
        }
        check_at_least_one("smpp.inbound_window", u64::from(smpp.inbound_window))?;
        if smpp.failed_bind_max_delay_ms < smpp.failed_bind_delay_ms {
            return Err(invalid(
                "smpp.failed_bind_max_delay_ms",
                format!(
                    "must be at least smpp.failed_bind_delay_ms ({}), got {}",
                    smpp.failed_bind_delay_ms, smpp.failed_bind_max_delay_ms
                ),
            ));
        }

        check_secs("ussd.session_timeout_secs", self.ussd.session_timeout_secs, 1)?;
        check_secs("ussd.resume_secs", self.ussd.resume_secs, 0)?;
        check_range("ussd.max_dialogues", self.ussd.max_dialogues, 1, 10_000_000)?;
        check_range("ussd.max_inputs_per_dial", u64::from(self.ussd.max_inputs_per_dial), 0, 100)?;
        if self.ussd.service_code.trim().is_empty() {
            return Err(invalid("ussd.service_code", "must not be empty"));
        }
        check_range("api.max_body_bytes", self.api.max_body_bytes as u64, 1024, 16 * 1024 * 1024)?;
        check_range("api.rate_per_sec", u64::from(self.api.rate_per_sec), 1, 100_000)?;
        check_range("api.burst", u64::from(self.api.burst), 1, 100_000)?;
        let api = &self.api;
        check_range(
            "api.unauthenticated_rate_per_sec",
            u64::from(api.unauthenticated_rate_per_sec),
            1,
            100_000,
        )?;
        check_range("api.unauthenticated_burst", u64::from(api.unauthenticated_burst), 1, 100_000)?;
        let http = &self.http;
        check_secs("http.header_timeout_secs", http.header_timeout_secs, 1)?;
        check_secs("http.idle_timeout_secs", http.idle_timeout_secs, 1)?;
        check_secs("http.request_timeout_secs", http.request_timeout_secs, 1)?;
        check_secs("http.grace_secs", http.grace_secs, 0)?;
        check_range("http.max_connections", u64::from(http.max_connections), 1, 100_000)?;
        if http.ops_listen.is_some_and(|ops| ops == http.listen && ops.port() != 0) {
            return Err(invalid("http.ops_listen", "must differ from http.listen"));
        }
        Ok(())
    }

    fn validate_notify(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        if n.source_addr.is_empty() || n.source_addr.len() > 20 {
            return Err(invalid("notify.source_addr", "must be 1 to 20 characters"));
        }
        if let Some(d) = &n.default_smsc
            && !self.smsc.iter().any(|s| &s.name == d)
        {
            return Err(invalid("notify.default_smsc", format!("no [[smsc]] is named `{d}`")));
        }
        check_secs("notify.validity_secs", n.validity_secs, 1)?;
        check_secs("notify.lease_secs", n.lease_secs, 1)?;
        for (i, r) in n.retry.iter().enumerate() {
            if r.status_code().is_none() {
                return Err(invalid(
                    format!("notify.retry[{i}].status"),
                    format!("`{}` is not a status code", r.status),
                ));
            }
            check_ms(&format!("notify.retry[{i}].max_backoff_ms"), r.max_backoff_ms, 1)?;
            if r.backoff_ms == 0 || r.max_backoff_ms < r.backoff_ms {
                return Err(invalid(
                    format!("notify.retry[{i}]"),
                    "backoff_ms must be at least 1 and at most max_backoff_ms",
                ));
            }
        }
        Ok(())
    }

    fn validate_smsc(&self, i: usize, smsc: &SmscConfig) -> Result<(), ConfigError> {
        let key = format!("smsc[{i}]");
        if smsc.name.is_empty() {
            return Err(invalid(format!("{key}.name"), "must not be empty"));
        }
        if let Some(c) = smsc.name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{}` contains {c:?}; only letters, digits, `_` and `-` are allowed", smsc.name),
            ));
        }
        if let Some(j) = self.smsc[..i].iter().position(|other| other.name == smsc.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("duplicate name `{}` (also smsc[{j}])", smsc.name),
            ));
        }
        if smsc.host.trim().is_empty() {
            return Err(invalid(format!("{key}.host"), "must not be empty"));
        }
        if smsc.port == 0 {
            return Err(invalid(format!("{key}.port"), "must not be 0"));
        }
        check_octets(&format!("{key}.system_id"), &smsc.system_id, 1, MAX_SYSTEM_ID)?;
        check_octets(&format!("{key}.password"), smsc.password.expose(), 0, MAX_PASSWORD)?;
        check_octets(&format!("{key}.system_type"), &smsc.system_type, 0, MAX_SYSTEM_TYPE)?;
        check_window(&format!("{key}.window"), smsc.window)?;
        check_prefixes(&format!("{key}.route_prefixes"), &smsc.route_prefixes)?;
        check_prefixes(&format!("{key}.msisdn_prefixes"), &smsc.msisdn_prefixes)?;
        if !smsc.tls && (smsc.tls_ca.is_some() || smsc.tls_server_name.is_some()) {
            return Err(invalid(format!("{key}.tls"), "tls_ca and tls_server_name need tls = true"));
        }
        check_ms(&format!("{key}.reconnect_min_ms"), smsc.reconnect_min_ms, 1)?;
        check_ms(&format!("{key}.reconnect_max_ms"), smsc.reconnect_max_ms, 1)?;
        if smsc.reconnect_max_ms < smsc.reconnect_min_ms {
            return Err(invalid(
                format!("{key}.reconnect_max_ms"),
                format!(
                    "must be at least reconnect_min_ms ({}), got {}",
                    smsc.reconnect_min_ms, smsc.reconnect_max_ms
                ),
            ));
        }
        check_ms(&format!("{key}.connect_timeout_ms"), smsc.connect_timeout_ms, 1)?;
        Ok(())
    }
}

/// Checks a list of MSISDN prefixes: each a non-empty string of digits.
fn check_prefixes(key: &str, prefixes: &[String]) -> Result<(), ConfigError> {
    for (p, prefix) in prefixes.iter().enumerate() {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                format!("{key}[{p}]"),
                format!("`{prefix}` must be a non-empty string of digits"),
            ));
        }
        if let Some(rest) = prefix.strip_prefix('0') {
            return Err(invalid(
                format!("{key}[{p}]"),
                format!("`{prefix}`: numbers are compared in their international form; write it as 84{rest}"),
            ));
        }
    }
    Ok(())
}

/// Checks an SMPP C-Octet string: length in octets within `min..=max`, no NUL.
fn check_octets(key: &str, value: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(invalid(key, "must not contain a NUL character"));
    }
    let len = value.len();
    if len < min || len > max {
        let message = if min == 0 {
            format!("must be at most {max} octets (SMPP limit), got {len}")
        } else {
            format!("must be {min} to {max} octets (SMPP limit), got {len}")
        };
        return Err(invalid(key, message));
    }
    Ok(())
}

fn check_window(key: &str, window: u32) -> Result<(), ConfigError> {
    if window == 0 || window > MAX_WINDOW {
        return Err(invalid(key, format!("must be between 1 and {MAX_WINDOW}, got {window}")));
    }
    Ok(())
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(key, format!("must be between {min} and {max}, got {value}")));
    }
    Ok(())
}

/// The longest time any setting takes: a week (longer ones overflow the clock's arithmetic
/// long before they mean anything).
const MAX_SECS: u64 = 7 * 86_400;

/// A time in seconds, from `min` to [`MAX_SECS`].
fn check_secs(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    check_range(key, value, min, MAX_SECS)
}

/// A time in milliseconds, from `min` to [`MAX_SECS`] in milliseconds.
fn check_ms(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    check_range(key, value, min, MAX_SECS * 1000)
}

fn check_at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

/// A `sqlite:` URL whose file is a relative path, made relative to `base` (as sqlx reads
/// it: after `sqlite://` or `sqlite:`, up to `?`, percent-decoded); `None` for any other
/// URL (PostgreSQL, an absolute path, in memory, a `file:` URI).
fn sqlite_url_under(url: &str, base: &Path) -> Result<Option<String>, ConfigError> {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        return Ok(None);
    };
    let (file, params) = match rest.split_once('?') {
        Some((file, params)) => (file, Some(params)),
        None => (rest, None),
    };
    if file.is_empty() || file == ":memory:" || file.starts_with("file:") || Path::new(file).is_absolute() {
        return Ok(None);
    }
    let Some(base) = base.to_str() else {
        return Err(invalid(
            "database.url",
            format!(
                "the SQLite file is relative to the configuration's folder {}, which is not UTF-8: give an absolute path",
                base.display()
            ),
        ));
    };
    // The folder goes into the URL as sqlx will decode it.
    let mut encoded = String::with_capacity(base.len());
    for c in base.chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    let sep = if encoded.ends_with('/') { "" } else { "/" };
    let params = params.map(|p| format!("?{p}")).unwrap_or_default();
    Ok(Some(format!("sqlite://{encoded}{sep}{file}{params}")))
}

/// Hides a password in a URL (`scheme://user:pass@host` -> `scheme://user:***@host`).
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The `CHOGATE_` variables of the process environment; a non-UTF-8 one is an error,
/// other non-UTF-8 variables are skipped.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name_lossy = name.to_string_lossy();
        if !name_lossy.starts_with(ENV_PREFIX) {
            continue;
        }
        let name = name_lossy.into_owned();
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) => {
                return Err(ConfigError::Env { var: name, message: "value is not valid UTF-8".to_owned() });
            }
        }
    }
    Ok(vars)
}

/// One override that was applied: the variable and the key path it set.
struct AppliedOverride {
    var: String,
    key: String,
}

/// The variable that set `key` or one of its parents, if any.
fn override_for_key<'a>(applied: &'a [AppliedOverride], key: &str) -> Option<&'a str> {
    applied
        .iter()
        .rev()
        .find(|o| {
            key == o.key
                || key
                    .strip_prefix(o.key.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .map(|o| o.var.as_str())
}

/// Applies every `CHOGATE_A__B__C=value` variable to the table, in name order.
/// Variables without `__` after the prefix (like `CHOGATE_CONFIG`) are left to the CLI.
fn apply_env_overrides(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<AppliedOverride>, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.strip_prefix(ENV_PREFIX).is_some_and(|rest| rest.contains(ENV_SEPARATOR)))
        .collect();
    vars.sort();

    let mut applied = Vec::with_capacity(vars.len());
    for (var, raw) in vars {
        let rest = var.strip_prefix(ENV_PREFIX).unwrap_or_default();
        let segments: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment (use `__` only between keys)".to_owned(),
            });
        }
        match set_in_table(table, &segments, &raw, String::new()) {
            Ok(key) => applied.push(AppliedOverride { var, key }),
            Err(message) => return Err(ConfigError::Env { var, message }),
        }
    }
    Ok(applied)
}

/// Sets `segments` (non-empty) inside `table`; returns the key path that was set.
fn set_in_table(table: &mut Table, segments: &[String], raw: &str, parent: String) -> Result<String, String> {
    let Some((name, rest)) = segments.split_first() else {
        return Err("empty key".to_owned());
    };
    let key = if parent.is_empty() { name.clone() } else { format!("{parent}.{name}") };
    if rest.is_empty() {
        let value = override_value(raw, table.get(name));
        table.insert(name.clone(), value);
        return Ok(key);
    }
    if !table.contains_key(name) {
        if let Some(index) = rest.first().filter(|s| s.parse::<usize>().is_ok()) {
            return Err(format!("index {index} out of range: {key} is empty"));
        }
        table.insert(name.clone(), Value::Table(Table::new()));
    }
    match table.get_mut(name) {
        Some(child) => set_in_value(child, rest, raw, key),
        None => Err(format!("cannot create {key}")),
    }
}

/// Descends into `node` (a table or an array) along `segments` (non-empty).
fn set_in_value(node: &mut Value, segments: &[String], raw: &str, key: String) -> Result<String, String> {
    match node {
        Value::Table(table) => set_in_table(table, segments, raw, key),
        Value::Array(array) => {
            let Some((index, rest)) = segments.split_first() else {
                return Err("empty key".to_owned());
            };
            let Ok(i) = index.parse::<usize>() else {
                return Err(format!("{key} is an array: `{index}` must be a numeric index"));
            };
            let len = array.len();
            let item_key = format!("{key}[{i}]");
            let Some(item) = array.get_mut(i) else {
                return Err(format!(
                    "index {i} out of range: {key} has {len} element{}",
                    if len == 1 { "" } else { "s" }
                ));
            };
            if rest.is_empty() {
                *item = override_value(raw, Some(item));
                Ok(item_key)
            } else {
                set_in_value(item, rest, raw, item_key)
            }
        }
        other => Err(format!("{key} is a {}, not a table or array", other.type_str())),
    }
}

/// The TOML value for an override: an integer, float, boolean or array if the text
/// parses as one, otherwise a string. A key that the file already sets to a string
/// stays a string, so `CHOGATE_SMSC__0__PASSWORD=1234` keeps a numeric password textual.
fn override_value(raw: &str, existing: Option<&Value>) -> Value {
    if matches!(existing, Some(Value::String(_))) {
        return Value::String(raw.to_owned());
    }
    match raw.trim().parse::<Value>() {
        Ok(value @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_))) => value,
        _ => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[database]
url = "sqlite://chogate.db"
[http]
listen = "127.0.0.1:8080"
[smpp_server]
listen = "127.0.0.1:2775"
[[smpp_server.accounts]]
system_id = "ussdc"
password = "secret1"
[[smsc]]
name = "viettel"
host = "127.0.0.1"
port = 2776
system_id = "gw"
password = "secret"
bind = "transceiver"
window = 50
tps = 0
route_prefixes = ["8486", "8496"]
"#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml", no_env())
    }

    fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml", env(pairs))
    }

    fn invalid_key(result: Result<Config, ConfigError>) -> (String, String) {
        match result {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn env_error(result: Result<Config, ConfigError>) -> (String, String) {
        match result {
            Err(ConfigError::Env { var, message }) => (var, message),
            other => panic!("expected Env, got {other:?}"),
        }
    }

    fn smsc(name: &str, prefixes: &[&str]) -> String {
        let prefixes: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "[[smsc]]\nname = \"{name}\"\nhost = \"h\"\nport = 1\nsystem_id = \"gw\"\n\
             password = \"pw\"\nroute_prefixes = [{}]\n",
            prefixes.join(", ")
        )
    }

    #[test]
    fn example_should_parse() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.database.url, "sqlite://chogate.db");
        assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.smpp_server.listen, "127.0.0.1:2775".parse().unwrap());
        let account = &config.smpp_server.accounts[0];
        assert_eq!(account.system_id, "ussdc");
        assert_eq!(account.password.expose(), "secret1");
        assert_eq!(account.max_binds, 8);
        assert_eq!(account.window, 50);
        assert_eq!(account.reply_pdu, ReplyPdu::DeliverSm);
        assert_eq!(account.dialogue_key, DialogueKey::ItsSessionInfo);
        assert_eq!(account.text_mode, TextMode::Ucs2);
        let smsc = &config.smsc[0];
        assert_eq!(smsc.name, "viettel");
        assert_eq!(smsc.port, 2776);
        assert_eq!(smsc.password, Secret::new("secret"));
        assert_eq!(smsc.bind, BindMode::Transceiver);
        assert_eq!(smsc.route_prefixes, ["8486", "8496"]);
        assert_eq!(smsc.system_type, "");
        assert_eq!(smsc.reconnect_min(), Duration::from_secs(1));
        assert_eq!(smsc.reconnect_max(), Duration::from_secs(60));
        assert_eq!(smsc.connect_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn empty_file_should_give_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.database.url, "sqlite://chogate.db");
        assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.smpp_server.listen, "127.0.0.1:2775".parse().unwrap());
        assert!(config.smpp_server.accounts.is_empty());
        assert!(config.smsc.is_empty());
        assert_eq!(config.smpp.enquire_link(), Duration::from_secs(30));
        assert_eq!(config.smpp.response_timeout(), Duration::from_secs(10));
        assert_eq!(config.smpp.bind_timeout(), Duration::from_secs(10));
        assert_eq!(config.smpp.drain_timeout(), Duration::from_secs(5));
        assert_eq!(config.smpp.max_pdu_len, 65_536);
        assert_eq!(config.smpp.inbound_window, 1000);
        assert_eq!(config.smpp.failed_bind_delay(), Duration::from_millis(500));
        assert_eq!(config.smpp.failed_bind_max_delay(), Duration::from_secs(10));
        assert_eq!(config.ussd.session_timeout(), Duration::from_secs(120));
        assert_eq!(config.ussd.resume(), Duration::from_secs(300));
        assert_eq!(config.ussd.service_code, "*384#");
        assert_eq!(config.ussd.max_inputs_per_dial, 16);
        assert_eq!(config.log.filter, "info");
        assert_eq!(config.log.format, LogFormat::Text);
        // The Default impls agree with the serde defaults.
        let default = Config::default();
        assert_eq!(default.database.url, config.database.url);
        assert_eq!(default.smpp.max_pdu_len, config.smpp.max_pdu_len);
        assert_eq!(default.ussd.service_code, config.ussd.service_code);
        default.validate().unwrap();
    }

    #[test]
    fn all_enum_spellings_should_parse() {
        let text = "[[smpp_server.accounts]]\nsystem_id = \"a\"\npassword = \"\"\n\
                    reply_pdu = \"data_sm\"\ndialogue_key = \"user_message_reference\"\n\
                    text_mode = \"gsm\"\n\
                    [[smpp_server.accounts]]\nsystem_id = \"b\"\npassword = \"\"\n\
                    reply_pdu = \"submit_sm\"\ndialogue_key = \"msisdn\"\n\
                    [log]\nformat = \"json\"\n";
        let text = format!("{text}{}bind = \"transmitter+receiver\"\n", smsc("s", &[]));
        let config = parse(&text).unwrap();
        let a = &config.smpp_server.accounts;
        assert_eq!(a[0].reply_pdu, ReplyPdu::DataSm);
        assert_eq!(a[0].dialogue_key, DialogueKey::UserMessageReference);
        assert_eq!(a[0].text_mode, TextMode::Gsm);
        assert_eq!(a[1].reply_pdu, ReplyPdu::SubmitSm);
        assert_eq!(a[1].dialogue_key, DialogueKey::Msisdn);
        assert_eq!(config.smsc[0].bind, BindMode::TransmitterReceiver);
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn syntax_error_should_report_line_and_column() {
        let err = parse("[http]\nlisten = \n").unwrap_err();
        let ConfigError::Parse { path, message } = &err else {
            panic!("expected Parse, got {err:?}");
        };
        assert_eq!(path, "test.toml");
        assert!(message.contains("line 2"), "{message}");
        assert!(err.to_string().starts_with("test.toml: "), "{err}");
    }

    #[test]
    fn unknown_top_level_key_should_be_rejected_naming_it() {
        let (key, message) = invalid_key(parse("databse = 1\n"));
        assert!(key.contains("databse") || message.contains("databse"), "{key}: {message}");
    }

    #[test]
    fn unknown_nested_key_should_be_rejected_naming_it() {
        let (key, message) = invalid_key(parse("[http]\nlisen = \"127.0.0.1:1\"\n"));
        assert!(key.starts_with("http"), "{key}: {message}");
        assert!(message.contains("lisen"), "{key}: {message}");
        let text = format!("{EXAMPLE}colour = \"blue\"\n");
        let (key, message) = invalid_key(parse(&text));
        assert!(key.starts_with("smsc[0]"), "{key}: {message}");
        assert!(message.contains("colour"), "{key}: {message}");
    }

    #[test]
    fn bad_enum_value_should_be_named() {
        let text = EXAMPLE.replace("bind = \"transceiver\"", "bind = \"trx\"");
        let (key, message) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].bind");
        assert!(message.contains("trx"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn wrong_type_should_name_the_key() {
        let text = EXAMPLE.replace("port = 2776", "port = \"x\"");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].port");
        let text = EXAMPLE.replace("port = 2776", "port = 70000");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].port");
        let (key, _) = invalid_key(parse("[http]\nlisten = \"nowhere\"\n"));
        assert_eq!(key, "http.listen");
    }

    #[test]
    fn missing_required_key_should_be_reported() {
        let text = EXAMPLE.replace("host = \"127.0.0.1\"\n", "");
        let (key, message) = invalid_key(parse(&text));
        assert!(key.starts_with("smsc[0]"), "{key}: {message}");
        assert!(message.contains("host"), "{key}: {message}");
    }

    #[test]
    fn env_override_should_set_nested_key() {
        let config = parse_env(EXAMPLE, &[("CHOGATE_DATABASE__URL", "postgres://db/chogate")]).unwrap();
        assert_eq!(config.database.url, "postgres://db/chogate");
    }

    #[test]
    fn env_override_should_create_missing_tables() {
        let config = parse_env(
            "",
            &[
                ("CHOGATE_LOG__FILTER", "debug,chogate=trace"),
                ("CHOGATE_USSD__SERVICE_CODE", "*123#"),
                ("CHOGATE_HTTP__LISTEN", "0.0.0.0:9000"),
            ],
        )
        .unwrap();
        assert_eq!(config.log.filter, "debug,chogate=trace");
        assert_eq!(config.ussd.service_code, "*123#");
        assert_eq!(config.http.listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn env_override_should_set_a_number() {
        let config = parse_env("", &[("CHOGATE_SMPP__ENQUIRE_LINK_SECS", "5")]).unwrap();
        assert_eq!(config.smpp.enquire_link_secs, 5);
    }

    #[test]
    fn env_override_should_set_array_element() {
        let config = parse_env(
            EXAMPLE,
            &[
                ("CHOGATE_SMSC__0__PASSWORD", "newpw"),
                ("CHOGATE_SMSC__0__PORT", "2999"),
                ("CHOGATE_SMPP_SERVER__ACCOUNTS__0__MAX_BINDS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(config.smsc[0].password.expose(), "newpw");
        assert_eq!(config.smsc[0].port, 2999);
        assert_eq!(config.smpp_server.accounts[0].max_binds, 3);
    }

    #[test]
    fn env_override_of_a_string_key_should_stay_a_string() {
        let config = parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__PASSWORD", "12345678")]).unwrap();
        assert_eq!(config.smsc[0].password.expose(), "12345678");
    }

    #[test]
    fn env_override_should_set_an_array() {
        let config =
            parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__ROUTE_PREFIXES", r#"["8432", "8433"]"#)]).unwrap();
        assert_eq!(config.smsc[0].route_prefixes, ["8432", "8433"]);
    }

    #[test]
    fn env_override_index_out_of_range_should_be_an_error() {
        let (var, message) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMSC__1__PORT", "1")]));
        assert_eq!(var, "CHOGATE_SMSC__1__PORT");
        assert!(message.contains("out of range"), "{message}");
        let (var, message) = env_error(parse_env("", &[("CHOGATE_SMSC__0__PORT", "1")]));
        assert_eq!(var, "CHOGATE_SMSC__0__PORT");
        assert!(message.contains("out of range"), "{message}");
    }

    #[test]
    fn env_override_of_unknown_key_should_be_rejected() {
        let (key, message) = invalid_key(parse_env(EXAMPLE, &[("CHOGATE_HTTP__LISEN", "x")]));
        assert!(key.starts_with("http"), "{key}: {message}");
        assert!(message.contains("lisen"), "{key}: {message}");
    }

    #[test]
    fn env_override_with_bad_value_should_name_the_variable() {
        let (key, message) = invalid_key(parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__PORT", "abc")]));
        assert_eq!(key, "smsc[0].port");
        assert!(message.contains("CHOGATE_SMSC__0__PORT"), "{message}");
    }

    #[test]
    fn env_override_into_a_scalar_should_be_an_error() {
        let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_DATABASE__URL__X", "1")]));
        assert_eq!(var, "CHOGATE_DATABASE__URL__X");
        let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMSC__X__PORT", "1")]));
        assert_eq!(var, "CHOGATE_SMSC__X__PORT");
        let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMPP____WINDOW", "1")]));
        assert_eq!(var, "CHOGATE_SMPP____WINDOW");
    }

    #[test]
    fn env_without_double_underscore_should_be_ignored() {
        let config = parse_env(
            EXAMPLE,
            &[("CHOGATE_CONFIG", "/etc/chogate.toml"), ("CHOGATE_LOG", "debug"), ("OTHER__THING", "1")],
        )
        .unwrap();
        assert_eq!(config.log.filter, "info");
    }

    #[test]
    fn duplicate_system_id_should_be_rejected() {
        let text = format!("{EXAMPLE}[[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"x\"\n");
        let (key, message) = invalid_key(parse(&text));
        assert_eq!(key, "smpp_server.accounts[1].system_id");
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn too_long_system_id_should_be_rejected() {
        let text = EXAMPLE.replace("system_id = \"ussdc\"", "system_id = \"abcdefghijklmnop\"");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smpp_server.accounts[0].system_id");
        let text = EXAMPLE.replace("system_id = \"gw\"", "system_id = \"\"");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].system_id");
        let text = EXAMPLE.replace("system_id = \"ussdc\"", "system_id = \"abcdefghijklmno\"");
        parse(&text).unwrap();
    }

    #[test]
    fn too_long_password_should_be_rejected() {
        let text = EXAMPLE.replace("password = \"secret1\"", "password = \"123456789\"");
        let (key, message) = invalid_key(parse(&text));
        assert_eq!(key, "smpp_server.accounts[0].password");
        assert!(!message.contains("123456789"), "{message}");
    }

    #[test]
    fn port_zero_should_be_rejected() {
        let text = EXAMPLE.replace("port = 2776", "port = 0");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].port");
    }

    #[test]
    fn non_digit_prefix_should_be_rejected() {
        let text = EXAMPLE.replace("\"8496\"", "\"84x6\"");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].route_prefixes[1]");
        let text = EXAMPLE.replace("\"8496\"", "\"\"");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].route_prefixes[1]");
    }

    #[test]
    fn bad_database_url_should_be_rejected() {
        let text = EXAMPLE.replace("sqlite://chogate.db", "mysql://u:hunter2@h/db");
        let (key, message) = invalid_key(parse(&text));
        assert_eq!(key, "database.url");
        assert!(!message.contains("hunter2"), "{message}");
        for ok in ["sqlite::memory:", "postgres://h/db", "postgresql://u:p@h/db"] {
            let text = EXAMPLE.replace("sqlite://chogate.db", ok);
            parse(&text).unwrap();
        }
    }

    #[test]
    fn database_tuning_should_default_and_be_range_checked() {
        let config = parse("").unwrap();
        assert_eq!(config.database.read_pool, 4);
        assert_eq!(config.database.write_batch, 256);
        assert_eq!(config.database.write_queue, 4096);
        assert_eq!(config.database.sqlite_synchronous, SqliteSynchronous::Full);
        assert_eq!(config.database.busy_timeout(), Duration::from_secs(5));
        let config = parse("[database]\nsqlite_synchronous = \"normal\"\nwrite_batch = 10\n").unwrap();
        assert_eq!(config.database.sqlite_synchronous, SqliteSynchronous::Normal);
        assert_eq!(config.database.write_batch, 10);
        let cases = [
            ("[database]\nread_pool = 0\n", "database.read_pool"),
            ("[database]\nread_pool = 65\n", "database.read_pool"),
            ("[database]\nwrite_batch = 0\n", "database.write_batch"),
            ("[database]\nwrite_queue = 0\n", "database.write_queue"),
            ("[database]\nbusy_timeout_ms = 0\n", "database.busy_timeout_ms"),
            ("[database]\nsqlite_synchronous = \"off\"\n", "database.sqlite_synchronous"),
        ];
        for (text, expected) in cases {
            let (key, _) = invalid_key(parse(text));
            assert_eq!(key, expected, "{text}");
        }
    }

    #[test]
    fn window_zero_should_be_rejected() {
        let text = EXAMPLE.replace("window = 50", "window = 0");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].window");
        let text = EXAMPLE.replace("window = 50", "window = 10001");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[0].window");
        let text = EXAMPLE.replace("password = \"secret1\"", "password = \"s\"\nwindow = 0");
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smpp_server.accounts[0].window");
    }

    #[test]
    fn other_ranges_should_be_checked() {
        let cases = [
            ("[smpp]\nmax_pdu_len = 63\n", "smpp.max_pdu_len"),
            ("[smpp]\nmax_pdu_len = 1048577\n", "smpp.max_pdu_len"),
            ("[smpp]\nenquire_link_secs = 0\n", "smpp.enquire_link_secs"),
            ("[smpp]\nresponse_timeout_secs = 0\n", "smpp.response_timeout_secs"),
            ("[smpp]\nbind_timeout_secs = 0\n", "smpp.bind_timeout_secs"),
            ("[smpp]\nresponse_timeout_secs = 9223372036854775807\n", "smpp.response_timeout_secs"),
            ("[smpp]\ndrain_timeout_secs = 9000000000\n", "smpp.drain_timeout_secs"),
            ("[ussd]\nresume_secs = 9000000000\n", "ussd.resume_secs"),
            ("[smpp]\ninbound_window = 0\n", "smpp.inbound_window"),
            ("[ussd]\nsession_timeout_secs = 0\n", "ussd.session_timeout_secs"),
            ("[ussd]\nmax_inputs_per_dial = 101\n", "ussd.max_inputs_per_dial"),
        ];
        for (text, expected) in cases {
            let (key, _) = invalid_key(parse(text));
            assert_eq!(key, expected, "{text}");
        }
        let smsc_cases = [
            ("reconnect_min_ms = 0\n", "smsc[0].reconnect_min_ms"),
            ("reconnect_max_ms = 999\n", "smsc[0].reconnect_max_ms"),
            ("connect_timeout_ms = 0\n", "smsc[0].connect_timeout_ms"),
            ("system_type = \"abcdefghijklm\"\n", "smsc[0].system_type"),
        ];
        for (extra, expected) in smsc_cases {
            let text = format!("{}{extra}", smsc("s", &[]));
            let (key, _) = invalid_key(parse(&text));
            assert_eq!(key, expected, "{extra}");
        }
        let text = format!("{}{}", smsc("a", &[]), smsc("a", &[]));
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, "smsc[1].name");
        let (key, _) = invalid_key(parse(&smsc("bad name", &[])));
        assert_eq!(key, "smsc[0].name");
        let (key, _) = invalid_key(parse(&smsc("", &[])));
        assert_eq!(key, "smsc[0].name");
    }

    #[test]
    fn hardening_settings_should_default_and_be_range_checked() {
        let c = parse("").unwrap();
        let h = &c.http;
        assert_eq!(
            (h.ops_listen, h.header_timeout_secs, h.idle_timeout_secs, h.request_timeout_secs),
            (None, 10, 60, 30)
        );
        assert_eq!((h.max_connections, h.grace_secs), (512, 10));
        assert_eq!((c.api.unauthenticated_rate_per_sec, c.api.unauthenticated_burst), (5, 50));
        assert_eq!((c.database.retention_days, c.security.pin_pepper_file.clone()), (30, None));
        let c = parse(
            "[http]\nops_listen = \"127.0.0.1:9090\"\n[security]\npin_pepper_file = \"/etc/chogate/pepper\"\n",
        )
        .unwrap();
        assert_eq!(c.http.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.security.pin_pepper_file, Some(PathBuf::from("/etc/chogate/pepper")));
        for (text, expected) in [
            ("[http]\nheader_timeout_secs = 0\n", "http.header_timeout_secs"),
            ("[http]\nidle_timeout_secs = 0\n", "http.idle_timeout_secs"),
            ("[http]\nrequest_timeout_secs = 0\n", "http.request_timeout_secs"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[http]\ngrace_secs = 9000000000\n", "http.grace_secs"),
            ("[http]\nlisten = \"127.0.0.1:80\"\nops_listen = \"127.0.0.1:80\"\n", "http.ops_listen"),
            ("[api]\nunauthenticated_burst = 0\n", "api.unauthenticated_burst"),
            ("[database]\nretention_days = 0\n", "database.retention_days"),
            ("[security]\npepper = \"x\"\n", "security"),
        ] {
            let (key, _) = invalid_key(parse(text));
            assert!(key.starts_with(expected), "{text}: {key}");
        }
    }

    #[test]
    fn debug_should_not_show_passwords() {
        let mut config = parse(EXAMPLE).unwrap();
        config.database.url = "postgres://chogate:dbpass@db.local/chogate".into();
        let debug = format!("{config:?}");
        assert!(!debug.contains("dbpass") && debug.contains("chogate:***@db.local"), "{debug}");
        assert!(!debug.contains("secret1"), "{debug}");
        assert!(!debug.contains("\"secret\""), "{debug}");
        assert!(debug.contains("Secret(***)"), "{debug}");
        assert_eq!(format!("{}", Secret::new("x")), "***");
    }

    #[test]
    fn load_should_report_unreadable_file() {
        let err = Config::load(Path::new("/nonexistent/chogate.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/chogate.toml"), "{err}");
    }

    fn load_in(dir: &Path, text: &str, pairs: &[(&str, &str)]) -> Config {
        Config::parse(text, "test.toml", Some(dir), env(pairs)).unwrap()
    }

    #[test]
    fn relative_paths_of_a_file_should_be_its_folders() {
        let etc = Path::new("/etc/chogate");
        let c =
            load_in(etc, "[database]\nurl = \"sqlite://chogate.db\"\n[ussd]\nmenus_dir = \"menus\"\n", &[]);
        assert_eq!(c.database.url, "sqlite:///etc/chogate/chogate.db");
        assert_eq!(c.ussd.menus_dir, Some(PathBuf::from("/etc/chogate/menus")));
        // The default is as if written in the file; no menus_dir: the built-in menus.
        let c = load_in(etc, "", &[]);
        assert_eq!(c.database.url, "sqlite:///etc/chogate/chogate.db");
        assert_eq!(c.ussd.menus_dir, None);
        for (url, resolved) in [
            ("sqlite:state/x.db?mode=rwc", "sqlite:///etc/chogate/state/x.db?mode=rwc"),
            ("sqlite://./x.db", "sqlite:///etc/chogate/./x.db"),
            ("sqlite:///var/lib/chogate/x.db", "sqlite:///var/lib/chogate/x.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgres://chogate@db/chogate", "postgres://chogate@db/chogate"),
        ] {
            let c = load_in(etc, &format!("[database]\nurl = \"{url}\"\n"), &[]);
            assert_eq!(c.database.url, resolved, "{url}");
        }
        // A folder with characters a URL gives meaning to.
        let c = load_in(Path::new("/srv/a%b?c#d"), "", &[]);
        assert_eq!(c.database.url, "sqlite:///srv/a%25b%3Fc%23d/chogate.db");
        // The environment's paths are the working directory's.
        let c = load_in(
            etc,
            "[database]\nurl = \"sqlite://chogate.db\"\n",
            &[("CHOGATE_DATABASE__URL", "sqlite://env.db"), ("CHOGATE_USSD__MENUS_DIR", "m")],
        );
        assert_eq!(c.database.url, "sqlite://env.db");
        assert_eq!(c.ussd.menus_dir, Some(PathBuf::from("m")));
        // The TLS files too.
        let c = load_in(
            etc,
            "[smpp_server]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/k.pem\"\n\
             [[smsc]]\nname = \"a\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\ntls = true\n\
             tls_ca = \"ca.pem\"\n",
            &[],
        );
        assert_eq!(c.smpp_server.tls_cert, Some(PathBuf::from("/etc/chogate/tls/cert.pem")));
        assert_eq!(c.smpp_server.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.smsc[0].tls_ca, Some(PathBuf::from("/etc/chogate/ca.pem")));
        // Text alone (no file): as written.
        assert_eq!(parse("[ussd]\nmenus_dir = \"m\"\n").unwrap().ussd.menus_dir, Some(PathBuf::from("m")));
    }

    #[test]
    fn load_should_take_relative_paths_from_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chogate.toml");
        std::fs::write(&path, "[ussd]\nmenus_dir = \"menus\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.ussd.menus_dir, Some(dir.path().join("menus")));
    }

    #[test]
    fn redact_url_should_hide_password() {
        assert_eq!(redact_url("mysql://u:pw@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact_url("mysql://h/db"), "mysql://h/db");
        assert_eq!(redact_url("junk"), "junk");
    }
}
