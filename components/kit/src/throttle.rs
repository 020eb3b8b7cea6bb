//! Sliding-window throttles and their settings, shared by the services that count attempts
//! (auth's failed logins, users' sign-ups).

/// A whole-number setting within `min..=max`: `default` when it is not set, an error naming
/// the setting when it is set to anything else.
pub fn bounded_setting(key: &str, raw: Option<&str>, default: u32, min: u32, max: u32) -> Result<u32, String> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(format!("{key} must be {min} to {max}, got {text:?}")),
        },
    }
}

/// `None` while fewer than `limit` of the attempts at `times` (microseconds, any order) lie in
/// the window of `window_micros` before `now`; else the whole seconds (at least 1) until the
/// `limit`-th newest leaves it. A `limit` of 0 never refuses.
pub fn retry_after(times: &[i64], limit: u32, now: i64, window_micros: i64) -> Option<i64> {
    let since = now - window_micros;
    let mut recent: Vec<i64> = times.iter().copied().filter(|&at| at > since).collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit == 0 || recent.len() < limit {
        return None;
    }
    // Newest first: once the limit-th newest leaves the window, fewer than `limit` remain.
    recent.sort_unstable_by(|a, b| b.cmp(a));
    let wait_micros = recent[limit - 1] + window_micros - now;
    Some(((wait_micros + 999_999) / 1_000_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn refuses_at_the_limit_until_the_limit_th_newest_leaves_the_window() {
        let now = 100 * S;
        assert_eq!(retry_after(&[], 3, now, 60 * S), None);
        assert_eq!(retry_after(&[now - S, now - 2 * S], 3, now, 60 * S), None);
        assert_eq!(retry_after(&[now - 60 * S, now - S], 2, now, 60 * S), None, "one is outside the window");
        assert_eq!(retry_after(&[now - 30 * S, now - S, now - 10 * S], 3, now, 60 * S), Some(30), "in any order");
        assert_eq!(retry_after(&[now - 60 * S + 1], 1, now, 60 * S), Some(1), "at least a second");
        assert_eq!(retry_after(&[now - S], 0, now, 60 * S), None);
    }

    #[test]
    fn settings_are_bounded_and_named_in_the_error() {
        assert_eq!(bounded_setting("k", None, 5, 1, 10), Ok(5));
        assert_eq!(bounded_setting("k", Some(" 7 "), 5, 1, 10), Ok(7));
        assert!(bounded_setting("k", Some("11"), 5, 1, 10).unwrap_err().contains("k must be 1 to 10"));
        assert!(bounded_setting("k", Some("x"), 5, 1, 10).is_err());
    }
}
