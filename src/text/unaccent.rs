//! Vietnamese (and anything else) to unaccented, GSM-representable text, for
//! operators and handsets that cannot show UCS2.

use super::gsm::{char_septets, is_gsm, is_gsm_char};

/// Base letters of U+1EA0..=U+1EF9 (Latin Extended Additional, Vietnamese block),
/// upper case at even code points and lower case at odd ones.
const VI_BLOCK_START: u32 = 0x1EA0;
const VI_BLOCK_END: u32 = 0x1EF9;

/// Base ASCII letter of a precomposed letter carrying Vietnamese diacritics
/// (ă â đ ê ô ơ ư and the five tone marks, upper and lower case).
#[inline]
fn vietnamese_base(c: char) -> Option<char> {
    let cp = c as u32;
    if (VI_BLOCK_START..=VI_BLOCK_END).contains(&cp) {
        let upper = match cp {
            0x1EA0..=0x1EB7 => 'A',
            0x1EB8..=0x1EC7 => 'E',
            0x1EC8..=0x1ECB => 'I',
            0x1ECC..=0x1EE3 => 'O',
            0x1EE4..=0x1EF1 => 'U',
            _ => 'Y', // 0x1EF2..=0x1EF9
        };
        return Some(if cp & 1 == 1 { upper.to_ascii_lowercase() } else { upper });
    }
    Some(match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ă' => 'A',
        'à' | 'á' | 'â' | 'ã' | 'ă' => 'a',
        'È' | 'É' | 'Ê' => 'E',
        'è' | 'é' | 'ê' => 'e',
        'Ì' | 'Í' | 'Ĩ' => 'I',
        'ì' | 'í' | 'ĩ' => 'i',
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ơ' => 'O',
        'ò' | 'ó' | 'ô' | 'õ' | 'ơ' => 'o',
        'Ù' | 'Ú' | 'Ũ' | 'Ư' => 'U',
        'ù' | 'ú' | 'ũ' | 'ư' => 'u',
        'Ý' => 'Y',
        'ý' => 'y',
        'Đ' => 'D',
        'đ' => 'd',
        _ => return None,
    })
}

/// Combining marks used to write Vietnamese in decomposed form: grave, acute,
/// circumflex, tilde, breve, hook above, horn, dot below, and the legacy
/// grave/acute tone marks.
#[inline]
fn is_vietnamese_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'
            | '\u{0301}'
            | '\u{0302}'
            | '\u{0303}'
            | '\u{0306}'
            | '\u{0309}'
            | '\u{031B}'
            | '\u{0323}'
            | '\u{0340}'
            | '\u{0341}'
    )
}

/// Feeds the unaccented form of `text` to `emit`, one GSM-representable
/// character at a time, without allocating.
pub(crate) fn for_each_unaccented(text: &str, mut emit: impl FnMut(char)) {
    for c in text.chars() {
        if c.is_ascii() {
            if is_gsm_char(c) {
                emit(c);
            } else if c == '\t' {
                emit(' ');
            } else {
                emit('?');
            }
        } else if let Some(base) = vietnamese_base(c) {
            emit(base);
        } else if is_vietnamese_mark(c) {
            // Dropped: the base letter was already emitted.
        } else if is_gsm_char(c) {
            emit(c);
        } else {
            match deunicode::deunicode_char(c) {
                Some(s) => {
                    for d in s.chars() {
                        emit(if is_gsm_char(d) { d } else { '?' });
                    }
                }
                None => emit('?'),
            }
        }
    }
}

/// Septets needed for the unaccented form of `text` (see [`unaccent`]), computed
/// without allocating.
pub(crate) fn unaccented_septets(text: &str) -> usize {
    let mut n = 0usize;
    for_each_unaccented(text, |c| n += char_septets(c).unwrap_or(1));
    n
}

