//! SMS fallback for when USSD fails: a household texts a keyword to the service number and
//! is answered by SMS.
//!
//! | text | what |
//! | --- | --- |
//! | `DH` | open orders |
//! | `NHAN <order>` | accept an order |
//! | `TT <order> <PIN>` | confirm a payment |
//! | `HD` | help |
//!
//! Anything else gets the help text. Keywords and order codes are case- and
//! accent-insensitive (`nhận d12` works). The reply is queued in the outbox in the same
//! transaction as the action, and the `deliver_sm` is answered only after that commit.

use crate::market::{Actor, Channel, Household, IdemKey, Lang, Market, MarketError, OrderMove, money};
use crate::smpp::pdu::Sm;
use crate::smpp::session::Responder;
use crate::smpp::status;
use crate::text;
use tracing::warn;

/// A parsed keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `DH`: open orders.
    Orders,
    /// `NHAN <order>`: accept.
    Accept(i64),
    /// `TT <order> <PIN>`: confirm payment.
    Pay(i64, String),
    /// `HD` or anything unknown.
    Help,
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
        ["TT", order, pin] if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) => {
            order_id(order).map_or(Command::Help, |id| Command::Pay(id, (*pin).to_owned()))
        }
        _ => Command::Help,
    }
}

fn help(lang: Lang) -> String {
    match lang {
        Lang::Vi => "Cho 384: DH = xem don hang; NHAN <ma don> = nhan don; TT <ma don> <PIN> = xac nhan thanh toan. Hoac bam *384#.".into(),
        Lang::En => "Market 384: DH = open orders; NHAN <order> = accept; TT <order> <PIN> = confirm payment. Or dial *384#.".into(),
    }
}

fn error_text(e: &MarketError, lang: Lang) -> String {
    let vi = matches!(lang, Lang::Vi);
    match e {
        MarketError::PinWrong { remaining } if vi => format!("Sai ma PIN. Con {remaining} lan."),
        MarketError::PinWrong { remaining } => format!("Wrong PIN. {remaining} tries left."),
        MarketError::PinLocked { .. } if vi => "Sai PIN 5 lan. Tam khoa xac nhan thanh toan 15 phut.".into(),
        MarketError::PinLocked { .. } => "5 wrong PINs. Payment confirmation locked for 15 min.".into(),
        MarketError::PinNotSet if vi => "Chua co ma PIN. Bam *384#, chon 3 de tao PIN.".into(),
        MarketError::PinNotSet => "No PIN yet. Dial *384#, choose 3 to set one.".into(),
        MarketError::NotFound(_) if vi => "Khong tim thay don hang.".into(),
        MarketError::NotFound(_) => "Order not found.".into(),
        _ if vi => "Khong the thuc hien. Bam *384# hoac goi to truong.".into(),
        _ => "This cannot be done. Dial *384# or call your team leader.".into(),
    }
}

/// What to answer `household` for `cmd`, after carrying it out.
async fn run(market: &Market, actor: &Actor, key: &str, h: &Household, cmd: Command) -> String {
    let lang = h.language;
    let vi = matches!(lang, Lang::Vi);
    match cmd {
        Command::Help => help(lang),
        Command::Orders => match market.open_orders(h.id).await {
            Ok(orders) if orders.is_empty() => {
                if vi { "Chua co don hang moi." } else { "No open orders." }.into()
            }
            Ok(orders) => {
                let list: Vec<String> = orders
                    .iter()
                    .take(5)
                    .map(|o| {
                        let name = if vi { &o.product_name_vi } else { &o.product_name_en };
                        format!("{} {}kg {} {}", o.code, o.quantity_kg, name, money(o.amount, lang))
                    })
                    .collect();
                let head = if vi { "Don hang: " } else { "Orders: " };
                format!("{head}{}", list.join("; "))
            }
            Err(e) => error_text(&e, lang),
        },
        Command::Accept(id) => {
            match market.move_order(actor, IdemKey(key.to_owned()), h.id, id, OrderMove::Accept, None).await {
                Ok(o) if vi => format!("Da nhan don {}. Hay chuan bi hang.", o.code),
                Ok(o) => format!("Order {} accepted. Prepare the goods.", o.code),
                Err(e) => error_text(&e, lang),
            }
        }
        Command::Pay(id, pin) => {
            match market.confirm_payment(actor, IdemKey(key.to_owned()), h.id, id, &pin).await {
                Ok(o) if vi => format!("Da xac nhan thanh toan don {}.", o.code),
                Ok(o) => format!("Payment for {} confirmed.", o.code),
                Err(e) => error_text(&e, lang),
            }
        }
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
/// - a command that carries no secret (`DH`, `NHAN <order>`, `HD`) is keyed by its
///   canonical form, so its repeats are recognised across restarts and nodes;
/// - anything else (a payment with its PIN, or a text that parses to nothing, which may be a
///   payment mistyped) by a digest keyed with a secret of this process: a plain digest of a
///   text holding a 4-digit PIN gives the PIN back after 10 000 tries. Its repeats are
///   recognised while this process runs.
fn sms_key(msisdn: &str, minute: u64, body: &str, cmd: &Command) -> String {
    use crate::market::reports::sha256_hex;
    let part = match cmd {
        Command::Orders => "DH".to_owned(),
        Command::Accept(order) => format!("NHAN {order}"),
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

/// Handles one SMS from a household: carries the keyword out, queues the answer, then
/// acknowledges the PDU.
pub async fn handle(market: &Market, sm: &Sm, responder: Responder) {
    let Some(msisdn) = crate::msisdn::normalize(&sm.source.addr) else {
        responder.respond(status::ESME_RINVSRCADR, "").await;
        return;
    };
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
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0);
    let key = sms_key(&msisdn, minute, &body, &cmd);
    let reply = match &household {
        Some(h) => run(market, &actor, &key, h, cmd).await,
        None => "Cho 384: so nay chua dang ky. Bam *384# de dang ky cua hang.".into(),
    };
    let lang = household.as_ref().map(|h| h.language).unwrap_or(Lang::Vi);
    match market
        .queue_sms(&actor, IdemKey(format!("{key}:reply")), &msisdn, &reply, lang, "keyword_reply")
        .await
    {
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
        assert_eq!(parse("HD"), Command::Help);
        assert_eq!(parse("TT 12 12345"), Command::Help, "a PIN has 4 digits");
        assert_eq!(parse("NHAN abc"), Command::Help);
        assert_eq!(parse("xin chào"), Command::Help);
        assert_eq!(parse(""), Command::Help);
    }

    #[test]
    fn sms_keys_should_hold_no_pin_and_match_the_same_text_in_the_same_minute() {
        let key = |msisdn: &str, minute: u64, body: &str| sms_key(msisdn, minute, body, &parse(body));
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
        assert!(format!("{long}:reply").len() < crate::market::MAX_KEY_CHARS, "{long}");
    }

    #[test]
    fn help_should_fit_one_gsm_sms() {
        for lang in [Lang::Vi, Lang::En] {
            let h = help(lang);
            assert!(text::gsm_septets(&h).is_some_and(|n| n <= 160), "{h}");
        }
    }
}
