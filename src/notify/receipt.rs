//! Delivery receipts: what an SMSC says became of a message, and matching its id to the
//! id `submit_sm_resp` gave, whatever base and padding each of them uses.
//!
//! The `receipted_message_id` and `message_state` TLVs are read first; the receipt text
//! (`id:… sub:… dlvr:… submit date:… done date:… stat:DELIVRD err:000 text:…`) second.

use crate::config::ReceiptIds;
use crate::smpp::pdu::{Sm, tag};

/// Final states a receipt can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered to the handset.
    Delivered,
    /// Not delivered (undeliverable, rejected, expired at the SMSC, deleted, unknown).
    Failed,
    /// Still on its way (ENROUTE, ACCEPTD): not final.
    Pending,
}

/// A parsed delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id as the SMSC wrote it.
    pub message_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The state word (DELIVRD, UNDELIV, …) for the record.
    pub state: String,
    /// The error code from the text (`err:`), when given.
    pub error: Option<String>,
}

/// SMPP `message_state` values (section 5.2.28).
fn outcome_of_state_code(code: u8) -> (Outcome, &'static str) {
    match code {
        1 => (Outcome::Pending, "ENROUTE"),
        2 => (Outcome::Delivered, "DELIVRD"),
        3 => (Outcome::Failed, "EXPIRED"),
        4 => (Outcome::Failed, "DELETED"),
        5 => (Outcome::Failed, "UNDELIV"),
        6 => (Outcome::Pending, "ACCEPTD"),
        7 => (Outcome::Failed, "UNKNOWN"),
        8 => (Outcome::Failed, "REJECTD"),
        _ => (Outcome::Failed, "UNKNOWN"),
    }
}

fn outcome_of_stat(stat: &str) -> Outcome {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Outcome::Delivered,
        "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "BUFFRED" => Outcome::Pending,
        _ => Outcome::Failed,
    }
}

/// Reads `key:value` from the receipt text; values end at the next space (`text:` runs to
/// the end and is not needed).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(key) {
        let start = from + pos;
        let at_word_start = start == 0 || lower.as_bytes()[start - 1] == b' ';
        let after = start + key.len();
        if at_word_start && lower.as_bytes().get(after) == Some(&b':') {
            let rest = &text[after + 1..];
            let end = rest.find(' ').unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        from = after;
    }
    None
}

/// Whether a deliver_sm is a delivery receipt (esm_class message type 0x04 or 0x08).
pub fn is_receipt(sm: &Sm) -> bool {
    matches!(sm.esm_class & 0x3C, 0x04 | 0x08)
}

/// Parses a receipt from a deliver_sm: TLVs first, then the text.
pub fn parse(sm: &Sm) -> Option<Receipt> {
    let text = String::from_utf8_lossy(sm.payload());
    let tlv_id = sm.tlvs.get_cstr(tag::RECEIPTED_MESSAGE_ID).filter(|s| !s.is_empty());
    let tlv_state = sm.tlvs.get_u8(tag::MESSAGE_STATE);
    let text_id = field(&text, "id").map(str::to_owned);
    let stat = field(&text, "stat");
    let error = field(&text, "err").map(str::to_owned);
    let message_id = tlv_id.or(text_id)?;
    let (outcome, state) = match (tlv_state, stat) {
        (Some(code), _) => {
            let (o, s) = outcome_of_state_code(code);
            (o, s.to_owned())
        }
        (None, Some(stat)) => (outcome_of_stat(stat), stat.to_ascii_uppercase()),
        (None, None) => return None,
    };
    Some(Receipt { message_id, outcome, state, error })
}

/// The canonical form of a message id: trimmed, lower case, leading zeros dropped.
pub fn canonical(id: &str) -> String {
    let t = id.trim().to_ascii_lowercase();
    let s = t.trim_start_matches('0');
    if s.is_empty() && !t.is_empty() { "0".to_owned() } else { s.to_owned() }
}