/// Strips Vietnamese diacritics and makes `text` GSM-representable.
///
/// - Letters carrying Vietnamese diacritics (precomposed, or base + combining
///   marks) become their base ASCII letter, even when the GSM alphabet has the
///   accented letter (`à`, `é`, ...): "Đăng bán sản phẩm" → "Dang ban san pham".
/// - Other characters already in GSM 03.38 stay as they are (`ü`, `ñ`, `€`, ...).
/// - Anything else goes through `deunicode`; whatever is still not
///   representable becomes `?` (a tab becomes a space).
///
/// The result always satisfies [`is_gsm`]. Pure-ASCII GSM text is returned
/// unchanged.
#[must_use]
pub fn unaccent(text: &str) -> String {
    if text.is_ascii() && is_gsm(text) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for_each_unaccented(text, |c| out.push(c));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::gsm::gsm_septets;
    use proptest::prelude::*;

    #[test]
    fn vietnamese_phrases_should_lose_their_diacritics() {
        assert_eq!(unaccent("Đăng bán sản phẩm"), "Dang ban san pham");
        assert_eq!(unaccent("Trợ giúp"), "Tro giup");
        assert_eq!(unaccent("Hữu Lũng"), "Huu Lung");
        assert_eq!(unaccent("Cà phê sữa đá"), "Ca phe sua da");
        assert_eq!(unaccent("ĂÂĐÊÔƠƯ ăâđêôơư ỲÝỶỸỴ ỳýỷỹỵ"), "AADEOOU aadeoou YYYYY yyyyy");
    }

    #[test]
    fn decomposed_vietnamese_should_lose_combining_marks() {
        // "Tiếng Việt" with e + circumflex + acute, e + circumflex + dot below.
        assert_eq!(unaccent("Tie\u{0302}\u{0301}ng Vie\u{0323}\u{0302}t"), "Tieng Viet");
        assert_eq!(unaccent("u\u{031B}\u{0303}"), "u");
    }

    #[test]
    fn every_vietnamese_block_letter_should_map_to_ascii() {
        for cp in VI_BLOCK_START..=VI_BLOCK_END {
            let c = char::from_u32(cp).unwrap();
            let base = vietnamese_base(c).unwrap();
            assert!(base.is_ascii_alphabetic(), "{c}");
            assert_eq!(c.is_uppercase(), base.is_ascii_uppercase(), "{c}");
            // deunicode agrees on the base letter.
            assert_eq!(deunicode::deunicode_char(c), Some(base.to_string().as_str()), "{c}");
        }
    }

    #[test]
    fn non_vietnamese_gsm_letters_should_stay() {
        assert_eq!(unaccent("Müller ñ Ø €5"), "Müller ñ Ø €5");
    }

    #[test]
    fn other_chars_should_go_through_deunicode_or_become_question_mark() {
        assert_eq!(unaccent("“quote” – ok"), "\"quote\" - ok");
        assert_eq!(unaccent("a`b\tc"), "a?b c");
        assert_eq!(unaccent("ç"), "c");
    }

    #[test]
    fn ascii_gsm_text_should_be_returned_unchanged() {
        assert_eq!(unaccent("Xin chao 123 {ok}"), "Xin chao 123 {ok}");
        assert_eq!(unaccent(""), "");
    }

    #[test]
    fn septet_count_should_match_materialised_text() {
        let s = "Giá: 10€ [Hữu Lũng] 😀 中";
        assert_eq!(Some(unaccented_septets(s)), gsm_septets(&unaccent(s)));
    }

    fn vietnamese_text() -> impl Strategy<Value = String> {
        let mut pool: Vec<char> = (VI_BLOCK_START..=VI_BLOCK_END).filter_map(char::from_u32).collect();
        pool.extend("ăâđêôơưĂÂĐÊÔƠƯàáãèéìíòóõùúýÀÁÃÈÉÌÍÒÓÕÙÚÝĩũĨŨ".chars());
        pool.extend("abcdeghiklmnopqrstuvxy ABCDĐGHKLNPQRSTVX.,!?0123456789".chars());
        pool.extend(['\u{0300}', '\u{0301}', '\u{0303}', '\u{0309}', '\u{0323}']);
        proptest::collection::vec(proptest::sample::select(pool), 0..120)
            .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn unaccented_vietnamese_should_be_gsm_and_not_longer(s in vietnamese_text()) {
            let out = unaccent(&s);
            prop_assert!(is_gsm(&out));
            prop_assert!(out.is_ascii());
            prop_assert!(out.chars().count() <= s.chars().count());
        }

        #[test]
        fn unaccent_should_always_produce_gsm(s in any::<String>()) {
            let out = unaccent(&s);
            prop_assert!(is_gsm(&out));
            prop_assert_eq!(Some(unaccented_septets(&s)), gsm_septets(&out));
        }
    }
}
