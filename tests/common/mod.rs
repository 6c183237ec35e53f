//! Test harness: starts the real daemon on port 0 and talks SMPP to it over real TCP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
pub mod child;
pub mod db;
pub mod fixture;
pub mod pg;

use chogate::config::Config;
use chogate::daemon::Daemon;
use chogate::smpp::frame::{Frame, FrameReader};
use chogate::smpp::pdu::{Bind, BindKind, Body, Pdu};
use chogate::smpp::status;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

/// A safety net for waits on events that should come: a hang fails the test instead of
/// blocking CI. Never used to let time pass.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A new SQLite file for each daemon, in a directory that lives as long as the test binary.
pub fn fresh_db_path() -> std::path::PathBuf {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::Builder::new().prefix("chogate-test").tempdir().unwrap());
    dir.path().join(format!("t{}.db", N.fetch_add(1, Ordering::Relaxed)))
}

pub const ACCOUNT: &str = "ussdc";
pub const PASSWORD: &str = "secret1";

/// A configuration with listeners on port 0 and two server accounts; `extra` is appended.
pub fn base_config(extra: &str) -> Config {
    base_config_with("", extra)
}

/// Like [`base_config`], with lines for the `[smpp]` table (a short drain by default).
pub fn base_config_with(smpp: &str, extra: &str) -> Config {
    let drain = if smpp.contains("drain_timeout_secs") { "" } else { "drain_timeout_secs = 1" };
    let db = fresh_db_path();
    let db = db.display();
    let text = format!(
        r#"
[database]
url = "sqlite://{db}"
[http]
listen = "127.0.0.1:0"
[smpp_server]
listen = "127.0.0.1:0"
[[smpp_server.accounts]]
system_id = "{ACCOUNT}"
password = "{PASSWORD}"
window = 10
[[smpp_server.accounts]]
system_id = "other"
password = "pw2"
[smpp]
{drain}
{smpp}
{extra}
"#
    );
    Config::from_toml_str(&text, "test", Vec::new()).unwrap()
}

pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub smpp: SocketAddr,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
}

impl TestDaemon {
    pub async fn start(config: Config) -> TestDaemon {
        init_logs();
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(config, shutdown.clone()).await.unwrap();
        TestDaemon { smpp: daemon.smpp_addr, http: daemon.http_addr, daemon: Some(daemon), shutdown }
    }

