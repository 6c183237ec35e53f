//! USSD dialogues over SMPP, in both roles.
//!
//! A subscriber's PDU (`deliver_sm`, `data_sm` or `submit_sm` with `ussd_service_op`) is
//! matched to a dialogue by the peer's dialogue key (MSISDN plus `its_session_info`, or
//! plus `user_message_reference`, or alone), moved one step through the menus (committing
//! any action first), answered, and the next screen goes back in the PDU family the peer
//! expects with op 2 (expects input) or 17 (final screen) and `its_session_info` echoed.
//!
//! A dialogue cut before its final screen was delivered (user abort, operator timeout,
//! unbind, idle timeout, a screen that could not be sent) is kept for `resume_secs`: the
//! household who redials is offered to continue at the same screen with what they typed.
//! Actions carry the dialogue id and step as idempotency key, so nothing applies twice.

pub mod backend;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, DialogueKey, ReplyPdu, TextMode};
use crate::logging::mask_msisdn;
use crate::market::Market;
use crate::menu::engine::Cursor;
use crate::menu::{Lang, Menus, Target};
use crate::smpp::pdu::{Address, Body, DataSm, Pdu, Sm, tag};
use crate::smpp::session::{Inbound, InboundRequest, Responder, Role, SessionHandle};
use crate::smpp::status;
use crate::text;

use backend::{MarketBackend, ProductItems};

/// `ussd_service_op` values.
pub mod op {
    /// PSSR indication: the subscriber dialled (new dialogue).
    pub const PSSR_INDICATION: u8 = 0x01;
    /// USSR request: a screen that expects input.
    pub const USSR_REQUEST: u8 = 0x02;
    /// PSSR response: the final screen.
    pub const PSSR_RESPONSE: u8 = 0x11;
    /// USSR confirm: the subscriber's answer.
    pub const USSR_CONFIRM: u8 = 0x12;
    /// Vendor-specific: the subscriber aborted.
    pub const USER_ABORT: u8 = 0x81;
}

/// How one peer (server account or SMSC) wants its dialogues handled.
#[derive(Debug, Clone, Copy)]
pub struct PeerSettings {
    /// PDU carrying our screens (server role; client role always uses submit_sm).
    pub reply_pdu: ReplyPdu,
    /// What identifies a dialogue.
    pub dialogue_key: DialogueKey,
    /// UCS2 with accents, or unaccented GSM.
    pub text_mode: TextMode,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            reply_pdu: ReplyPdu::DeliverSm,
            dialogue_key: DialogueKey::ItsSessionInfo,
            text_mode: TextMode::Ucs2,
        }
    }
}

/// Identifies one dialogue: peer label, MSISDN, and the session number or message
/// reference when the peer keys dialogues on one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: Arc<str>,
    msisdn: String,
    session: Option<u16>,
}

/// What the gateway knows of one live dialogue.
struct Dialogue {
    cursor: Cursor,
    /// Offering "1. Tiếp tục / 2. Bắt đầu lại" with this cursor.
    resume_offer: Option<Box<Cursor>>,
    session: SessionHandle,
    /// The subscriber's address as the peer gave it (sent back as destination).
    subscriber: Address,
    /// The service address (sent back as source).
    service: Address,
    its_session: Option<[u8; 2]>,
    umr: Option<u16>,
    last_activity: Instant,
    /// When it opened (ms since the epoch), for its audit event.
    opened_at_ms: i64,
    /// Answers the subscriber gave (the dial not counted), for its audit event.
    inputs: u32,
    /// A screen went out and the next input is expected.
    awaiting_input: bool,
    msisdn: String,
    /// The household as read when the dialogue opened (None: not registered). Steps use
    /// it rather than reading it again; what may change within a dialogue (the PIN) is
    /// read fresh where it matters.
    household: Option<Box<crate::market::Household>>,
    settings: PeerSettings,
    ended: bool,
}

struct Suspended {
    cursor: Cursor,
    at: Instant,
}

/// Why a dialogue ended without reaching a final screen: what its audit event records and
/// the outcome it is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The subscriber (or the network) aborted it.
    UserAbort,
    /// A new dial from the same subscriber cut it.
    Redial,
    /// A screen could not be delivered.
    Undelivered,
    /// Nothing came within the session timeout.
    Timeout,
    /// The bind it was on went away.
    BindLost,
    /// The daemon stopped.
    Shutdown,
}

