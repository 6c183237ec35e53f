//! Dates and times without a calendar crate: civil dates (proleptic Gregorian) from and to
//! day numbers, RFC 3339 timestamps, and report periods in Vietnam's time (UTC+7, no DST).

/// Vietnam's offset from UTC.
pub const VN_OFFSET_MS: i64 = 7 * 3600 * 1000;
const DAY_MS: i64 = 86_400_000;

/// `base` doubled `steps` times, capped at `max`: the one doubling backoff (SMSC reconnects,
/// SMS retries, the delay of failed binds).
pub fn doubling(base: std::time::Duration, max: std::time::Duration, steps: u32) -> std::time::Duration {
    base.saturating_mul(1u32 << steps.min(20)).min(max)
}

/// Milliseconds since the Unix epoch: the one clock of records, leases and deadlines kept
/// in the database (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD` (years 2000 to 2100) into a day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (y, m, d) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    if !(2000..=2100).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD` of a day number.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 in UTC with milliseconds: `2026-11-23T03:04:05.678Z`.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// The Vietnamese calendar day (day number) of an instant.
pub fn vn_day(ms: i64) -> i64 {
    (ms + VN_OFFSET_MS).div_euclid(DAY_MS)
}

/// The instant a Vietnamese calendar day starts.
pub fn vn_day_start_ms(days: i64) -> i64 {
    days * DAY_MS - VN_OFFSET_MS
}

/// The instant the Vietnamese calendar month of `ms` started.
pub fn vn_month_start_ms(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(vn_day(ms));
    vn_day_start_ms(days_from_civil(y, m, 1))
}

/// `HH:MM` of an instant in Vietnam's time.
pub fn vn_clock(ms: i64) -> String {
    let minutes = (ms + VN_OFFSET_MS).div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_should_double_from_the_base_and_stop_at_the_cap() {
        let ms = std::time::Duration::from_millis;
        let d: Vec<u128> = (0..6).map(|n| doubling(ms(100), ms(1000), n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(doubling(ms(100), ms(1000), u32::MAX), ms(1000));
    }
    use proptest::prelude::*;

    #[test]
    fn month_start_and_clock_should_be_in_vietnam_time() {
        // 2026-12-01T00:30+07:00 is 2026-11-30T17:30Z.
        let ms = vn_day_start_ms(days_from_civil(2026, 12, 1)) + 30 * 60_000;
        assert_eq!(vn_month_start_ms(ms), vn_day_start_ms(days_from_civil(2026, 12, 1)));
        assert_eq!(vn_month_start_ms(ms - 3_600_000), vn_day_start_ms(days_from_civil(2026, 11, 1)));
        assert_eq!(vn_clock(ms), "00:30");
    }

    #[test]
    fn known_dates_should_convert() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_date("2026-11-23").map(format_date).as_deref(), Some("2026-11-23"));
        assert_eq!(parse_date("2024-02-29").map(format_date).as_deref(), Some("2024-02-29"));
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "26-11-23",
            "2026/11/23",
            "1999-12-31",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn a_vietnamese_day_should_start_at_17h_utc_the_day_before() {
        let day = parse_date("2026-11-23").unwrap();
        assert_eq!(rfc3339(vn_day_start_ms(day)), "2026-11-22T17:00:00.000Z");
        assert_eq!(vn_day(vn_day_start_ms(day)), day);
        assert_eq!(vn_day(vn_day_start_ms(day) - 1), day - 1);
    }

    proptest! {
        #[test]
        fn civil_dates_should_round_trip(z in -100_000i64..100_000) {
            let (y, m, d) = civil_from_days(z);
            prop_assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
