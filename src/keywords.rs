//! SMS fallback for when USSD fails: a household texts a keyword to the service number and
//! is answered by SMS.
//!
//! | text | what |
//! | --- | --- |
//! | `DH` | open orders (as many as fit one SMS, and how many there are) |
//! | `NHAN <order>` | accept a new order (Nhận đơn) |
//! | `HUY <order>` | reject a new order (Từ chối) |
//! | `GUI <order> [tracking code]` | an accepted order was handed to the post office |
//! | `TT <order> <PIN>` | confirm a payment (Xác nhận thanh toán) |
//! | `HD` | help |
//!
//! Anything else gets the help text. Keywords and order codes are case- and
//! accent-insensitive (`nhận d12` works). Replies are unaccented GSM text, in the household's
//! language, with the screens' words. The reply is queued in the outbox after the action
//! committed, and the `deliver_sm` is answered only after that.
//!
//! Every text gets a reply: a read-only command (`DH`, help) is answered every time, and a
//! command that changes something is applied once per [`sms_key`] (a repeat within the
//! minute is the same request) and a repeat gets the first outcome's reply again.

use crate::market::{
    Actor, Channel, Household, IdemKey, Lang, Market, MarketError, Mover, Order, OrderMove, OrderStatus,
    money,
};
use crate::smpp::pdu::{Body, Sm};
use crate::smpp::session::{InboundRequest, Responder};
use crate::smpp::status;
use crate::text;
use tracing::warn;

/// One SMS: 160 GSM septets. `DH` lists as many orders as fit in it.
const ONE_SMS: usize = 160;

/// A parsed keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `DH`: open orders.
    Orders,
    /// `NHAN <order>`: accept.
    Accept(i64),
    /// `HUY <order>`: reject a new order.
    Reject(i64),
    /// `GUI <order> [tracking code]`: handed to the post office.
    Ship(i64, Option<String>),
    /// `TT <order> <PIN>`: confirm payment.
    Pay(i64, String),
    /// `HD` or anything unknown.
    Help,
}

impl Command {
    /// Whether it only reads (answered every time, nothing to apply once).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Command::Orders | Command::Help)
    }
}

/// `D000012`, `d12` or `12` → 12.
fn order_id(word: &str) -> Option<i64> {
    let w = word.trim_start_matches(['D', 'd']);
    (!w.is_empty() && w.bytes().all(|b| b.is_ascii_digit())).then(|| w.parse().ok()).flatten()
}

/// Parses a household's text.
pub fn parse(input: &str) -> Command {
    let plain = text::unaccent(input).to_ascii_uppercase();
    let words: Vec<&str> = plain.split_whitespace().collect();
    match words.as_slice() {
        ["DH"] => Command::Orders,
        ["NHAN", order] => order_id(order).map_or(Command::Help, Command::Accept),
        ["HUY", order] => order_id(order).map_or(Command::Help, Command::Reject),
        ["GUI", order] => order_id(order).map_or(Command::Help, |id| Command::Ship(id, None)),
        ["GUI", order, code] => {
            order_id(order).map_or(Command::Help, |id| Command::Ship(id, Some((*code).to_owned())))
        }
        ["TT", order, pin] if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) => {
            order_id(order).map_or(Command::Help, |id| Command::Pay(id, (*pin).to_owned()))
        }
        _ => Command::Help,
    }
}

fn septets(s: &str) -> usize {
    text::gsm_septets(s).unwrap_or(s.chars().count() * 2)
}

/// Whom to call, as the USSD help screens name them: the village's team leader (not the
/// household itself), else the hotline (`[ussd] hotline`), else the commune's People's
/// Committee. Unaccented.
fn contact(lang: Lang, h: &Household, leader: Option<&crate::market::Leader>, hotline: &str) -> String {
    match (leader.filter(|l| l.msisdn != h.msisdn), hotline.trim(), lang) {
        (Some(l), _, Lang::Vi) => format!("To truong: {}", crate::market::national(&l.msisdn)),
        (Some(l), _, Lang::En) => format!("Leader: {}", crate::market::national(&l.msisdn)),
        (None, hotline, Lang::Vi) if !hotline.is_empty() => format!("Duong day nong: {hotline}"),
        (None, hotline, Lang::En) if !hotline.is_empty() => format!("Hotline: {hotline}"),
        (None, _, Lang::Vi) => format!("Goi UBND {}", text::unaccent(&h.commune_name)),
        (None, _, Lang::En) => format!("Call the People's Committee of {}", text::unaccent(&h.commune_name)),
    }
}

