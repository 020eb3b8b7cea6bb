//! Timestamps as microseconds since the Unix epoch (what the SQL capability carries) and their
//! RFC 3339 text form (what clients see), through `chrono`.

use chrono::{DateTime, NaiveDateTime, SecondsFormat};

/// Formats `micros` since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Instants beyond
/// chrono's range (±262,000 years) are written as its nearest end.
pub fn format_rfc3339(micros: i64) -> String {
    let instant = DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<chrono::Utc>::MIN_UTC
    } else {
        DateTime::<chrono::Utc>::MAX_UTC
    });
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses the form [`format_rfc3339`] writes (and SQLite stores): UTC (`Z`), a four-digit
/// year, and at most six fractional digits, which may be left out.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (seconds, fraction) = match text.strip_suffix('Z')?.split_once('.') {
        Some((seconds, digits)) if (1..=6).contains(&digits.len()) => (seconds, Some(digits)),
        Some(_) => return None,
        None => (text.strip_suffix('Z')?, None),
    };
    // chrono's `%Y` also takes signs and longer years; the stored form has exactly four digits.
    if seconds.len() != 19 || fraction.is_some_and(|digits| !digits.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let whole = NaiveDateTime::parse_from_str(seconds, "%Y-%m-%dT%H:%M:%S").ok()?.and_utc().timestamp_micros();
    let micros = match fraction {
        Some(digits) => digits.parse::<i64>().ok()? * 10_i64.pow(6 - digits.len() as u32),
        None => 0,
    };
    whole.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(format_rfc3339(1_795_780_800_123_456), "2026-11-27T12:00:00.123456Z");
    }

    #[test]
    fn parse_is_the_inverse_of_format() {
        for micros in [0, 1, 951_782_400_000_001, 1_795_780_800_123_456, -1] {
            assert_eq!(parse_rfc3339(&format_rfc3339(micros)), Some(micros));
        }
        assert_eq!(parse_rfc3339("2026-11-27T12:00:00Z"), Some(1_795_780_800_000_000));
        assert_eq!(parse_rfc3339("2026-11-27T12:00:00.5Z"), Some(1_795_780_800_500_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn parse_takes_only_the_stored_form() {
        for other in [
            "2026-11-27T12:00:00.1234567Z",
            "2026-11-27T12:00:00.Z",
            "2026-11-27T12:00:00+00:00",
            "2026-11-27 12:00:00Z",
            "+2026-11-27T12:00:00Z",
            "2026-11-27T12:00:00.-5Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(other), None, "{other:?}");
        }
    }
}
