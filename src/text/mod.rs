//! Text for SMPP `short_message`: GSM 03.38 default alphabet and UCS2
//! (UTF-16BE), unaccented GSM fallback for Vietnamese, USSD screen fitting,
//! inbound decoding by `data_coding`, and concatenated SMS splitting.
//!
//! All functions are allocation-conscious (one exact allocation per encoded
//! text, lookup tables rather than maps) since they run for every USSD screen.

mod coding;
mod gsm;
mod sms;
mod ucs2;
mod unaccent;

pub use coding::{
    Encoded, Encoding, Lengths, USSD_GSM_MAX, USSD_UCS2_MAX, decode_short_message, encode_text, fit_ussd,
    measure,
};
pub use gsm::{gsm_decode, gsm_encode, gsm_encode_into, gsm_pack, gsm_septets, gsm_unpack, is_gsm};
pub use sms::{
    CONCAT_UDH_LEN, SMS_GSM_PART_MAX, SMS_GSM_SINGLE_MAX, SMS_MAX_PARTS, SMS_UCS2_PART_MAX,
    SMS_UCS2_SINGLE_MAX, SmsPart, split_sms,
};
pub use ucs2::{ucs2_decode, ucs2_encode, ucs2_encode_into, ucs2_units};
pub use unaccent::unaccent;

/// A person's language: Vietnamese first, English second; the one kind the menus, the market
/// (stored as `"vi"` / `"en"`) and the SMS texts share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Tiếng Việt (the default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// The stored form: `"vi"` or `"en"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// Parses the stored form (`"vi"`, `"en"`; case-insensitive).
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// Errors of the text layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    /// A character has no GSM 03.38 default-alphabet or extension-table code.
    #[error("character {ch:?} at byte {index} is not in the GSM 03.38 alphabet")]
    NotGsm {
        /// The unrepresentable character.
        ch: char,
        /// Its byte offset in the input `&str`.
        index: usize,
    },
    /// The text does not fit (e.g. one USSD screen).
    #[error("text too long: {len} {} units, at most {max} allowed", .encoding)]
    TooLong {
        /// Length in the encoding's units (septets or UTF-16 code units).
        len: usize,
        /// Maximum allowed in those units.
        max: usize,
        /// The encoding the length was measured in.
        encoding: Encoding,
    },
    /// Splitting would need more SMS parts than the concatenation UDH can count.
    #[error("text needs {parts} SMS parts, at most 255 allowed")]
    TooManyParts {
        /// Parts that would be needed.
        parts: usize,
    },
}

/// `1500000` → `1.500.000` with `sep` between groups of three digits.
pub fn group_thousands(n: i64, sep: char) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(ch);
    }
    out
}

/// A text as people match it by ear: accents dropped (đ → d), lower case, whitespace
/// collapsed. `"Thôn  Đồng Lâm"` and `"thon dong lam"` fold alike.
pub fn fold(text: &str) -> String {
    unaccent(text).to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A cell of a CSV chogate writes, neutralised: text starting with `=`, `+`, `-`, `@`, a tab
/// or a carriage return is prefixed with `'`, so that a spreadsheet shows it instead of
/// running it as a formula (`=HYPERLINK(...)` from data written before names were checked,
/// or through a path that does not check them). Every CSV writer passes its text cells
/// through this one function; numbers chogate formats itself need not.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Bidirectional controls (U+202A–U+202E, U+2066–U+2069, the marks U+200E, U+200F, U+061C):
/// they make a name read differently from what it is.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_should_be_neutralised() {
        for risky in ["=HYPERLINK(\"x\")", "+A1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(risky), format!("'{risky}"));
        }
        for plain in ["Thôn Đồng Lâm", "0912345678", "", "a=b", "Bản 3-4"] {
            assert!(matches!(csv_cell(plain), std::borrow::Cow::Borrowed(p) if p == plain));
        }
    }
}