/// The keywords, and whom to call ([`contact`]) where it fits: one SMS.
fn help(lang: Lang, contact: Option<&str>) -> String {
    let base = match lang {
        Lang::Vi => {
            "DH=xem don; NHAN <ma>=Nhan don; HUY <ma>=Tu choi; GUI <ma> [van don]=Da giao buu dien; \
             TT <ma> <PIN>=Xac nhan thanh toan. Bam *384#."
        }
        Lang::En => {
            "DH=orders; NHAN <code>=accept; HUY <code>=reject; GUI <code> [tracking code]=handed to post; \
             TT <code> <PIN>=confirm payment. Dial *384#."
        }
    };
    let Some(contact) = contact else { return base.to_owned() };
    let with_contact = format!("{base} {contact}");
    if septets(&with_contact) <= ONE_SMS { with_contact } else { base.to_owned() }
}

/// An order's status, in a reply: the screens' words (`order_flow`), unaccented as every
/// reply is.
fn status_words(status: OrderStatus, lang: Lang) -> String {
    crate::text::unaccent(status.label(lang))
}

/// What a move would do, in a refusal ("khong the ..." / "cannot be ..."): the screens' words.
fn move_words(m: OrderMove, lang: Lang) -> String {
    crate::text::unaccent(m.label(lang))
}

/// The keyword that makes a move, if one does.
fn keyword(m: OrderMove, code: &str) -> Option<String> {
    match m {
        OrderMove::Accept => Some(format!("NHAN {code}")),
        OrderMove::Reject => Some(format!("HUY {code}")),
        OrderMove::Ship => Some(format!("GUI {code}")),
        OrderMove::Pay => Some(format!("TT {code} <PIN>")),
        OrderMove::Deliver | OrderMove::Cancel => None,
    }
}

/// Why the order's status refuses the move, and what the household can do instead (the
/// state machine's moves that have a keyword).
fn refusal(code: &str, status: OrderStatus, wanted: OrderMove, lang: Lang) -> String {
    let why = match lang {
        Lang::Vi => {
            format!("Don {code} {}, khong the {}.", status_words(status, lang), move_words(wanted, lang))
        }
        Lang::En => {
            format!(
                "Order {code} is {}: it cannot be {}.",
                status_words(status, lang),
                move_words(wanted, lang)
            )
        }
    };
    let can: Vec<String> = status.moves(Mover::Household).filter_map(|m| keyword(m, code)).collect();
    if can.is_empty() {
        return why;
    }
    let lead = match lang {
        Lang::Vi => "Co the",
        Lang::En => "You can",
    };
    format!("{why} {lead}: {}.", can.join(", "))
}

fn not_found(id: i64, lang: Lang) -> String {
    let code = crate::market::order_code(id);
    match lang {
        Lang::Vi => format!("Khong tim thay don {code}. DH de xem don hang."),
        Lang::En => format!("Order {code} not found. DH lists your orders."),
    }
}

fn error_text(e: &MarketError, id: i64, lang: Lang) -> String {
    let vi = matches!(lang, Lang::Vi);
    match e {
        MarketError::OrderState { code, status, wanted } => refusal(code, *status, *wanted, lang),
        MarketError::NotFound(_) => not_found(id, lang),
        MarketError::PinWrong { remaining } if vi => format!("Sai ma PIN. Con {remaining} lan."),
        MarketError::PinWrong { remaining } => format!("Wrong PIN. {remaining} tries left."),
        MarketError::PinLocked { .. } if vi => "Sai PIN 5 lan. Tam khoa xac nhan thanh toan 15 phut.".into(),
        MarketError::PinLocked { .. } => "5 wrong PINs. Payment confirmation locked for 15 min.".into(),
        MarketError::Invalid { field: "tracking_code", .. } if vi => {
            "Ma van don khong hop le (toi da 80 ky tu).".into()
        }
        MarketError::Invalid { field: "tracking_code", .. } => {
            "Invalid tracking code (80 characters at most).".into()
        }
        _ if vi => "Khong the thuc hien. Bam *384# hoac goi to truong.".into(),
        _ => "This cannot be done. Dial *384# or call your team leader.".into(),
    }
}

