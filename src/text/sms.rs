//! Splitting long texts into concatenated SMS parts (8-bit reference UDH).

use super::TextError;
use super::coding::{Encoding, encode_text};
use super::gsm::ESC;

/// Septets in a single, unconcatenated GSM SMS.
pub const SMS_GSM_SINGLE_MAX: usize = 160;
/// UTF-16 units in a single, unconcatenated UCS2 SMS.
pub const SMS_UCS2_SINGLE_MAX: usize = 70;
/// Septets per part of a concatenated GSM SMS (after the 6-octet UDH).
pub const SMS_GSM_PART_MAX: usize = 153;
/// UTF-16 units per part of a concatenated UCS2 SMS (after the 6-octet UDH).
pub const SMS_UCS2_PART_MAX: usize = 67;
/// Most parts one concatenated SMS can have (the UDH counts them in one octet).
pub const SMS_MAX_PARTS: usize = 255;
/// Length of the concatenation UDH `05 00 03 ref total seq`.
pub const CONCAT_UDH_LEN: usize = 6;

/// One SMS part: the full `short_message` (UDH included when concatenated) and
/// whether `esm_class` needs the UDHI bit (0x40).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsPart {
    /// Whether `bytes` starts with a user data header (set UDHI 0x40 in `esm_class`).
    pub udhi: bool,
    /// The `short_message` octets: optional UDH, then unpacked GSM septets or UTF-16BE.
    pub bytes: Vec<u8>,
}

/// End (exclusive, in bytes) of the part starting at `start`, never splitting a
/// GSM escape pair or a UTF-16 surrogate pair.
fn part_end(bytes: &[u8], start: usize, encoding: Encoding) -> usize {
    let len = bytes.len();
    match encoding {
        Encoding::Gsm7 => {
            let end = (start + SMS_GSM_PART_MAX).min(len);
            // Every 0x1B in encoder output is an escape prefix (no extension code is 0x1B).
            if end < len && bytes.get(end - 1) == Some(&ESC) { end - 1 } else { end }
        }
        Encoding::Ucs2 => {
            let end = (start + SMS_UCS2_PART_MAX * 2).min(len);
            let high_surrogate = end >= 2 && matches!(bytes.get(end - 2), Some(0xD8..=0xDB));
            if end < len && high_surrogate { end - 2 } else { end }
        }
    }
}