impl Cut {
    /// As the audit event records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::UserAbort => "user abort",
            Cut::Redial => "redial",
            Cut::Undelivered => "screen not delivered",
            Cut::Timeout => "timeout",
            Cut::BindLost => "bind lost",
            Cut::Shutdown => "shutdown",
        }
    }

    fn outcome(self) -> crate::metrics::Dialogue {
        use crate::metrics::Dialogue;
        match self {
            Cut::UserAbort => Dialogue::UserAbort,
            Cut::Redial => Dialogue::Redial,
            Cut::Undelivered => Dialogue::Undelivered,
            Cut::Timeout => Dialogue::Timeout,
            Cut::BindLost => Dialogue::BindLost,
            Cut::Shutdown => Dialogue::Shutdown,
        }
    }
}

/// The USSD service: dialogue table, resume table, and the menus.
pub struct Ussd {
    menus: Arc<Menus>,
    market: Market,
    /// The catalogue as list entries, shared by all dialogues.
    products: ProductItems,
    peers: HashMap<String, PeerSettings>,
    dialogues: DashMap<Key, Arc<Mutex<Dialogue>>, foldhash::fast::RandomState>,
    suspended: DashMap<String, Suspended, foldhash::fast::RandomState>,
    session_timeout: Duration,
    resume_window: Duration,
    /// Dialogues open at once (and kept for resumption), at most.
    max_dialogues: usize,
    service_code: String,
    /// `[ussd] hotline`, for help screens.
    hotline: String,
    /// Inputs taken from one dial string, at most.
    max_inputs_per_dial: usize,
    next_id: AtomicU64,
    /// Woken whenever a dialogue leaves the table.
    closed: tokio::sync::Notify,
}

/// Whether a message PDU is USSD (rather than an SMS or a receipt).
pub fn is_ussd(pdu: &Pdu) -> bool {
    match &pdu.body {
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
            sm.service_type.eq_ignore_ascii_case("USSD") || sm.tlvs.get(tag::USSD_SERVICE_OP).is_some()
        }
        Body::DataSm(d) => {
            d.service_type.eq_ignore_ascii_case("USSD") || d.tlvs.get(tag::USSD_SERVICE_OP).is_some()
        }
        _ => false,
    }
}

/// The fields of an inbound USSD PDU, whatever its family.
struct Fields {
    source: Address,
    dest: Address,
    op: Option<u8>,
    text: String,
    its_session: Option<[u8; 2]>,
    umr: Option<u16>,
}

fn inbound_fields(pdu: Pdu) -> Option<Fields> {
    let (source, dest, dc, payload, tlvs) = match pdu.body {
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
            let payload = sm.payload().clone();
            let Sm { source, dest, data_coding, tlvs, .. } = *sm;
            (source, dest, data_coding, payload, tlvs)
        }
        Body::DataSm(d) => {
            let DataSm { source, dest, data_coding, tlvs, .. } = *d;
            let payload = tlvs.get(tag::MESSAGE_PAYLOAD).cloned().unwrap_or_default();
            (source, dest, data_coding, payload, tlvs)
        }
        _ => return None,
    };
    let its_session = tlvs.get(tag::ITS_SESSION_INFO).and_then(|v| Some([*v.first()?, *v.get(1)?]));
    let mut text = text::decode_short_message(dc, &payload);
    if text.trim().len() != text.len() {
        text = text.trim().to_owned();
    }
    Some(Fields {
        source,
        dest,
        op: tlvs.get_u8(tag::USSD_SERVICE_OP),
        text,
        its_session,
        umr: tlvs.get_u16(tag::USER_MESSAGE_REFERENCE),
    })
}