/// `TT` from a household without a PIN: where it can make one, if the order allows a
/// payment at all.
async fn no_pin(market: &Market, h: &Household, id: i64) -> String {
    let lang = h.language;
    match market.order(h.id, id).await {
        Ok(o) if o.status.after(OrderMove::Pay, Mover::Household).is_none() => {
            refusal(&o.code, o.status, OrderMove::Pay, lang)
        }
        Ok(o) => match lang {
            Lang::Vi => format!(
                "Chua co ma PIN. Bam *384#, chon 3 (Thanh toan), chon don {} de tao PIN va xac nhan.",
                o.code
            ),
            Lang::En => format!(
                "No PIN yet. Dial *384#, choose 3 (Payments), then order {}, to create your PIN and confirm.",
                o.code
            ),
        },
        Err(e) => error_text(&e, id, lang),
    }
}

/// One open order in a `DH` reply: code, quantity with unit, product, amount with its
/// currency, status.
fn order_line(o: &Order, lang: Lang) -> String {
    let (name, amount, status) = match lang {
        Lang::Vi => {
            (o.product_name_vi.clone(), format!("{}d", money(o.amount, lang)), status_words(o.status, lang))
        }
        Lang::En => (
            o.product_name_en.to_lowercase(),
            format!("{} VND", money(o.amount, lang)),
            status_words(o.status, lang),
        ),
    };
    text::unaccent(&format!("{} {} {} {} {amount} ({status})", o.code, o.quantity_kg, o.unit, name))
}

/// The `DH` reply: the open orders, newest first, as many as fit one SMS; when some do
/// not, how many more there are and where to see them.
fn orders_text(orders: &[Order], lang: Lang) -> String {
    if orders.is_empty() {
        return match lang {
            Lang::Vi => "Chua co don hang moi.".into(),
            Lang::En => "No open orders.".into(),
        };
    }
    let head = match lang {
        Lang::Vi => format!("Don hang ({}): ", orders.len()),
        Lang::En => format!("Orders ({}): ", orders.len()),
    };
    let more = |n: usize| match lang {
        Lang::Vi => format!("; va {n} don khac. Bam *384#, chon 2."),
        Lang::En => format!("; and {n} more. Dial *384#, choose 2."),
    };
    let lines: Vec<String> = orders.iter().map(|o| order_line(o, lang)).collect();
    let whole = |shown: usize| {
        let rest = orders.len() - shown;
        let tail = if rest > 0 { more(rest) } else { ".".to_owned() };
        format!("{head}{}{tail}", lines[..shown].join("; "))
    };
    // The most that fit, always at least one.
    let shown = (1..=orders.len()).rev().find(|&n| septets(&whole(n)) <= ONE_SMS).unwrap_or(1);
    whole(shown)
}

