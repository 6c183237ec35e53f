//! The SMPP settings: `[smpp_server]` and its accounts, `[[smsc]]`, `[smpp]`, and the
//! address blocks accounts may bind from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

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

pub(super) fn default_ten_secs() -> u64 {
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
