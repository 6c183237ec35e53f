//! Choosing an encoding for outbound text, fitting USSD screens, and decoding
//! inbound `short_message` by `data_coding`.

use std::fmt;

use super::TextError;
use super::gsm::{char_septets, gsm_code, gsm_decode, push_code};
use super::ucs2::{ucs2_decode, ucs2_encode_into};
use super::unaccent::{for_each_unaccented, unaccented_septets};

/// Septets in one USSD screen (182 septets = 160 octets packed).
pub const USSD_GSM_MAX: usize = 182;
/// UTF-16 code units in one USSD screen (160 octets).
pub const USSD_UCS2_MAX: usize = 80;

/// The alphabet a `short_message` is encoded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet, unpacked (one septet per octet).
    Gsm7,
    /// UTF-16BE ("UCS2").
    Ucs2,
}

impl Encoding {
    /// SMPP `data_coding` value: `Gsm7` → 0x00 (SMSC default alphabet),
    /// `Ucs2` → 0x08.
    #[must_use]
    #[inline]
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// Maximum length, in this encoding's units, of one USSD screen.
    #[must_use]
    #[inline]
    pub fn ussd_max(self) -> usize {
        match self {
            Encoding::Gsm7 => USSD_GSM_MAX,
            Encoding::Ucs2 => USSD_UCS2_MAX,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM 7-bit",
            Encoding::Ucs2 => "UCS2",
        })
    }
}

/// A text ready to put in `short_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The encoding of `bytes`; see [`Encoding::data_coding`].
    pub encoding: Encoding,
    /// Unpacked GSM septets (one per octet) or UTF-16BE.
    pub bytes: Vec<u8>,
    /// Length in the encoding's units: septets (GSM) or UTF-16 code units (UCS2).
    pub chars: usize,
}

/// Length of `text` in the units of the encoding [`encode_text`] would choose,
/// without allocating: septets for GSM, UTF-16 code units for UCS2.
#[must_use]
pub fn measure(text: &str, allow_ucs2: bool) -> (Encoding, usize) {
    Lengths::of(text, allow_ucs2).measure()
}

/// The length of a text in the units [`measure`] may count it in for one setting of
/// `allow_ucs2`. Every count is made character by character, so the lengths of pieces
/// (measured with the same setting) add up to the length of their concatenation: a page
/// can be sized from pieces measured once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    /// GSM septets (of the unaccented text when UCS2 is not allowed), or `None` when a
    /// character is not in the GSM alphabet.
    gsm: Option<usize>,
    /// UTF-16 code units (counted only when UCS2 is allowed).
    ucs2: usize,
}

impl Lengths {
    /// The lengths of `text`.
    #[must_use]
    pub fn of(text: &str, allow_ucs2: bool) -> Self {
        if !allow_ucs2 {
            return Lengths { gsm: Some(unaccented_septets(text)), ucs2: 0 };
        }
        // Both counts in one pass over the characters (the pieces of every screen are
        // measured this way).
        let mut gsm = Some(0usize);
        let mut ucs2 = 0;
        for c in text.chars() {
            ucs2 += c.len_utf16();
            gsm = gsm.and_then(|n| char_septets(c).map(|s| n + s));
        }
        Lengths { gsm, ucs2 }
    }

    /// The lengths of `n` characters of the GSM basic alphabet that are ASCII (digits,
    /// letters, `.`, space, newline), whatever the setting.
    #[must_use]
    pub fn ascii(n: usize) -> Self {
        Lengths { gsm: Some(n), ucs2: n }
    }

    /// The lengths of the two texts one after the other.
    #[must_use]
    pub fn plus(self, other: Lengths) -> Self {
        Lengths { gsm: self.gsm.zip(other.gsm).map(|(a, b)| a + b), ucs2: self.ucs2 + other.ucs2 }
    }

    /// What [`measure`] gives for the text, with the setting it was measured with.
    #[must_use]
    pub fn measure(self) -> (Encoding, usize) {
        match self.gsm {
            Some(n) => (Encoding::Gsm7, n),
            None => (Encoding::Ucs2, self.ucs2),
        }
    }
}

