//! "UCS2" as SMPP `data_coding` 0x08 uses it: really UTF-16BE, since SMSCs and
//! handsets accept surrogate pairs.

/// Encodes `text` as UTF-16BE.
#[must_use]
pub fn ucs2_encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    ucs2_encode_into(text, &mut out);
    out
}

/// Appends the UTF-16BE encoding of `text` to `out`.
pub fn ucs2_encode_into(text: &str, out: &mut Vec<u8>) {
    out.reserve(text.len() * 2);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
}

/// Decodes UTF-16BE leniently: an odd trailing byte is ignored and unpaired
/// surrogates become U+FFFD. Never panics.
#[must_use]
pub fn ucs2_decode(octets: &[u8]) -> String {
    let units = octets.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut out = String::with_capacity(octets.len() / 2);
    out.extend(char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)));
    out
}

/// Number of UTF-16 code units in `text` (characters outside the BMP count 2).
#[must_use]
pub fn ucs2_units(text: &str) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vietnamese_should_encode_big_endian() {
        assert_eq!(ucs2_encode("Đă"), vec![0x01, 0x10, 0x01, 0x03]);
        assert_eq!(ucs2_encode("A"), vec![0x00, 0x41]);
    }

    #[test]
    fn astral_chars_should_use_surrogate_pairs() {
        assert_eq!(ucs2_encode("😀"), vec![0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(ucs2_units("a😀"), 3);
        assert_eq!(ucs2_decode(&[0xD8, 0x3D, 0xDE, 0x00]), "😀");
    }

    #[test]
    fn odd_trailing_byte_should_be_ignored() {
        assert_eq!(ucs2_decode(&[0x00, 0x41, 0x00]), "A");
        assert_eq!(ucs2_decode(&[0x41]), "");
    }

    #[test]
    fn unpaired_surrogates_should_become_replacement_char() {
        assert_eq!(ucs2_decode(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(ucs2_decode(&[0xDE, 0x00]), "\u{FFFD}");
    }

    #[test]
    fn encode_into_should_append() {
        let mut out = vec![9];
        ucs2_encode_into("ơ", &mut out);
        assert_eq!(out, vec![9, 0x01, 0xA1]);
    }

    proptest! {
        #[test]
        fn units_should_be_those_of_utf16(s in any::<String>()) {
            prop_assert_eq!(ucs2_units(&s), s.encode_utf16().count());
        }

        #[test]
        fn ucs2_should_round_trip_any_string(s in any::<String>()) {
            let enc = ucs2_encode(&s);
            prop_assert_eq!(enc.len(), ucs2_units(&s) * 2);
            prop_assert_eq!(ucs2_decode(&enc), s);
        }

        #[test]
        fn ucs2_decode_should_never_panic(octets in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ucs2_decode(&octets);
        }
    }
}