/// What to answer `household` for `cmd`, after carrying it out (a repeat of `key` replays
/// the first outcome).
async fn run(
    market: &Market,
    hotline: &str,
    actor: &Actor,
    key: &str,
    h: &Household,
    cmd: Command,
) -> String {
    let lang = h.language;
    let vi = matches!(lang, Lang::Vi);
    let idem = || IdemKey(key.to_owned());
    match cmd {
        Command::Help => {
            let leader = market.leader_of(h.id).await.unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the team leader for the SMS help");
                None
            });
            help(lang, Some(&contact(lang, h, leader.as_ref(), hotline)))
        }
        Command::Orders => match market.open_orders(h.id).await {
            Ok(orders) => orders_text(&orders, lang),
            Err(e) => error_text(&e, 0, lang),
        },
        Command::Accept(id) => {
            match market.move_order(actor, idem(), h.id, id, OrderMove::Accept, None).await {
                Ok(o) if vi => format!(
                    "Da nhan don {}. Gui hang o buu dien, roi nhan GUI {} [ma van don].",
                    o.code, o.code
                ),
                Ok(o) => format!(
                    "Order {} accepted. Post the goods, then text GUI {} [tracking code].",
                    o.code, o.code
                ),
                Err(e) => error_text(&e, id, lang),
            }
        }
        Command::Reject(id) => {
            match market.move_order(actor, idem(), h.id, id, OrderMove::Reject, None).await {
                Ok(o) if vi => format!("Da tu choi don {}. Nguoi mua se duoc bao.", o.code),
                Ok(o) => format!("Order {} rejected. The buyer will be told.", o.code),
                Err(e) => error_text(&e, id, lang),
            }
        }
        Command::Ship(id, tracking) => {
            match market.move_order(actor, idem(), h.id, id, OrderMove::Ship, tracking.as_deref()).await {
                Ok(o) => {
                    let code = &o.code;
                    let t = tracking.as_deref().map(text::unaccent);
                    match (vi, t) {
                        (true, Some(t)) => format!(
                            "Don {code} da giao buu dien, ma van don {t}. Khi nhan duoc tien: TT {code} <PIN>."
                        ),
                        (true, None) => {
                            format!("Don {code} da giao buu dien. Khi nhan duoc tien: TT {code} <PIN>.")
                        }
                        (false, Some(t)) => format!(
                            "Order {code} handed to the post office, tracking code {t}. Once paid: TT {code} <PIN>."
                        ),
                        (false, None) => {
                            format!("Order {code} handed to the post office. Once paid: TT {code} <PIN>.")
                        }
                    }
                }
                Err(e) => error_text(&e, id, lang),
            }
        }
        Command::Pay(id, pin) => match market.confirm_payment(actor, idem(), h.id, id, &pin).await {
            Ok(o) if vi => format!("Da xac nhan thanh toan don {}.", o.code),
            Ok(o) => format!("Payment for {} confirmed.", o.code),
            Err(MarketError::PinNotSet) => no_pin(market, h, id).await,
            Err(e) => error_text(&e, id, lang),
        },
    }
}

/// A value no other reply has: every text received gets its own reply, even the same text
/// again within the minute.
fn reply_nonce() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 16];
    match OsRng.try_fill_bytes(&mut b) {
        Ok(()) => b.iter().map(|x| format!("{x:02x}")).collect(),
        // No randomness: the time and a counter of this process.
        Err(_) => format!("{}-{}", crate::time::now_ms(), N.fetch_add(1, Ordering::Relaxed)),
    }
}

/// The secret of [`sms_key`]'s keyed digests, drawn once per process (None: the OS had no
/// randomness to give).
fn process_secret() -> Option<&'static [u8; 32]> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    static SECRET: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    SECRET
        .get_or_init(|| {
            let mut k = [0u8; 32];
            OsRng.try_fill_bytes(&mut k).ok().map(|()| k)
        })
        .as_ref()
}