/// Encodes `text` given the measurement from [`measure`], allocating exactly once.
fn encode_measured(text: &str, allow_ucs2: bool, encoding: Encoding, chars: usize) -> Encoded {
    match encoding {
        Encoding::Ucs2 => {
            let mut bytes = Vec::with_capacity(chars * 2);
            ucs2_encode_into(text, &mut bytes);
            Encoded { encoding, bytes, chars }
        }
        Encoding::Gsm7 => {
            let mut bytes = Vec::with_capacity(chars);
            // Every char reaching `push_code` is representable (`measure` chose
            // GSM only for GSM text, and unaccented text is GSM): '?' is unused.
            if allow_ucs2 {
                for c in text.chars() {
                    push_code(&mut bytes, gsm_code(c).unwrap_or(b'?'));
                }
            } else {
                for_each_unaccented(text, |c| push_code(&mut bytes, gsm_code(c).unwrap_or(b'?')));
            }
            let chars = bytes.len();
            Encoded { encoding, bytes, chars }
        }
    }
}

/// Chooses the encoding and encodes `text`.
///
/// If `allow_ucs2` is false the text is [`unaccent`](super::unaccent)ed and sent
/// as GSM (so "Bà" becomes "Ba" even though `à` is in the GSM alphabet);
/// otherwise it is sent as GSM when [`is_gsm`](super::is_gsm) holds (no
/// Vietnamese or other non-GSM characters) and as UCS2 otherwise.
#[must_use]
pub fn encode_text(text: &str, allow_ucs2: bool) -> Encoded {
    let (encoding, chars) = measure(text, allow_ucs2);
    encode_measured(text, allow_ucs2, encoding, chars)
}

/// Encodes `text` as [`encode_text`] does, checking that it fits one USSD screen
/// ([`USSD_GSM_MAX`] septets or [`USSD_UCS2_MAX`] UTF-16 units).
///
/// # Errors
/// [`TextError::TooLong`] if it does not fit; nothing is allocated then.
pub fn fit_ussd(text: &str, allow_ucs2: bool) -> Result<Encoded, TextError> {
    let (encoding, chars) = measure(text, allow_ucs2);
    let max = encoding.ussd_max();
    if chars > max {
        return Err(TextError::TooLong { len: chars, max, encoding });
    }
    Ok(encode_measured(text, allow_ucs2, encoding, chars))
}

/// Latin-1: every byte is the code point of the same value.
fn latin1_decode(octets: &[u8]) -> String {
    octets.iter().map(|&b| char::from(b)).collect()
}

/// IA5 / ASCII: bytes above 0x7F become U+FFFD.
fn ia5_decode(octets: &[u8]) -> String {
    octets.iter().map(|&b| if b.is_ascii() { char::from(b) } else { char::REPLACEMENT_CHARACTER }).collect()
}

/// How an inbound `data_coding` value is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    Gsm,
    Ia5,
    Latin1,
    Ucs2,
}

fn alphabet_of(data_coding: u8) -> Alphabet {
    match data_coding {
        0x00 => Alphabet::Gsm,
        0x01 => Alphabet::Ia5,
        0x08 => Alphabet::Ucs2,
        // 0x02/0x04 8-bit binary, 0x03 Latin-1, other SMPP-specific values.
        0x02..=0x0F => Alphabet::Latin1,
        // General data coding groups (uncompressed / automatic deletion): bits 3-2.
        0x10..=0x1F | 0x40..=0x7F => match (data_coding >> 2) & 0x03 {
            0 => Alphabet::Gsm,
            2 => Alphabet::Ucs2,
            _ => Alphabet::Latin1,
        },
        // Message waiting indication groups: discard/store with the default
        // alphabet, store with UCS2 (3GPP TS 23.038 §4).
        0xC0..=0xDF => Alphabet::Gsm,
        0xE0..=0xEF => Alphabet::Ucs2,
        // Data coding / message class group: bit 2 selects 8-bit data.
        0xF0..=0xFF => {
            if data_coding & 0x04 != 0 {
                Alphabet::Latin1
            } else {
                Alphabet::Gsm
            }
        }
        // Compressed and reserved groups.
        _ => Alphabet::Latin1,
    }
}