/// Splits `text` (encoded as [`encode_text`] chooses) into SMS parts.
///
/// A single part without UDH if it fits (160 GSM septets or 70 UCS2 units);
/// otherwise parts carrying the 6-octet UDH `05 00 03 reference total seq`
/// (seq from 1) and at most 153 septets (GSM, unpacked one per octet, escape
/// pairs never split) or 67 UTF-16 units (surrogate pairs never split).
///
/// # Errors
/// [`TextError::TooManyParts`] if more than 255 parts would be needed.
pub fn split_sms(text: &str, allow_ucs2: bool, reference: u8) -> Result<(Encoding, Vec<SmsPart>), TextError> {
    let encoded = encode_text(text, allow_ucs2);
    let encoding = encoded.encoding;
    let single_max = match encoding {
        Encoding::Gsm7 => SMS_GSM_SINGLE_MAX,
        Encoding::Ucs2 => SMS_UCS2_SINGLE_MAX,
    };
    if encoded.chars <= single_max {
        let part = SmsPart { udhi: false, bytes: encoded.bytes };
        return Ok((encoding, vec![part]));
    }

    let bytes = encoded.bytes;
    let mut parts = 0usize;
    let mut start = 0usize;
    while start < bytes.len() {
        start = part_end(&bytes, start, encoding);
        parts += 1;
    }
    let Ok(total) = u8::try_from(parts) else {
        return Err(TextError::TooManyParts { parts });
    };

    let mut out = Vec::with_capacity(parts);
    let mut start = 0usize;
    let mut seq: u8 = 0;
    while start < bytes.len() {
        let end = part_end(&bytes, start, encoding);
        seq = seq.wrapping_add(1);
        let mut part = Vec::with_capacity(CONCAT_UDH_LEN + (end - start));
        part.extend_from_slice(&[0x05, 0x00, 0x03, reference, total, seq]);
        part.extend_from_slice(&bytes[start..end]);
        out.push(SmsPart { udhi: true, bytes: part });
        start = end;
    }
    Ok((encoding, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{gsm_decode, ucs2_decode, unaccent};
    use proptest::prelude::*;

    fn reassemble(encoding: Encoding, parts: &[SmsPart]) -> String {
        parts
            .iter()
            .map(|p| {
                let body = if p.udhi { &p.bytes[CONCAT_UDH_LEN..] } else { &p.bytes[..] };
                match encoding {
                    Encoding::Gsm7 => gsm_decode(body),
                    Encoding::Ucs2 => ucs2_decode(body),
                }
            })
            .collect()
    }

    /// TP-UD octets on the air: UDH octets plus packed septets, where the
    /// septets start on a septet boundary after the UDH (fill bits).
    fn tp_ud_octets(encoding: Encoding, part: &SmsPart) -> usize {
        let udh = if part.udhi { CONCAT_UDH_LEN } else { 0 };
        let body = part.bytes.len() - udh;
        match encoding {
            Encoding::Gsm7 => (((udh * 8).div_ceil(7) + body) * 7).div_ceil(8),
            Encoding::Ucs2 => part.bytes.len(),
        }
    }

    #[test]
    fn short_text_should_be_single_part_without_udh() {
        let (enc, parts) = split_sms(&"a".repeat(160), true, 7).unwrap();
        assert_eq!(enc, Encoding::Gsm7);
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].udhi);
        assert_eq!(parts[0].bytes.len(), 160);
        let (enc, parts) = split_sms(&"ư".repeat(70), true, 7).unwrap();
        assert_eq!(enc, Encoding::Ucs2);
        assert_eq!(parts, vec![SmsPart { udhi: false, bytes: crate::text::ucs2_encode(&"ư".repeat(70)) }]);
    }

    #[test]
    fn long_gsm_text_should_split_at_153_septets_with_udh() {
        let (enc, parts) = split_sms(&"a".repeat(161), true, 0x2A).unwrap();
        assert_eq!(enc, Encoding::Gsm7);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.udhi));
        assert_eq!(&parts[0].bytes[..6], &[0x05, 0x00, 0x03, 0x2A, 2, 1]);
        assert_eq!(&parts[1].bytes[..6], &[0x05, 0x00, 0x03, 0x2A, 2, 2]);
        assert_eq!(parts[0].bytes.len(), 6 + 153);
        assert_eq!(parts[1].bytes.len(), 6 + 8);
    }

    #[test]
    fn escape_pair_should_not_be_split_across_parts() {
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let (_, parts) = split_sms(&text, true, 1).unwrap();
        assert_eq!(parts[0].bytes.len(), 6 + 152);
        assert_eq!(&parts[1].bytes[6..8], &[0x1B, 0x65]);
        assert_eq!(reassemble(Encoding::Gsm7, &parts), text);
    }

    #[test]
    fn long_ucs2_text_should_split_at_67_units() {
        let (enc, parts) = split_sms(&"ă".repeat(71), true, 9).unwrap();
        assert_eq!(enc, Encoding::Ucs2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].bytes.len(), 6 + 134);
        assert_eq!(parts[1].bytes.len(), 6 + 8);
    }

    #[test]
    fn surrogate_pair_should_not_be_split_across_parts() {
        let text = format!("{}😀{}", "ă".repeat(66), "ơ".repeat(10));
        let (_, parts) = split_sms(&text, true, 1).unwrap();
        assert_eq!(parts[0].bytes.len(), 6 + 132);
        assert_eq!(&parts[1].bytes[6..8], &[0xD8, 0x3D]);
        assert_eq!(reassemble(Encoding::Ucs2, &parts), text);
    }

    #[test]
    fn vietnamese_should_be_unaccented_when_ucs2_not_allowed() {
        let (enc, parts) = split_sms("Trợ giúp", false, 1).unwrap();
        assert_eq!(enc, Encoding::Gsm7);
        assert_eq!(gsm_decode(&parts[0].bytes), "Tro giup");
    }

    #[test]
    fn more_than_255_parts_should_be_rejected() {
        let max = "a".repeat(SMS_MAX_PARTS * SMS_GSM_PART_MAX);
        assert_eq!(split_sms(&max, true, 1).unwrap().1.len(), 255);
        let over = format!("{max}a");
        assert_eq!(split_sms(&over, true, 1), Err(TextError::TooManyParts { parts: 256 }));
    }

    #[test]
    fn empty_text_should_be_one_empty_part() {
        assert_eq!(
            split_sms("", true, 0).unwrap(),
            (Encoding::Gsm7, vec![SmsPart { udhi: false, bytes: vec![] }])
        );
    }

    fn mixed_text() -> impl Strategy<Value = String> {
        let pool: Vec<char> = "abc xyz09.€[]{}^~|\\ăâđêôơưỳữ😀🇻中\u{0C}".chars().collect();
        proptest::collection::vec(proptest::sample::select(pool), 0..700)
            .prop_map(|v| v.into_iter().collect())
    }

    fn gsm_text() -> impl Strategy<Value = String> {
        let pool: Vec<char> = "abc xyz09.€[]{}^~|\\@£àéΔ".chars().collect();
        proptest::collection::vec(proptest::sample::select(pool), 0..700)
            .prop_map(|v| v.into_iter().collect())
    }

    fn check_parts(encoding: Encoding, parts: &[SmsPart], reference: u8) -> Result<(), TestCaseError> {
        prop_assert!(!parts.is_empty());
        for (i, p) in parts.iter().enumerate() {
            prop_assert!(tp_ud_octets(encoding, p) <= 140);
            prop_assert_eq!(p.udhi, parts.len() > 1);
            if p.udhi {
                prop_assert_eq!(
                    &p.bytes[..6],
                    &[0x05, 0x00, 0x03, reference, parts.len() as u8, (i + 1) as u8][..]
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn split_parts_should_reassemble_to_original(s in mixed_text(), reference in any::<u8>()) {
            let (enc, parts) = split_sms(&s, true, reference).unwrap();
            check_parts(enc, &parts, reference)?;
            prop_assert_eq!(reassemble(enc, &parts), s);
        }

        #[test]
        fn split_gsm_parts_should_reassemble_to_original(s in gsm_text(), reference in any::<u8>()) {
            let (enc, parts) = split_sms(&s, true, reference).unwrap();
            prop_assert_eq!(enc, Encoding::Gsm7);
            check_parts(enc, &parts, reference)?;
            prop_assert_eq!(reassemble(enc, &parts), s);
        }

        #[test]
        fn split_without_ucs2_should_reassemble_to_unaccented(s in mixed_text()) {
            let (enc, parts) = split_sms(&s, false, 3).unwrap();
            prop_assert_eq!(enc, Encoding::Gsm7);
            check_parts(enc, &parts, 3)?;
            prop_assert_eq!(reassemble(enc, &parts), unaccent(&s));
        }
    }
}