/// The canonical form, as `submit_sm_resp` gave it, of the id a receipt reports, given
/// how this SMSC writes receipt ids. An SMSC that answered `submit_sm_resp` with hex `0A1B`
/// and reports `id:0000002587` is configured `receipt_ids = "decimal"`; leading zeros and
/// case never matter. `None` when the id does not read in the configured base.
pub fn response_form(id: &str, ids: ReceiptIds) -> Option<String> {
    let c = canonical(id);
    match ids {
        ReceiptIds::AsGiven => Some(c),
        ReceiptIds::Decimal => c.parse::<u128>().ok().map(|n| format!("{n:x}")),
        ReceiptIds::Hex => u128::from_str_radix(&c, 16).ok().map(|n| n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn receipt_sm(text: &str) -> Sm {
        Sm { esm_class: 0x04, short_message: Bytes::copy_from_slice(text.as_bytes()), ..Sm::default() }
    }

    #[test]
    fn text_receipt_should_parse() {
        let sm = receipt_sm(
            "id:0000002587 sub:001 dlvr:001 submit date:2611231010 done date:2611231011 stat:DELIVRD err:000 text:Don hang",
        );
        assert!(is_receipt(&sm));
        let r = parse(&sm).unwrap();
        assert_eq!(r.message_id, "0000002587");
        assert_eq!(
            (r.outcome, r.state.as_str(), r.error.as_deref()),
            (Outcome::Delivered, "DELIVRD", Some("000"))
        );
        let r = parse(&receipt_sm("id:ab12 sub:001 dlvr:000 submit date:x done date:y stat:UNDELIV err:001"))
            .unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
    }

    #[test]
    fn tlvs_should_win_over_the_text() {
        let mut sm = receipt_sm("id:999 stat:UNDELIV");
        sm.tlvs.set(tag::RECEIPTED_MESSAGE_ID, b"0A1B\0".to_vec());
        sm.tlvs.set(tag::MESSAGE_STATE, vec![2u8]);
        let r = parse(&sm).unwrap();
        assert_eq!((r.message_id.as_str(), r.outcome), ("0A1B", Outcome::Delivered));
    }

    #[test]
    fn ordinary_messages_should_not_be_receipts() {
        let sm = Sm { esm_class: 0, short_message: Bytes::from_static(b"DH"), ..Sm::default() };
        assert!(!is_receipt(&sm));
        assert_eq!(parse(&receipt_sm("hello there")), None);
    }

    #[test]
    fn ids_should_match_across_bases_and_padding_as_configured() {
        // hex in the response, decimal with zeros in the receipt
        assert_eq!(response_form("0000002587", ReceiptIds::Decimal), Some(canonical("0A1B")));
        // decimal in the response, hex in the receipt
        assert_eq!(response_form("0A1B", ReceiptIds::Hex), Some(canonical("2587")));
        // the same base, with and without zeros and case
        assert_eq!(response_form("00042", ReceiptIds::AsGiven), Some(canonical("42")));
        assert_eq!(response_form("AbC", ReceiptIds::AsGiven), Some("abc".to_owned()));
        assert_eq!(response_form("xyz", ReceiptIds::Decimal), None);
        assert_eq!(canonical("0000"), "0");
        assert_eq!(canonical(" AbC "), "abc");
    }

    proptest! {
        #[test]
        fn any_number_should_match_in_hex_or_decimal_with_zeros(n in any::<u64>(), pad in 0usize..6, upper in any::<bool>()) {
            let hex = if upper { format!("{n:X}") } else { format!("{n:x}") };
            let dec = n.to_string();
            let z = "0".repeat(pad);
            let (padded_dec, padded_hex) = (format!("{z}{dec}"), format!("{z}{hex}"));
            prop_assert_eq!(response_form(&padded_dec, ReceiptIds::Decimal), Some(canonical(&hex)));
            prop_assert_eq!(response_form(&padded_hex, ReceiptIds::Hex), Some(canonical(&dec)));
            prop_assert_eq!(response_form(&padded_dec, ReceiptIds::AsGiven), Some(canonical(&dec)));
        }

        #[test]
        fn parse_should_never_panic(text in ".{0,200}", esm in any::<u8>()) {
            let sm = Sm { esm_class: esm, short_message: Bytes::copy_from_slice(text.as_bytes()), ..Sm::default() };
            let _ = parse(&sm);
        }
    }
}
