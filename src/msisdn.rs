//! Vietnamese mobile numbers: one canonical form, `84` + 9 digits.

/// Normalises `0912345678`, `+84912345678`, `84912345678`, `84 912 345 678`, `0912.345.678`
/// to `84912345678`; `None` for anything that is not a Vietnamese mobile number.
pub fn normalize(input: &str) -> Option<String> {
    // The longest written form that can be valid has 11 digits (84 + 9).
    let mut digits = [0u8; 11];
    let mut n = 0;
    for (i, c) in input.trim().chars().enumerate() {
        match c {
            '0'..='9' => {
                *digits.get_mut(n)? = c as u8;
                n += 1;
            }
            '+' if i == 0 => {}
            ' ' | '.' | '-' => {}
            _ => return None,
        }
    }
    let digits = &digits[..n];
    let national = match digits.strip_prefix(b"84") {
        Some(rest) => rest,
        None => digits.strip_prefix(b"0")?,
    };
    // Mobile numbers: 9 digits starting with 3, 5, 7, 8 or 9.
    if national.len() != 9 || !matches!(national[0], b'3' | b'5' | b'7' | b'8' | b'9') {
        return None;
    }
    let mut out = String::with_capacity(11);
    out.push_str("84");
    out.extend(national.iter().map(|&d| char::from(d)));
    Some(out)
}

/// Whether a peer limited to `prefixes` may speak for `msisdn` (canonical, as [`normalize`]
/// gives it; a leading `+` is ignored; no prefixes: any number).
pub fn allowed(prefixes: &[String], msisdn: &str) -> bool {
    let digits = msisdn.strip_prefix('+').unwrap_or(msisdn);
    prefixes.is_empty() || prefixes.iter().any(|p| !p.is_empty() && digits.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_should_match_their_numbers_and_nothing_else() {
        let p = vec!["8491".to_owned(), "84944".to_owned()];
        assert!(allowed(&p, "84912345678"));
        assert!(allowed(&p, "+84944123456"));
        assert!(!allowed(&p, "84812345678"));
        assert!(!allowed(&p, ""));
        assert!(allowed(&[], "anything"));
        assert!(!allowed(&["".to_owned()], "84912345678"));
    }
    use proptest::prelude::*;

    #[test]
    fn every_written_form_should_normalise_to_one_number() {
        for s in
            ["0912345678", "+84912345678", "84912345678", "84 912 345 678", "0912.345.678", " 0912-345-678 "]
        {
            assert_eq!(normalize(s).as_deref(), Some("84912345678"), "{s}");
        }
    }

    #[test]
    fn non_mobile_or_malformed_numbers_should_be_refused() {
        for s in [
            "",
            "12345",
            "0212345678",
            "091234567",
            "09123456789",
            "+1 202 555 0100",
            "09a2345678",
            "8+4912345678",
        ] {
            assert_eq!(normalize(s), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn normalising_twice_should_change_nothing(n in "(0|\\+84|84)[35789][0-9]{8}") {
            let once = normalize(&n).unwrap();
            prop_assert_eq!(normalize(&once), Some(once.clone()));
        }
    }
}