/// The idempotency key of an SMS from `msisdn` in `minute` (an SMSC that repeats a
/// `deliver_sm` repeats it soon: a retransmission within the same minute is the same
/// request). The text itself is never kept:
/// - a command that carries no secret (`DH`, `NHAN`, `HUY`, `GUI` with their arguments,
///   `HD`) is keyed by its canonical form, so its repeats are recognised across restarts and
///   nodes;
/// - anything else (a payment with its PIN, or a text that parses to nothing, which may be a
///   payment mistyped) by a digest keyed with a secret of this process: a plain digest of a
///   text holding a 4-digit PIN gives the PIN back after 10 000 tries. Its repeats are
///   recognised while this process runs.
///
/// The key applies a command once; the reply has a key of its own for every text received
/// ([`reply_nonce`]), so that a repeat is answered too.
fn sms_key(msisdn: &str, minute: i64, body: &str, cmd: &Command) -> String {
    use crate::market::reports::sha256_hex;
    let part = match cmd {
        Command::Orders => "DH".to_owned(),
        Command::Accept(order) => format!("NHAN {order}"),
        Command::Reject(order) => format!("HUY {order}"),
        Command::Ship(order, None) => format!("GUI {order}"),
        // A tracking code as long as the household typed it would make the key too long.
        Command::Ship(order, Some(code)) if code.len() <= 40 => format!("GUI {order} {code}"),
        Command::Ship(order, Some(code)) => format!("GUI {order} {}", sha256_hex(&[code.as_bytes()])),
        Command::Help | Command::Pay(..) => {
            let plain = text::unaccent(body).to_ascii_uppercase();
            let normal = plain.split_whitespace().collect::<Vec<_>>().join(" ");
            if normal == "HD" {
                return format!("sms:{msisdn}:{minute}:HD");
            }
            match process_secret() {
                Some(secret) => sha256_hex(&[secret, normal.as_bytes()]),
                // No secret to key it with: a digest nobody can repeat (no deduplication).
                None => {
                    sha256_hex(&[normal.as_bytes(), format!("{:?}", std::time::Instant::now()).as_bytes()])
                }
            }
        }
    };
    format!("sms:{msisdn}:{minute}:{part}")
}

/// Handles one SMS from a household, a text from a peer that is neither USSD nor a receipt:
/// refused for a number outside the peer's `msisdn_prefixes`; else carries the keyword out,
/// queues the answer, then acknowledges the PDU.
pub async fn handle_request(market: &Market, hotline: &str, req: InboundRequest) {
    let InboundRequest { pdu, session, responder } = req;
    let (Body::DeliverSm(sm) | Body::SubmitSm(sm)) = &pdu.body else {
        responder.respond(status::ESME_RINVCMDID, "").await;
        return;
    };
    let Some(msisdn) = crate::msisdn::normalize(&sm.source.addr) else {
        responder.respond(status::ESME_RINVSRCADR, "").await;
        return;
    };
    if !session.may_speak_for(&msisdn) {
        crate::metrics::smpp_refused(crate::metrics::Refusal::MsisdnPrefix);
        responder.respond(status::ESME_RINVSRCADR, "").await;
        return;
    }
    handle(market, hotline, msisdn, sm, responder).await;
}

