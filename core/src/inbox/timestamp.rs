//! RFC 3339 timestamps as the platform writes them (`2026-05-05T15:44:36.123456Z`, also
//! `+00:00` offsets and 0–9 fraction digits).
//!
//! The inbox needs to *order* `created_at` values while paging through the backlog, and
//! Go trims trailing zeros from fractions, so two valid values of the same instant can
//! differ as strings (`…36.12Z` vs `…36.120Z`) and string order is not time order. Parsing
//! to nanoseconds since the Unix epoch gives a total order without a date-time dependency.

/// Nanoseconds since 1970-01-01T00:00:00Z, or `None` when `s` is not
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with in-range fields.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let seps_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && b.get(10) == Some(&b'T')
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    let month_ok = (1..=12).contains(&month);
    if !seps_ok || !month_ok || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it orders like the last instant of that minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Digits past nanosecond precision are ignored (truncation keeps the order).
        let mut scale: i128 = 100_000_000;
        for &d in b.get(start..i.min(start + 9))? {
            nanos += i128::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_secs: i128 = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = i128::from(oh * 3600 + om * 60);
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        Some(_) | None => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second.min(59))
        - offset_secs;
    Some(secs * 1_000_000_000 + nanos)
}

/// Formats nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, like
/// Postgres). Used by the simulated activity feed of tests and fuzz targets, and for the
/// `createdAt`/`lastUpdatedAt` of MCP tasks.
pub fn format_rfc3339_micros(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
    let days = i64::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

fn digits(b: &[u8], start: usize, len: usize) -> Option<u32> {
    let slice = b.get(start..start + len)?;
    slice.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platform_shapes_and_orders_by_time_not_text() {
        let a = parse_rfc3339("2026-05-05T15:44:36.12Z").unwrap();
        let b = parse_rfc3339("2026-05-05T15:44:36.123Z").unwrap();
        let c = parse_rfc3339("2026-05-05T17:44:36.124+02:00").unwrap();
        assert!(a < b && b < c);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "2026-05-05",
            "2026-05-05 15:44:36Z",
            "2026-13-05T15:44:36Z",
            "2026-02-30T15:44:36Z",
            "2026-05-05T24:00:00Z",
            "2026-05-05T15:44:36",
            "2026-05-05T15:44:36.Z",
            "2026-05-05T15:44:36+0200",
            "2026-05-05T15:44:36Zjunk",
            "２０２６-05-05T15:44:36Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for nanos in [0i128, 1_777_996_800_123_456_000, 951_782_400_000_001_000] {
            let s = format_rfc3339_micros(nanos);
            assert_eq!(parse_rfc3339(&s), Some(nanos), "{s}");
        }
        assert_eq!(format_rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
    }
}
