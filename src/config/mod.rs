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

mod env;
mod smpp;
mod validate;

use smpp::default_ten_secs;
pub use smpp::{
    BindMode, Cidr, DialogueKey, ReceiptIds, ReplyPdu, ServerAccount, SmppServerConfig, SmppTuning,
    SmscConfig, TextMode,
};

use env::{apply_env_overrides, override_for_key, process_env};

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

#[cfg(test)]
mod tests;