/// Runs one household's text (from `msisdn`, canonical) and queues its reply.
async fn handle(market: &Market, hotline: &str, msisdn: String, sm: &Sm, responder: Responder) {
    let body = text::decode_short_message(sm.data_coding, sm.payload());
    let cmd = parse(&body);
    let household = match market.household_by_msisdn(&msisdn).await {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot read household for an SMS");
            responder.respond(status::ESME_RX_T_APPN, "").await;
            return;
        }
    };
    let actor = Actor { msisdn: msisdn.clone(), channel: Channel::Sms };
    // An SMSC that repeats a deliver_sm repeats it soon: a retransmission within the same
    // minute is the same request.
    let minute = crate::time::now_ms() / 60_000;
    let key = sms_key(&msisdn, minute, &body, &cmd);
    let reply = match &household {
        Some(h) => run(market, hotline, &actor, &key, h, cmd).await,
        None => "Cho 384: so nay chua dang ky. Bam *384# de dang ky cua hang.".into(),
    };
    let lang = household.as_ref().map(|h| h.language).unwrap_or(Lang::Vi);
    // Every text gets its reply, a repeat too (with the first outcome, replayed above).
    let reply_key = IdemKey(format!("{key}:reply:{}", reply_nonce()));
    match market.queue_sms(&actor, reply_key, &msisdn, &reply, lang, "keyword_reply").await {
        Ok(_) => responder.respond(status::ESME_ROK, "").await,
        Err(e) => {
            warn!(error = %e, msisdn = %crate::logging::mask_msisdn(&msisdn), "cannot queue the SMS reply");
            responder.respond(status::ESME_RX_T_APPN, "").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_should_parse_whatever_the_case_and_accents() {
        assert_eq!(parse("DH"), Command::Orders);
        assert_eq!(parse(" dh "), Command::Orders);
        assert_eq!(parse("NHAN D000012"), Command::Accept(12));
        assert_eq!(parse("nhận d12"), Command::Accept(12));
        assert_eq!(parse("TT 12 1234"), Command::Pay(12, "1234".into()));
        assert_eq!(parse("tt D000012 1234"), Command::Pay(12, "1234".into()));
        assert_eq!(parse("huy D000012"), Command::Reject(12));
        assert_eq!(parse("Hủy 12"), Command::Reject(12));
        assert_eq!(parse("GUI d12"), Command::Ship(12, None));
        assert_eq!(parse("gửi D12 eb123456789vn"), Command::Ship(12, Some("EB123456789VN".into())));
        assert_eq!(parse("GUI D12 EB1 VN"), Command::Help, "a tracking code is one word");
        assert_eq!(parse("HUY"), Command::Help);
        assert_eq!(parse("HD"), Command::Help);
        assert_eq!(parse("TT 12 12345"), Command::Help, "a PIN has 4 digits");
        assert_eq!(parse("NHAN abc"), Command::Help);
        assert_eq!(parse("xin chào"), Command::Help);
        assert_eq!(parse(""), Command::Help);
    }

    #[test]
    fn sms_keys_should_hold_no_pin_and_match_the_same_text_in_the_same_minute() {
        let key = |msisdn: &str, minute: i64, body: &str| sms_key(msisdn, minute, body, &parse(body));
        let pay = key("84912345678", 7, "tt d12 4821");
        assert!(!pay.contains("4821") && !pay.to_ascii_uppercase().contains("TT"), "{pay}");
        assert_eq!(pay, key("84912345678", 7, " TT  D12 4821 "), "the same text, however spaced");
        assert_ne!(pay, key("84912345678", 7, "TT D12 4822"), "another PIN is another request");
        assert_ne!(pay, key("84912345678", 8, "TT D12 4821"), "another minute");
        assert_ne!(pay, key("84987654321", 7, "TT D12 4821"), "another household");
        // Not the plain digest a dictionary of 10 000 PINs would find.
        assert!(!pay.ends_with(&crate::market::reports::sha256_hex(&[b"TT D12 4821"])));
        // A PIN mistyped so that the text parses to nothing is kept no better than a PIN.
        for typo in ["TTD12 4821", "T T D12 4821", "tt 12 48210"] {
            let k = key("84912345678", 7, typo);
            assert!(!k.contains("4821"), "{k}");
            assert!(
                !k.ends_with(&crate::market::reports::sha256_hex(&[typo.to_ascii_uppercase().as_bytes()]))
            );
        }
        // Commands without a secret: their canonical form, the same however typed.
        assert_eq!(key("84912345678", 7, "nhận d000012"), "sms:84912345678:7:NHAN 12");
        assert_eq!(key("84912345678", 7, " dh "), "sms:84912345678:7:DH");
        assert_eq!(key("84912345678", 7, "hd"), "sms:84912345678:7:HD");
        // Far under the key's limit of 200 characters, whatever the text's length, with
        // the reply's suffix.
        let long = key("84912345678", 29_000_000, &"x".repeat(1000));
        let reply = format!("{long}:reply:{}", reply_nonce());
        assert!(reply.len() < crate::market::MAX_KEY_CHARS, "{reply}");
        assert_eq!(key("84912345678", 7, "gui d12 eb1vn"), "sms:84912345678:7:GUI 12 EB1VN");
        assert_eq!(key("84912345678", 7, "huy d12"), "sms:84912345678:7:HUY 12");
        let long_code = key("84912345678", 29_000_000, &format!("GUI D12 {}", "X".repeat(1000)));
        assert!(
            format!("{long_code}:reply:{}", reply_nonce()).len() < crate::market::MAX_KEY_CHARS,
            "{long_code}"
        );
        // Each reply has a key of its own.
        assert_ne!(reply_nonce(), reply_nonce());
    }

    #[test]
    fn help_should_list_every_keyword_and_whom_to_call_in_one_gsm_sms() {
        let h = Household {
            id: 2,
            msisdn: "84912345678".into(),
            name: "Lý Thị Mai".into(),
            village_id: 1,
            village_name: "Bản Chu".into(),
            commune_code: 6001,
            commune_name: "Xã Đoàn Kết".into(),
            language: Lang::Vi,
            has_epay: false,
            is_leader: false,
            has_pin: false,
            pending: false,
            pin_locked_until_ms: 0,
        };
        let leader = crate::market::Leader { name: "Hoàng Văn Minh".into(), msisdn: "84987000001".into() };
        let itself = crate::market::Leader { name: h.name.clone(), msisdn: h.msisdn.clone() };
        for lang in [Lang::Vi, Lang::En] {
            for (l, hotline) in
                [(None, ""), (Some(&leader), ""), (Some(&itself), "1800 1234"), (None, "1800 1234")]
            {
                let h = help(lang, Some(&contact(lang, &h, l, hotline)));
                assert!(text::gsm_septets(&h).is_some_and(|n| n <= 160), "{h}");
                for k in ["DH", "NHAN <", "HUY <", "GUI <", "TT <", "*384#"] {
                    assert!(h.contains(k), "{k}: {h}");
                }
                assert!(!h.contains("84987") && !h.contains("912345678"), "{h}");
            }
        }
        let vi = |l, hotline| help(Lang::Vi, Some(&contact(Lang::Vi, &h, l, hotline)));
        assert!(vi(Some(&leader), "1800 1234").ends_with("Bam *384#. To truong: 0987000001"));
        // A leader is not told to call themselves: the hotline, else the commune.
        assert!(vi(Some(&itself), "1800 1234").ends_with("Bam *384#. Duong day nong: 1800 1234"));
        assert!(vi(Some(&itself), "").ends_with("Bam *384#. Goi UBND Xa Doan Ket"));
    }

    fn order(id: i64, status: OrderStatus) -> Order {
        Order {
            id,
            code: crate::market::order_code(id),
            listing_id: 1,
            household_id: 1,
            product_name_vi: "Hoa hồi".into(),
            product_name_en: "Star anise".into(),
            unit: "kg".into(),
            buyer_name: "B".into(),
            buyer_phone: None,
            delivery: None,
            quantity_kg: 20,
            amount: 3_000_000,
            status,
            created_at_ms: 0,
        }
    }

    #[test]
    fn open_orders_should_fit_one_sms_and_say_how_many_more_there_are() {
        let one = orders_text(&[order(12, OrderStatus::New)], Lang::Vi);
        assert_eq!(one, "Don hang (1): D000012 20 kg Hoa hoi 3.000.000d (moi).");
        let en = orders_text(&[order(12, OrderStatus::Accepted)], Lang::En);
        assert_eq!(en, "Orders (1): D000012 20 kg star anise 3,000,000 VND (accepted).");
        let many: Vec<Order> = (1..=9).map(|i| order(i, OrderStatus::New)).collect();
        for lang in [Lang::Vi, Lang::En] {
            let t = orders_text(&many, lang);
            assert!(text::gsm_septets(&t).is_some_and(|n| n <= 160), "{t}");
            let shown = t.matches("D0000").count();
            assert!((1..9).contains(&shown), "{t}");
            let more = match lang {
                Lang::Vi => format!("; va {} don khac. Bam *384#, chon 2.", 9 - shown),
                Lang::En => format!("; and {} more. Dial *384#, choose 2.", 9 - shown),
            };
            assert!(t.ends_with(&more) && t.contains("(9)"), "{t}");
        }
    }

    #[test]
    fn a_refused_move_should_say_why_and_what_can_be_done() {
        assert_eq!(
            refusal("D000012", OrderStatus::Shipped, OrderMove::Reject, Lang::Vi),
            "Don D000012 da giao buu dien, khong the tu choi. Co the: TT D000012 <PIN>."
        );
        assert_eq!(
            refusal("D000012", OrderStatus::New, OrderMove::Ship, Lang::En),
            "Order D000012 is new: it cannot be handed to post. You can: NHAN D000012, HUY D000012."
        );
        assert_eq!(
            refusal("D000012", OrderStatus::Paid, OrderMove::Accept, Lang::Vi),
            "Don D000012 da thanh toan, khong the nhan don."
        );
    }
}
