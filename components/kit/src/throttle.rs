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

/// The `throttle_ipv6_prefix` setting: how many leading bits of an IPv6 address name one client,
/// 32 to 128 (64 by default: a host commonly gets a whole /64).
pub fn ipv6_prefix_setting(raw: Option<&str>) -> Result<u8, String> {
    let bits = bounded_setting("throttle_ipv6_prefix", raw, 64, 32, 128)?;
    Ok(u8::try_from(bits).unwrap_or(128))
}

/// The client a throttle counts `address` as: an IPv4 address is itself; an IPv6 address is its
/// network of `ipv6_prefix` bits (`2001:db8:1:2::/64`), so the addresses of one host's /64 are
/// one client, not 2^64. An IPv4-mapped IPv6 address is its IPv4 address; anything that does
/// not parse is kept as it is.
pub fn client_key(address: &str, ipv6_prefix: u8) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{network}/{bits}")
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
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
    fn ipv6_clients_are_their_prefix() {
        let one_host = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:abcd::9"];
        for address in one_host {
            assert_eq!(client_key(address, 64), "2001:db8:1:2::/64", "{address}");
        }
        assert_eq!(client_key("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
        assert_eq!(client_key("2001:db8:1:3::1", 48), "2001:db8:1::/48");
        assert_eq!(client_key("2001:db8:1:3::1", 128), "2001:db8:1:3::1/128");
        assert_eq!(client_key("203.0.113.7", 64), "203.0.113.7");
        assert_eq!(client_key("::ffff:203.0.113.7", 64), "203.0.113.7");
        assert_eq!(client_key("not an address", 64), "not an address");
        assert_eq!(ipv6_prefix_setting(None), Ok(64));
        assert_eq!(ipv6_prefix_setting(Some("56")), Ok(56));
        assert!(ipv6_prefix_setting(Some("31")).is_err());
        assert!(ipv6_prefix_setting(Some("129")).is_err());
    }

    #[test]
    fn settings_are_bounded_and_named_in_the_error() {
        assert_eq!(bounded_setting("k", None, 5, 1, 10), Ok(5));
        assert_eq!(bounded_setting("k", Some(" 7 "), 5, 1, 10), Ok(7));
        assert!(bounded_setting("k", Some("11"), 5, 1, 10).unwrap_err().contains("k must be 1 to 10"));
        assert!(bounded_setting("k", Some("x"), 5, 1, 10).is_err());
    }
}
