//! GSM 03.38 (3GPP TS 23.038) default alphabet with the basic-character-set
//! extension table, and 7-bit septet packing.
//!
//! "Unpacked" means one septet per octet (values `0..=0x7F`), which is what SMPP
//! `short_message` carries for `data_coding` 0x00; the SMSC packs it for the air.

use super::TextError;

/// The escape septet that selects the extension table for the next septet.
pub(crate) const ESC: u8 = 0x1B;

/// Flag bit in [`GSM_OF_ASCII`] / [`gsm_code`] results marking an extension-table code.
const EXT: u8 = 0x80;
/// Marker in [`GSM_OF_ASCII`] for "not representable".
const NONE: u8 = 0xFF;

/// Main default-alphabet table, indexed by septet. Index 0x1B is the escape; it is
/// shown here as a space, which is what a lone/trailing escape displays as.
const MAIN: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Extension table entries (code after the escape, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// ASCII character -> GSM code: `0..=0x7F` main table, `EXT | code` extension
/// table, [`NONE`] not representable. Built at compile time from the tables above.
static GSM_OF_ASCII: [u8; 128] = build_ascii_table();

const fn build_ascii_table() -> [u8; 128] {
    let mut t = [NONE; 128];
    let mut i = 0;
    while i < 128 {
        let c = MAIN[i] as u32;
        if i != ESC as usize && c < 128 {
            t[c as usize] = i as u8;
        }
        i += 1;
    }
    let mut j = 0;
    while j < EXTENSION.len() {
        let (code, ch) = EXTENSION[j];
        if (ch as u32) < 128 {
            t[ch as usize] = EXT | code;
        }
        j += 1;
    }
    t
}

/// GSM code for `c`: `Some(0..=0x7F)` main table, `Some(EXT | code)` extension
/// table, `None` if not representable.
#[inline]
pub(crate) fn gsm_code(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 128 {
        let v = GSM_OF_ASCII[cp as usize];
        return if v == NONE { None } else { Some(v) };
    }
    let v = match c {
        '£' => 0x01,
        '¥' => 0x03,
        'è' => 0x04,
        'é' => 0x05,
        'ù' => 0x06,
        'ì' => 0x07,
        'ò' => 0x08,
        'Ç' => 0x09,
        'Ø' => 0x0B,
        'ø' => 0x0C,
        'Å' => 0x0E,
        'å' => 0x0F,
        'Δ' => 0x10,
        'Φ' => 0x12,
        'Γ' => 0x13,
        'Λ' => 0x14,
        'Ω' => 0x15,
        'Π' => 0x16,
        'Ψ' => 0x17,
        'Σ' => 0x18,
        'Θ' => 0x19,
        'Ξ' => 0x1A,
        'Æ' => 0x1C,
        'æ' => 0x1D,
        'ß' => 0x1E,
        'É' => 0x1F,
        '¤' => 0x24,
        '¡' => 0x40,
        'Ä' => 0x5B,
        'Ö' => 0x5C,
        'Ñ' => 0x5D,
        'Ü' => 0x5E,
        '§' => 0x5F,
        '¿' => 0x60,
        'ä' => 0x7B,
        'ö' => 0x7C,
        'ñ' => 0x7D,
        'ü' => 0x7E,
        'à' => 0x7F,
        '€' => EXT | 0x65,
        _ => return None,
    };
    Some(v)
}

/// Whether `c` is in the default alphabet or its extension table.
#[inline]
pub(crate) fn is_gsm_char(c: char) -> bool {
    gsm_code(c).is_some()
}

/// Septets needed for `c` (1 or 2), `None` if not representable.
#[inline]
pub(crate) fn char_septets(c: char) -> Option<usize> {
    gsm_code(c).map(|v| if v & EXT != 0 { 2 } else { 1 })
}

/// Appends the septet(s) of a GSM code returned by [`gsm_code`].
#[inline]
pub(crate) fn push_code(out: &mut Vec<u8>, v: u8) {
    if v & EXT != 0 {
        out.push(ESC);
        out.push(v & !EXT);
    } else {
        out.push(v);
    }
}

/// Extension-table character for the code following an escape.
#[inline]
fn extension_char(code: u8) -> Option<char> {
    Some(match code {
        0x0A => '\u{0C}',
        0x14 => '^',
        0x28 => '{',
        0x29 => '}',
        0x2F => '\\',
        0x3C => '[',
        0x3D => '~',
        0x3E => ']',
        0x40 => '|',
        0x65 => '€',
        _ => return None,
    })
}

/// Main-table character for an unpacked octet; octets above 0x7F are invalid
/// septets and decode to U+FFFD.
#[inline]
fn main_char(b: u8) -> char {
    MAIN.get(usize::from(b)).copied().unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Encodes `text` as unpacked GSM septets (one per octet, extension characters
/// as `0x1B` + code).
///
/// # Errors
/// [`TextError::NotGsm`] with the first unrepresentable character and its byte
/// offset in `text`.
pub fn gsm_encode(text: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(text.len());
    gsm_encode_into(text, &mut out)?;
    Ok(out)
}

/// Appends the unpacked GSM septets of `text` to `out` (see [`gsm_encode`]).
///
/// # Errors
/// [`TextError::NotGsm`] for the first unrepresentable character; `out` is then
/// left as it was before the call.
pub fn gsm_encode_into(text: &str, out: &mut Vec<u8>) -> Result<(), TextError> {
    let start = out.len();
    out.reserve(text.len());
    for (index, ch) in text.char_indices() {
        match gsm_code(ch) {
            Some(v) => push_code(out, v),
            None => {
                out.truncate(start);
                return Err(TextError::NotGsm { ch, index });
            }
        }
    }
    Ok(())
}

/// Decodes unpacked GSM septets (one per octet).
///
/// Lenient, never panics: an escape followed by a code missing from the
/// extension table shows the main-table character for that code (3GPP TS 23.038
/// §6.2.1.1), a double escape shows a space, a trailing lone escape shows a
/// space, and octets above 0x7F decode to U+FFFD.
#[must_use]
pub fn gsm_decode(octets: &[u8]) -> String {
    let mut out = String::with_capacity(octets.len());
    let mut iter = octets.iter().copied();
    while let Some(b) = iter.next() {
        if b == ESC {
            match iter.next() {
                // Trailing lone escape, or escape-escape (reserved): a space.
                None | Some(ESC) => out.push(' '),
                Some(code) => out.push(extension_char(code).unwrap_or_else(|| main_char(code))),
            }
        } else {
            out.push(main_char(b));
        }
    }
    out
}

/// Number of septets `text` needs in the GSM default alphabet (extension
/// characters count 2), or `None` if some character is not representable.
#[must_use]
pub fn gsm_septets(text: &str) -> Option<usize> {
    text.chars().try_fold(0usize, |n, c| char_septets(c).map(|s| n + s))
}

/// Whether every character of `text` is in the GSM default alphabet or its
/// extension table.
#[must_use]
pub fn is_gsm(text: &str) -> bool {
    if text.is_ascii() {
        return text.bytes().all(|b| GSM_OF_ASCII[usize::from(b)] != NONE);
    }
    text.chars().all(is_gsm_char)
}

/// Packs septets into octets, 7 bits each, least significant bit first
/// (3GPP TS 23.038 §6.1.2.1.1, as in the SMS TPDU). Only the low 7 bits of each
/// input byte are used; spare bits of the last octet are zero.
#[must_use]
pub fn gsm_pack(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((septets.len() * 7).div_ceil(8));
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    for &s in septets {
        acc |= u16::from(s & 0x7F) << bits;
        bits += 7;
        if bits >= 8 {
            out.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push((acc & 0xFF) as u8);
    }
    out
}

/// Unpacks `septet_count` septets from packed `octets` (inverse of [`gsm_pack`]),
/// one septet per output octet. Stops early if `octets` holds fewer septets.
#[must_use]
pub fn gsm_unpack(octets: &[u8], septet_count: usize) -> Vec<u8> {
    let available = octets.len().saturating_mul(8) / 7;
    let count = septet_count.min(available);
    let mut out = Vec::with_capacity(count);
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    let mut input = octets.iter().copied();
    while out.len() < count {
        if bits < 7 {
            // `count <= available` guarantees a further octet exists here.
            let Some(b) = input.next() else { break };
            acc |= u16::from(b) << bits;
            bits += 8;
        }
        out.push((acc & 0x7F) as u8);
        acc >>= 7;
        bits -= 7;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_table_should_agree_with_main_and_extension_tables() {
        for (code, &ch) in MAIN.iter().enumerate() {
            if code == usize::from(ESC) {
                continue;
            }
            assert_eq!(gsm_code(ch), Some(code as u8), "{ch:?}");
        }
        for &(code, ch) in &EXTENSION {
            assert_eq!(gsm_code(ch), Some(EXT | code), "{ch:?}");
            assert_eq!(extension_char(code), Some(ch));
        }
    }

    #[test]
    fn plain_ascii_letters_should_map_to_themselves() {
        assert_eq!(gsm_encode("Hello 123").unwrap(), b"Hello 123".to_vec());
    }

    #[test]
    fn special_main_table_chars_should_use_their_codes() {
        assert_eq!(gsm_encode("@$_£").unwrap(), vec![0x00, 0x02, 0x11, 0x01]);
        assert_eq!(gsm_encode("ΔΩàü").unwrap(), vec![0x10, 0x15, 0x7F, 0x7E]);
    }

    #[test]
    fn extension_chars_should_encode_as_escape_pairs() {
        assert_eq!(
            gsm_encode("€[]{}").unwrap(),
            vec![0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29]
        );
        assert_eq!(gsm_encode("^\\~|\u{0C}").unwrap().len(), 10);
    }

    #[test]
    fn extension_chars_should_count_two_septets() {
        assert_eq!(gsm_septets("€"), Some(2));
        assert_eq!(gsm_septets("a{b}"), Some(6));
        assert_eq!(gsm_septets(""), Some(0));
        assert_eq!(gsm_septets("Đ"), None);
    }

    #[test]
    fn unrepresentable_char_should_report_char_and_byte_index() {
        assert_eq!(gsm_encode("ab`c"), Err(TextError::NotGsm { ch: '`', index: 2 }));
        assert_eq!(gsm_encode("éĐ"), Err(TextError::NotGsm { ch: 'Đ', index: 2 }));
    }

    #[test]
    fn failed_encode_into_should_leave_buffer_untouched() {
        let mut out = vec![1, 2, 3];
        assert!(gsm_encode_into("abcđ", &mut out).is_err());
        assert_eq!(out, vec![1, 2, 3]);
        gsm_encode_into("x", &mut out).unwrap();
        assert_eq!(out, vec![1, 2, 3, b'x']);
    }

    #[test]
    fn is_gsm_should_reject_vietnamese_and_control_chars() {
        assert!(is_gsm("Xin chao @ 10€"));
        assert!(!is_gsm("Xin chào bạn"));
        assert!(!is_gsm("tab\there"));
        assert!(!is_gsm("`"));
        assert!(is_gsm(""));
    }

    #[test]
    fn unknown_escape_should_decode_to_main_table_char() {
        assert_eq!(gsm_decode(&[0x1B, b'A']), "A");
        assert_eq!(gsm_decode(&[0x1B, 0x00]), "@");
    }

    #[test]
    fn trailing_lone_escape_should_decode_to_space() {
        assert_eq!(gsm_decode(&[b'a', 0x1B]), "a ");
        assert_eq!(gsm_decode(&[0x1B, 0x1B, b'b']), " b");
    }

    #[test]
    fn octets_above_0x7f_should_decode_to_replacement_char() {
        assert_eq!(gsm_decode(&[b'a', 0x80, 0xFF]), "a\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn hellohello_should_pack_to_known_vector() {
        let packed = gsm_pack(b"hellohello");
        assert_eq!(packed, vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(gsm_unpack(&packed, 10), b"hellohello".to_vec());
    }

    #[test]
    fn eight_septets_should_pack_into_seven_octets() {
        // "12345678" -> 31 D9 8C 56 B3 DD 70 (well-known vector)
        let packed = gsm_pack(b"12345678");
        assert_eq!(packed, vec![0x31, 0xD9, 0x8C, 0x56, 0xB3, 0xDD, 0x70]);
        assert_eq!(gsm_unpack(&packed, 8), b"12345678".to_vec());
    }

    #[test]
    fn unpack_should_stop_at_available_septets() {
        assert_eq!(gsm_unpack(&[0xE8], 5), vec![0x68]);
        assert!(gsm_unpack(&[], 3).is_empty());
    }

    fn gsm_char() -> impl Strategy<Value = char> {
        let all: Vec<char> = MAIN
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != usize::from(ESC))
            .map(|(_, &c)| c)
            .chain(EXTENSION.iter().map(|&(_, c)| c))
            .collect();
        proptest::sample::select(all)
    }

    proptest! {
        #[test]
        fn gsm_encode_then_decode_should_round_trip(
            s in proptest::collection::vec(gsm_char(), 0..200)
                .prop_map(|v| v.into_iter().collect::<String>())
        ) {
            let enc = gsm_encode(&s).unwrap();
            prop_assert!(enc.iter().all(|&b| b <= 0x7F));
            prop_assert_eq!(Some(enc.len()), gsm_septets(&s));
            prop_assert!(is_gsm(&s));
            prop_assert_eq!(gsm_decode(&enc), s);
        }

        #[test]
        fn gsm_pack_then_unpack_should_round_trip(
            septets in proptest::collection::vec(0u8..=0x7F, 0..300)
        ) {
            let packed = gsm_pack(&septets);
            prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
            prop_assert_eq!(gsm_unpack(&packed, septets.len()), septets);
        }

        #[test]
        fn gsm_decode_should_never_panic(octets in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = gsm_decode(&octets);
        }
    }
}