impl Ussd {
    /// The service for a configuration and validated menus.
    pub fn new(config: &Config, menus: Arc<Menus>, market: Market) -> Self {
        let mut peers = HashMap::new();
        for a in &config.smpp_server.accounts {
            peers.insert(
                a.system_id.clone(),
                PeerSettings { reply_pdu: a.reply_pdu, dialogue_key: a.dialogue_key, text_mode: a.text_mode },
            );
        }
        for s in &config.smsc {
            peers.insert(
                s.name.clone(),
                PeerSettings {
                    reply_pdu: ReplyPdu::SubmitSm,
                    dialogue_key: s.dialogue_key,
                    text_mode: s.text_mode,
                },
            );
        }
        Ussd {
            menus,
            market,
            products: ProductItems::default(),
            peers,
            dialogues: DashMap::default(),
            suspended: DashMap::default(),
            session_timeout: config.ussd.session_timeout(),
            resume_window: config.ussd.resume(),
            max_dialogues: usize::try_from(config.ussd.max_dialogues).unwrap_or(usize::MAX),
            service_code: config.ussd.service_code.clone(),
            hotline: config.ussd.hotline.clone(),
            max_inputs_per_dial: usize::try_from(config.ussd.max_inputs_per_dial).unwrap_or(usize::MAX),
            next_id: AtomicU64::new(0),
            closed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until no dialogue is open (all ended, were cut or timed out).
    pub async fn wait_no_dialogues(&self) {
        loop {
            let closed = self.closed.notified();
            if self.dialogues.is_empty() {
                return;
            }
            closed.await;
        }
    }

    fn forget(&self, key: &Key) {
        self.dialogues.remove(key);
        self.closed.notify_waiters();
    }

    fn dialogue_id(&self) -> String {
        let ms = crate::time::now_ms();
        format!("u{ms:x}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Handles one USSD request from a peer: answers the PDU, moves the dialogue, sends the
    /// next screen.
    pub async fn handle(self: &Arc<Self>, req: InboundRequest) {
        let InboundRequest { pdu, session, responder } = req;
        let Some(inb) = inbound_fields(pdu) else {
            responder.respond(status::ESME_RINVCMDID, "").await;
            return;
        };
        let Some(msisdn) = crate::msisdn::normalize(&inb.source.addr) else {
            debug!(source = %mask_msisdn(&inb.source.addr).escape_debug(), "USSD from a number that is not a mobile number");
            responder.respond(status::ESME_RINVSRCADR, "").await;
            return;
        };
        if !session.may_speak_for(&msisdn) {
            crate::metrics::smpp_refused(crate::metrics::Refusal::MsisdnPrefix);
            debug!(source = %mask_msisdn(&msisdn), "USSD for a number outside the peer's msisdn_prefixes");
            responder.respond(status::ESME_RINVSRCADR, "").await;
            return;
        }
        let label = session.label();
        let settings = self.peers.get(&*label).copied().unwrap_or_default();
        let session_part = match settings.dialogue_key {
            DialogueKey::ItsSessionInfo => inb.its_session.map(|s| u16::from(s[0])),
            DialogueKey::UserMessageReference => inb.umr,
            DialogueKey::Msisdn => None,
        };
        let key = Key { peer: label, msisdn: msisdn.clone(), session: session_part };
        match inb.op {
            // Answered once the dialogue is out of the table, so a dial that follows the
            // answer finds it gone; recording its end (which may wait for a step under way)
            // comes after.
            Some(op::USER_ABORT) => {
                let cut = self.dialogues.remove(&key);
                responder.respond(status::ESME_ROK, "").await;
                if let Some((_, d)) = cut {
                    self.end_cut(&key, &d, Cut::UserAbort).await;
                }
            }
            // The PDU is answered once the step's work is done, just before the screen goes
            // out: until then it holds its place in the inbound window, so the peer's window
            // bounds how much work chogate has under way.
            Some(op::PSSR_INDICATION) => self.open(key, session, settings, inb, msisdn, responder).await,
            _ => {
                let existing = self.dialogues.get(&key).map(|d| d.value().clone());
                match existing {
                    Some(d) => self.step(&key, d, &inb.text, responder).await,
                    // An answer to a dialogue we no longer know: treat it as a new dial.
                    None => self.open(key, session, settings, inb, msisdn, responder).await,
                }
            }
        }
    }

    /// A new dialogue (or a redial that may resume).
    async fn open(
        self: &Arc<Self>,
        key: Key,
        session: SessionHandle,
        settings: PeerSettings,
        inb: Fields,
        msisdn: String,
        responder: Responder,
    ) {
        // A dialogue still open under this key is replaced: the subscriber dialled again.
        if self.dialogues.contains_key(&key) {
            self.abort(&key, Cut::Redial).await;
        } else if self.dialogues.len() >= self.max_dialogues {
            // The USSD centre tells the subscriber the service is busy; nothing is held.
            crate::metrics::dialogue(crate::metrics::Dialogue::Refused);
            debug!(msisdn = %mask_msisdn(&msisdn), "dialogue table full; dial refused");
            responder.respond(status::ESME_RTHROTTLED, "").await;
            return;
        }
        let opened_at_ms = crate::time::now_ms();
        crate::metrics::dialogue(crate::metrics::Dialogue::Opened);
        // Who is dialling cannot be told while the database is out of reach (a restart, a
        // lost connection): the dial ends on "busy, try again later" rather than on the
        // sign-up menu, which would ask a household chogate knows to register again.
        let (household, unreadable) = match self.market.household_by_msisdn(&msisdn).await {
            Ok(h) => (h, false),
            Err(e) => {
                warn!(error = %e, "cannot read household");
                (None, true)
            }
        };
        let lang = household.as_ref().map(|h| h.language).unwrap_or(Lang::Vi);
        let target = Target { lang, mode: settings.text_mode };
        let root = match &household {
            None => self.menus.register,
            Some(h) if h.is_leader => self.menus.leader,
            Some(h) if h.pending => self.menus.pending,
            Some(_) => self.menus.main,
        };
        let backend = MarketBackend::new(
            &self.market,
            &self.products,
            household.as_ref(),
            &msisdn,
            lang,
            &self.hotline,
        );
        let mut cursor = self.menus.cursor(self.dialogue_id(), root, target);
        let resume = if unreadable {
            None
        } else {
            self.suspended.remove(&msisdn).map(|(_, s)| s).filter(|s| s.at.elapsed() <= self.resume_window)
        };
        let resume_offer = match resume {
            Some(s) => Some(s.cursor),
            None if unreadable => {
                cursor.ending = Some(Box::new(self.menus.message("error").clone()));
                None
            }
            None => {
                self.menus.start(&mut cursor, &backend).await;
                // Shortcut dialling: *384*1*1# runs the inputs 1, 1 (at most
                // `max_inputs_per_dial` of them; the screen reached then is shown).
                for input in self.shortcut_inputs(&inb.text) {
                    if self.menus.render(&cursor).end {
                        break;
                    }
                    self.menus.input(&mut cursor, input, &backend).await;
                }
                None
            }
        };
        let d = Dialogue {
            cursor,
            resume_offer: resume_offer.map(Box::new),
            session,
            subscriber: inb.source,
            service: inb.dest,
            its_session: inb.its_session,
            umr: inb.umr,
            last_activity: Instant::now(),
            opened_at_ms,
            inputs: 0,
            awaiting_input: false,
            msisdn,
            household: household.map(Box::new),
            settings,
            ended: false,
        };
        let d = Arc::new(Mutex::new(d));
        self.dialogues.insert(key.clone(), d.clone());
        let mut guard = d.lock().await;
        self.send_screen(&key, &mut guard, responder).await;
    }

    /// The inputs of a dial string after the service code, the first
    /// `max_inputs_per_dial` of them: one PDU can carry thousands, and each may read or
    /// write the database.
    fn shortcut_inputs<'a>(&self, dialled: &'a str) -> impl Iterator<Item = &'a str> + use<'a> {
        let code = self.service_code.trim_end_matches('#');
        let rest = dialled.strip_prefix(code).unwrap_or_default().trim_end_matches('#');
        rest.split('*').filter(|s| !s.is_empty()).take(self.max_inputs_per_dial)
    }

    /// One answer from the subscriber.
    async fn step(self: &Arc<Self>, key: &Key, d: Arc<Mutex<Dialogue>>, input: &str, responder: Responder) {
        let mut guard = d.lock().await;
        let dlg = &mut *guard;
        if dlg.ended {
            responder.respond(status::ESME_ROK, "").await;
            return;
        }
        if !dlg.awaiting_input {
            // A retransmission of the answer we already took: show the screen again.
            debug!(msisdn = %mask_msisdn(&dlg.msisdn), "input while no screen was pending; resending");
            self.send_screen(key, dlg, responder).await;
            return;
        }
        dlg.awaiting_input = false;
        dlg.last_activity = Instant::now();
        dlg.inputs = dlg.inputs.saturating_add(1);
        let backend = MarketBackend::new(
            &self.market,
            &self.products,
            dlg.household.as_deref(),
            &dlg.msisdn,
            dlg.cursor.target.lang,
            &self.hotline,
        );
        if let Some(saved) = dlg.resume_offer.take() {
            match input.trim() {
                "1" => dlg.cursor = *saved,
                "2" => self.menus.start(&mut dlg.cursor, &backend).await,
                _ => {
                    // Ask again.
                    dlg.resume_offer = Some(saved);
                }
            }
        } else {
            self.menus.input(&mut dlg.cursor, input, &backend).await;
        }
        self.send_screen(key, dlg, responder).await;
    }

    /// Answers the subscriber's PDU, renders the dialogue's screen and sends it; ends the
    /// dialogue after a final screen. The room for the screen in the window is taken before
    /// the PDU is answered: until then the PDU holds its place in the peer's window, so
    /// dialogues waiting to send stay bounded by the two windows.
    async fn send_screen(&self, key: &Key, dlg: &mut Dialogue, responder: Responder) {
        let slot = dlg.session.reserve().await;
        let (text, end) = match &dlg.resume_offer {
            Some(saved) => (self.menus.resume_offer(saved), false),
            None => {
                let r = self.menus.render(&dlg.cursor);
                (r.text, r.end)
            }
        };
        let body = self.reply_body(dlg, &text, end);
        crate::metrics::step_latency(responder.received().elapsed());
        // The answer and the screen leave in one write.
        let result = match slot {
            Ok(slot) => slot.answer_then_request(responder, body).await,
            Err(e) => {
                responder.respond(status::ESME_ROK, "").await;
                Err(e)
            }
        };
        let delivered = matches!(&result, Ok(resp) if resp.status == status::ESME_ROK);
        crate::metrics::step(delivered, end);
        if !delivered {
            warn!(msisdn = %mask_msisdn(&dlg.msisdn), result = ?result.as_ref().map(|p| status::name(p.status)), "screen not delivered");
            self.suspend(key, dlg, Cut::Undelivered).await;
            return;
        }
        dlg.awaiting_input = !end;
        dlg.last_activity = Instant::now();
        if end {
            dlg.ended = true;
            self.forget(key);
            self.market.record_dialogue(&dlg.msisdn, dlg.opened_at_ms, dlg.inputs, "completed").await;
            crate::metrics::dialogue(crate::metrics::Dialogue::Completed);
        }
    }

    fn reply_body(&self, dlg: &Dialogue, text: &str, end: bool) -> Body {
        let allow_ucs2 = dlg.settings.text_mode == TextMode::Ucs2;
        let enc = text::encode_text(text, allow_ucs2);
        // Room for the op, the session and one more (reference or payload).
        let mut tlvs = crate::smpp::pdu::Tlvs(Vec::with_capacity(3));
        let service_op: &'static [u8] = if end { &[op::PSSR_RESPONSE] } else { &[op::USSR_REQUEST] };
        tlvs.set(tag::USSD_SERVICE_OP, Bytes::from_static(service_op));
        if let Some([n, flags]) = dlg.its_session {
            tlvs.set(tag::ITS_SESSION_INFO, vec![n, (flags & 0xFE) | u8::from(end)]);
        }
        if let Some(umr) = dlg.umr {
            tlvs.set(tag::USER_MESSAGE_REFERENCE, umr.to_be_bytes().to_vec());
        }
        let family = match dlg.session.role() {
            Role::Client => ReplyPdu::SubmitSm,
            Role::Server => dlg.settings.reply_pdu,
        };
        let data_coding = enc.encoding.data_coding();
        let text = Bytes::from(enc.bytes);
        // data_sm carries text only in message_payload; the sm PDUs in short_message when it
        // fits its 254 octets.
        let short_message = if family != ReplyPdu::DataSm && text.len() <= 254 {
            text
        } else {
            tlvs.set(tag::MESSAGE_PAYLOAD, text);
            Bytes::new()
        };
        let (source, dest) = (dlg.service.clone(), dlg.subscriber.clone());
        match family {
            ReplyPdu::DataSm => Body::DataSm(Box::new(DataSm {
                service_type: "USSD".into(),
                source,
                dest,
                esm_class: 0,
                registered_delivery: 0,
                data_coding,
                tlvs,
            })),
            ReplyPdu::DeliverSm | ReplyPdu::SubmitSm => {
                let sm = Box::new(Sm {
                    service_type: "USSD".into(),
                    source,
                    dest,
                    esm_class: 0,
                    data_coding,
                    short_message,
                    tlvs,
                    ..Sm::default()
                });
                if family == ReplyPdu::DeliverSm { Body::DeliverSm(sm) } else { Body::SubmitSm(sm) }
            }
        }
    }

    /// Ends a dialogue that was cut: it may be resumed within the resume window.
    async fn abort(&self, key: &Key, why: Cut) {
        let Some((_, d)) = self.dialogues.remove(key) else { return };
        self.end_cut(key, &d, why).await;
    }

    /// Records the end of a dialogue already out of the table, keeping it for resumption.
    async fn end_cut(&self, key: &Key, d: &Mutex<Dialogue>, why: Cut) {
        let mut guard = d.lock().await;
        self.suspend(key, &mut guard, why).await;
    }

    async fn suspend(&self, key: &Key, dlg: &mut Dialogue, why: Cut) {
        if dlg.ended {
            return;
        }
        dlg.ended = true;
        self.forget(key);
        self.market.record_dialogue(&dlg.msisdn, dlg.opened_at_ms, dlg.inputs, why.as_str()).await;
        crate::metrics::dialogue(why.outcome());
        let mut cursor = dlg.resume_offer.take().map_or_else(|| dlg.cursor.clone(), |c| *c);
        // No PIN is kept while the dialogue waits to be resumed.
        self.menus.clear_secrets(&mut cursor);
        // A dialogue with nothing typed, or back on its root menu, has nothing to resume.
        if !self.menus.worth_resuming(&cursor) {
            return;
        }
        if self.suspended.len() >= self.max_dialogues && !self.suspended.contains_key(&dlg.msisdn) {
            debug!(msisdn = %mask_msisdn(&dlg.msisdn), why = why.as_str(), "dialogue cut; too many kept for resume already");
            return;
        }
        info!(msisdn = %mask_msisdn(&dlg.msisdn), why = why.as_str(), "dialogue cut; kept for resume");
        self.suspended.insert(dlg.msisdn.clone(), Suspended { cursor, at: Instant::now() });
    }

    /// Ends every dialogue still open, each recorded as ended with `why` (at shutdown, once
    /// the binds have drained and before the writer stops).
    pub async fn close_all(&self, why: Cut) {
        let keys: Vec<Key> = self.dialogues.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            self.abort(&key, why).await;
        }
    }

    /// Closes dialogues idle too long or whose bind is gone; forgets old resumable ones.
    pub async fn sweep(&self) {
        let now = Instant::now();
        let stale: Vec<(Key, Arc<Mutex<Dialogue>>)> =
            self.dialogues.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        for (key, d) in stale {
            let Ok(mut dlg) = d.try_lock() else { continue };
            let gone = dlg.session.state() == crate::smpp::SessionState::Closed;
            if gone || now.duration_since(dlg.last_activity) > self.session_timeout {
                let why = if gone { Cut::BindLost } else { Cut::Timeout };
                self.suspend(&key, &mut dlg, why).await;
            }
        }
        self.suspended.retain(|_, s| now.duration_since(s.at) <= self.resume_window);
    }
}

/// Starts the USSD service for the binds' requests: the handler the sessions call starts a
/// task for each USSD request (dialogues proceed in parallel; what is under way is bounded
/// by each bind's windows) and passes anything else to `other` (`ESME_RTHROTTLED` when it is
/// full, `ESME_RX_T_APPN` once it is closed). A task sweeps idle dialogues every second.
/// After shutdown new requests are answered `ESME_RX_T_APPN`.
pub fn start(
    ussd: Arc<Ussd>,
    other: mpsc::Sender<InboundRequest>,
    shutdown: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
) -> Inbound {
    let sweeper = ussd.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = sweep.tick() => sweeper.sweep().await,
            }
        }
    });
    Inbound::Handler(Arc::new(move |req: InboundRequest| {
        if shutdown.is_cancelled() {
            // Dropped unanswered: the responder answers ESME_RX_T_APPN.
            return;
        }
        if is_ussd(&req.pdu) {
            let ussd = ussd.clone();
            // Boxed: the step's future is ~3.5 KB, which tokio would otherwise copy when
            // spawning it and again when storing its output; the task then holds a pointer.
            tracker.spawn(Box::pin(async move { ussd.handle(req).await }));
        } else if let Err((responder, st)) = crate::smpp::session::try_queue(&other, req) {
            tracker.spawn(responder.respond(st, ""));
        }
    }))
}