/// Decodes an inbound SMPP `short_message` (or `message_payload`) according to
/// its `data_coding`:
///
/// | `data_coding` | decoded as |
/// |---|---|
/// | 0x00 | GSM 03.38, unpacked (SMSC default alphabet) |
/// | 0x01 | IA5/ASCII (bytes > 0x7F → U+FFFD) |
/// | 0x02, 0x03, 0x04 | Latin-1 (8-bit binary shown as Latin-1) |
/// | 0x08 | UCS2 (UTF-16BE, lenient) |
/// | 0x10..=0x1F, 0x40..=0x7F | bits 3-2: 00 GSM, 01 8-bit (Latin-1), 10 UCS2, 11 Latin-1 |
/// | 0xC0..=0xDF / 0xE0..=0xEF | message waiting: GSM / UCS2 |
/// | 0xF0..=0xFF | bit 2 set: 8-bit (Latin-1), else GSM |
/// | anything else | Latin-1 |
///
/// Content is kept exactly (no NUL trimming). Never panics.
#[must_use]
pub fn decode_short_message(data_coding: u8, octets: &[u8]) -> String {
    match alphabet_of(data_coding) {
        Alphabet::Gsm => gsm_decode(octets),
        Alphabet::Ia5 => ia5_decode(octets),
        Alphabet::Latin1 => latin1_decode(octets),
        Alphabet::Ucs2 => ucs2_decode(octets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::ucs2::ucs2_encode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lengths_of_pieces_should_add_up_to_the_measure_of_the_whole(
            a in "(\\PC|[ạăơưđ\u{0300}\u{0301}€{}\\n]){0,30}",
            b in "(\\PC|[ạăơưđ\u{0300}\u{0301}€{}\\n]){0,30}",
            digits in "[0-9. \\n]{0,5}",
            allow_ucs2: bool,
        ) {
            let whole = format!("{a}{digits}{b}");
            let summed = Lengths::of(&a, allow_ucs2)
                .plus(Lengths::ascii(digits.len()))
                .plus(Lengths::of(&b, allow_ucs2));
            prop_assert_eq!(summed.measure(), Lengths::of(&whole, allow_ucs2).measure());
            prop_assert_eq!(summed.measure(), measure(&whole, allow_ucs2));
        }

        #[test]
        fn lengths_should_be_the_septets_and_units_of_the_text(s in "(\\PC|[ạăơưđ\u{0300}€{}\\n]){0,40}") {
            let l = Lengths::of(&s, true);
            prop_assert_eq!(l.gsm, crate::text::gsm::gsm_septets(&s));
            prop_assert_eq!(l.ucs2, crate::text::ucs2::ucs2_units(&s));
        }
    }

    #[test]
    fn data_coding_should_match_smpp_values() {
        assert_eq!(Encoding::Gsm7.data_coding(), 0x00);
        assert_eq!(Encoding::Ucs2.data_coding(), 0x08);
    }

    #[test]
    fn gsm_text_should_stay_gsm_even_when_ucs2_allowed() {
        let e = encode_text("Chao ban {1}", true);
        assert_eq!(e.encoding, Encoding::Gsm7);
        assert_eq!(e.chars, 14);
        assert_eq!(e.bytes.len(), 14);
    }

    #[test]
    fn vietnamese_text_should_use_ucs2_when_allowed() {
        let e = encode_text("Trợ giúp", true);
        assert_eq!(e.encoding, Encoding::Ucs2);
        assert_eq!(e.chars, 8);
        assert_eq!(e.bytes, ucs2_encode("Trợ giúp"));
    }

    #[test]
    fn vietnamese_text_should_be_unaccented_when_ucs2_not_allowed() {
        let e = encode_text("Đăng bán sản phẩm €", false);
        assert_eq!(e.encoding, Encoding::Gsm7);
        assert_eq!(gsm_decode(&e.bytes), "Dang ban san pham €");
        assert_eq!(e.chars, 20);
    }

    #[test]
    fn gsm_vietnamese_letters_should_be_unaccented_only_without_ucs2() {
        assert_eq!(gsm_decode(&encode_text("Bà", true).bytes), "Bà");
        assert_eq!(gsm_decode(&encode_text("Bà", false).bytes), "Ba");
    }

    #[test]
    fn measure_should_agree_with_encode_text() {
        for s in ["", "abc", "a€", "Hữu Lũng", "😀 ok", "中文", "ü"] {
            for allow in [false, true] {
                let e = encode_text(s, allow);
                assert_eq!(measure(s, allow), (e.encoding, e.chars), "{s:?} {allow}");
            }
        }
    }

    #[test]
    fn screen_at_limit_should_fit_and_one_more_should_not() {
        let gsm = "a".repeat(USSD_GSM_MAX);
        assert_eq!(fit_ussd(&gsm, true).unwrap().chars, USSD_GSM_MAX);
        let over = format!("{gsm}€");
        assert_eq!(
            fit_ussd(&over, false),
            Err(TextError::TooLong { len: 184, max: 182, encoding: Encoding::Gsm7 })
        );
        let vi = "ư".repeat(USSD_UCS2_MAX);
        assert_eq!(fit_ussd(&vi, true).unwrap().encoding, Encoding::Ucs2);
        assert_eq!(
            fit_ussd(&format!("{vi}a"), true),
            Err(TextError::TooLong { len: 81, max: 80, encoding: Encoding::Ucs2 })
        );
        // Without UCS2 the same Vietnamese text fits as GSM.
        assert_eq!(fit_ussd(&format!("{vi}a"), false).unwrap().chars, 81);
    }

    #[test]
    fn too_long_error_should_have_clear_message() {
        let err = TextError::TooLong { len: 81, max: 80, encoding: Encoding::Ucs2 };
        assert_eq!(err.to_string(), "text too long: 81 UCS2 units, at most 80 allowed");
    }

    #[test]
    fn inbound_data_codings_should_pick_the_right_alphabet() {
        assert_eq!(decode_short_message(0x00, &[0x00, 0x1B, 0x65]), "@€");
        assert_eq!(decode_short_message(0x01, b"ab\x80"), "ab\u{FFFD}");
        assert_eq!(decode_short_message(0x03, &[0xE9]), "é");
        assert_eq!(decode_short_message(0x04, &[0x00, 0xFF]), "\u{0}ÿ");
        assert_eq!(decode_short_message(0x02, &[0x41]), "A");
        assert_eq!(decode_short_message(0x08, &[0x01, 0x10]), "Đ");
        assert_eq!(decode_short_message(0xF0, &[0x00]), "@");
        assert_eq!(decode_short_message(0xF4, &[0x00]), "\u{0}");
        assert_eq!(decode_short_message(0x11, &[0x00]), "@");
        assert_eq!(decode_short_message(0x15, &[0x00]), "\u{0}");
        assert_eq!(decode_short_message(0x18, &[0x01, 0x10]), "Đ");
        assert_eq!(decode_short_message(0x48, &[0x01, 0x10]), "Đ");
        assert_eq!(decode_short_message(0xE0, &[0x01, 0x10]), "Đ");
        assert_eq!(decode_short_message(0xC8, &[0x00]), "@");
        assert_eq!(decode_short_message(0x80, &[0x00, 0xE9]), "\u{0}é");
    }

    #[test]
    fn trailing_nuls_should_be_kept() {
        assert_eq!(decode_short_message(0x03, b"ab\0\0"), "ab\0\0");
        assert_eq!(decode_short_message(0x00, b"ab\0"), "ab@");
    }

    proptest! {
        #[test]
        fn decode_short_message_should_never_panic(
            dc in any::<u8>(),
            octets in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let _ = decode_short_message(dc, &octets);
        }

        #[test]
        fn encoded_length_should_match_measure(s in any::<String>(), allow in any::<bool>()) {
            let e = encode_text(&s, allow);
            prop_assert_eq!(measure(&s, allow), (e.encoding, e.chars));
            match e.encoding {
                Encoding::Gsm7 => prop_assert_eq!(e.bytes.len(), e.chars),
                Encoding::Ucs2 => prop_assert_eq!(e.bytes.len(), e.chars * 2),
            }
        }
    }
}