    /// Stops the daemon and waits until every task has finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(d) = self.daemon.take() {
            tokio::time::timeout(PATIENCE, d.wait()).await.expect("daemon did not stop");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A raw SMPP peer built on chogate's codec, for driving the daemon PDU by PDU.
pub struct Peer {
    pub reader: FrameReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub seq: u32,
}

impl Peer {
    pub async fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).await.unwrap();
        Peer::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Peer {
        stream.set_nodelay(true).unwrap();
        let (r, w) = stream.into_split();
        Peer { reader: FrameReader::new(r, 1 << 20), writer: w, seq: 0 }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub async fn send(&mut self, pdu: &Pdu) {
        let bytes = pdu.to_bytes().unwrap();
        self.writer.write_all(&bytes).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Sends a request with the next sequence number; returns that number.
    pub async fn request(&mut self, body: Body) -> u32 {
        let seq = self.next_seq();
        self.send(&Pdu::new(seq, body)).await;
        seq
    }

    /// The next PDU, or None when the connection closed.
    pub async fn recv(&mut self) -> Option<Pdu> {
        let frame = tokio::time::timeout(PATIENCE, self.reader.next()).await.expect("no PDU in time");
        match frame {
            Ok(Some(Frame::Pdu(bytes))) => Some(Pdu::decode(&bytes).unwrap()),
            Ok(Some(Frame::Oversized(h))) => panic!("oversized PDU from daemon: {h:?}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next PDU that is not an enquire_link (which is answered on the way).
    pub async fn recv_skip_enquire(&mut self) -> Option<Pdu> {
        loop {
            let pdu = self.recv().await?;
            if pdu.body == Body::EnquireLink {
                self.send(&Pdu::new(pdu.sequence, Body::EnquireLinkResp)).await;
                continue;
            }
            return Some(pdu);
        }
    }

    /// Waits until the daemon closes the connection.
    pub async fn expect_closed(&mut self) {
        loop {
            if self.recv().await.is_none() {
                return;
            }
        }
    }

    pub async fn bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> Pdu {
        let seq = self.request(Body::Bind(Bind::new(kind, system_id, password))).await;
        let resp = self.recv().await.expect("connection closed before bind_resp");
        assert_eq!(resp.sequence, seq);
        resp
    }

    /// Connects and binds as a transceiver with the test account.
    pub async fn bound(addr: SocketAddr) -> Peer {
        let mut p = Peer::connect(addr).await;
        let resp = p.bind(BindKind::Transceiver, ACCOUNT, PASSWORD).await;
        assert_eq!(resp.status, status::ESME_ROK, "bind failed: {resp:?}");
        p
    }

    /// Whether nothing has come from the daemon so far: one look at what the socket holds,
    /// without waiting.
    pub fn nothing_buffered(&mut self) -> bool {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        if !matches!(self.reader.buffered(), Ok(None)) {
            return false;
        }
        let next = std::pin::pin!(self.reader.next());
        matches!(next.poll(&mut Context::from_waker(Waker::noop())), Poll::Pending)
    }

    /// enquire_link round trip: proves the session is alive and in sync.
    pub async fn ping(&mut self) {
        let seq = self.request(Body::EnquireLink).await;
        let resp = self.recv_skip_enquire().await.expect("closed");
        assert_eq!((resp.sequence, &resp.body, resp.status), (seq, &Body::EnquireLinkResp, 0));
    }
}

/// Builds a raw PDU: header plus body octets; `len` overrides command_length.
pub fn raw_pdu(command_id: u32, seq: u32, body: &[u8], len: Option<u32>) -> Bytes {
    let mut b = BytesMut::new();
    let l = len.unwrap_or(16 + body.len() as u32);
    b.extend_from_slice(&l.to_be_bytes());
    b.extend_from_slice(&command_id.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(body);
    b.freeze()
}

/// A screen chogate sent to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub text: String,
    /// ussd_service_op: 2 expects input, 17 final.
    pub op: u8,
    pub its_session: Option<[u8; 2]>,
    pub umr: Option<u16>,
    pub data_coding: u8,
    /// The PDU family it came in.
    pub command: &'static str,
    pub dest: String,
}

impl Screen {
    pub fn is_final(&self) -> bool {
        self.op == 17
    }
}

/// The fields of a USSD message PDU, whatever its family.
pub fn ussd_fields(pdu: &Pdu) -> Option<Screen> {
    use chogate::smpp::pdu::tag;
    let (dc, payload, tlvs, command, dest) = match &pdu.body {
        Body::DeliverSm(sm) => {
            (sm.data_coding, sm.payload().clone(), &sm.tlvs, "deliver_sm", sm.dest.addr.clone())
        }
        Body::SubmitSm(sm) => {
            (sm.data_coding, sm.payload().clone(), &sm.tlvs, "submit_sm", sm.dest.addr.clone())
        }
        Body::DataSm(d) => (
            d.data_coding,
            d.tlvs.get(tag::MESSAGE_PAYLOAD).cloned().unwrap_or_default(),
            &d.tlvs,
            "data_sm",
            d.dest.addr.clone(),
        ),
        _ => return None,
    };
    Some(Screen {
        text: chogate::text::decode_short_message(dc, &payload),
        op: tlvs.get_u8(tag::USSD_SERVICE_OP)?,
        its_session: tlvs.get(tag::ITS_SESSION_INFO).map(|v| [v[0], v[1]]),
        umr: tlvs.get_u16(tag::USER_MESSAGE_REFERENCE),
        data_coding: dc,
        command,
        dest,
    })
}

/// How a test USSD centre sends the subscriber's side (named after the PDUs).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    DeliverSm,
    SubmitSm,
    DataSm,
}

/// Builds a subscriber PDU body: `op` 1 dial, 18 answer, 0x81 abort.
pub fn subscriber_pdu(
    family: Family,
    msisdn: &str,
    text: &str,
    op: u8,
    session: Option<u8>,
    umr: Option<u16>,
) -> Body {
    use chogate::smpp::pdu::{Address, DataSm, Sm, tag};
    let enc = chogate::text::encode_text(text, true);
    let mut tlvs = chogate::smpp::pdu::Tlvs::default();
    tlvs.set(tag::USSD_SERVICE_OP, vec![op]);
    if let Some(n) = session {
        tlvs.set(tag::ITS_SESSION_INFO, vec![n, 0]);
    }
    if let Some(u) = umr {
        tlvs.set(tag::USER_MESSAGE_REFERENCE, u.to_be_bytes().to_vec());
    }
    let source = Address::international(msisdn);
    let dest = Address { ton: 0, npi: 1, addr: "*384#".into() };
    match family {
        Family::DataSm => {
            tlvs.set(tag::MESSAGE_PAYLOAD, enc.bytes);
            Body::DataSm(Box::new(DataSm {
                service_type: "USSD".into(),
                source,
                dest,
                data_coding: enc.encoding.data_coding(),
                tlvs,
                ..DataSm::default()
            }))
        }
        Family::DeliverSm | Family::SubmitSm => {
            let sm = Box::new(Sm {
                service_type: "USSD".into(),
                source,
                dest,
                data_coding: enc.encoding.data_coding(),
                short_message: enc.bytes.into(),
                tlvs,
                ..Sm::default()
            });
            if family == Family::DeliverSm { Body::DeliverSm(sm) } else { Body::SubmitSm(sm) }
        }
    }
}

/// A USSD centre bound to chogate's server role, driving one subscriber at a time.
pub struct Ussdc {
    pub peer: Peer,
    pub family: Family,
}

impl Ussdc {
    pub async fn bind(addr: SocketAddr, family: Family) -> Ussdc {
        Ussdc { peer: Peer::bound(addr).await, family }
    }

    /// Bound as another server account (`system_id`, `password`).
    pub async fn bind_as(addr: SocketAddr, system_id: &str, password: &str, family: Family) -> Ussdc {
        let mut peer = Peer::connect(addr).await;
        assert_eq!(peer.bind(BindKind::Transceiver, system_id, password).await.status, 0);
        Ussdc { peer, family }
    }

    /// Sends one subscriber PDU, checks its response, and returns the screen that follows
    /// (answering it with status 0).
    pub async fn send(
        &mut self,
        msisdn: &str,
        text: &str,
        op: u8,
        session: Option<u8>,
        umr: Option<u16>,
    ) -> Screen {
        let body = subscriber_pdu(self.family, msisdn, text, op, session, umr);
        let seq = self.peer.request(body).await;
        let mut got_resp = false;
        loop {
            let pdu = self.peer.recv_skip_enquire().await.expect("connection closed");
            if pdu.is_response() {
                assert_eq!((pdu.sequence, pdu.status), (seq, 0), "response to the subscriber PDU: {pdu:?}");
                got_resp = true;
                continue;
            }
            let screen = ussd_fields(&pdu).unwrap_or_else(|| panic!("not a USSD screen: {pdu:?}"));
            let resp = chogate::smpp::pdu::empty_response(pdu.command_id()).unwrap();
            self.peer.send(&Pdu::new(pdu.sequence, resp)).await;
            assert!(got_resp, "screen before the response to the subscriber's PDU");
            return screen;
        }
    }

    pub async fn dial(&mut self, msisdn: &str, session: u8) -> Screen {
        self.send(msisdn, "*384#", 1, Some(session), None).await
    }

    pub async fn answer(&mut self, msisdn: &str, session: u8, text: &str) -> Screen {
        self.send(msisdn, text, 18, Some(session), None).await
    }

    /// Dials, then answers each input; returns every screen (the first is the dial's).
    pub async fn run(&mut self, msisdn: &str, session: u8, inputs: &[&str]) -> Vec<Screen> {
        let mut screens = vec![self.dial(msisdn, session).await];
        for i in inputs {
            screens.push(self.answer(msisdn, session, i).await);
        }
        screens
    }

    /// Sends a user abort; the gateway answers it and sends nothing more.
    pub async fn abort(&mut self, msisdn: &str, session: u8) {
        let body = subscriber_pdu(self.family, msisdn, "", 0x81, Some(session), None);
        let seq = self.peer.request(body).await;
        let resp = self.peer.recv_skip_enquire().await.unwrap();
        assert_eq!((resp.sequence, resp.status), (seq, 0));
    }
}

/// A client session of chogate's own over `stream`, binding as a transceiver with `system_id`
/// and `password` and handing the peer's requests to `inbound`: its handle, its task, and the
/// token that stops it.
pub fn default_tuning() -> chogate::smpp::session::Tuning {
    chogate::smpp::session::Tuning::new(&chogate::config::SmppTuning::default(), 10)
}

/// See [`default_tuning`] for the usual `tuning`.
pub fn client_session(
    stream: TcpStream,
    system_id: &str,
    password: &str,
    inbound: chogate::smpp::session::Inbound,
    tuning: chogate::smpp::session::Tuning,
) -> (
    chogate::smpp::session::SessionHandle,
    tokio::task::JoinHandle<chogate::smpp::session::SessionEnd>,
    CancellationToken,
) {
    use chogate::smpp::session::{self, Registry, RoleParams, SessionParams};
    let shutdown = CancellationToken::new();
    let params = SessionParams {
        role: RoleParams::Client {
            bind: Bind::new(BindKind::Transceiver, system_id, password),
            label: std::sync::Arc::from(system_id),
            msisdn_prefixes: std::sync::Arc::from([]),
        },
        tuning,
        inbound,
        registry: std::sync::Arc::new(Registry::default()),
        shutdown: shutdown.clone(),
    };
    let (handle, run) = session::start(stream, params);
    (handle, tokio::spawn(run), shutdown)
}
