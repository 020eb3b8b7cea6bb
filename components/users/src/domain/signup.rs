//! The sign-up throttle: every sign-up costs a bcrypt hash and can test whether an email is
//! registered (409), so each client address gets a few per window.

/// From the `signup_max_per_source` and `signup_window_secs` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupThrottle {
    pub max_per_source: u32,
    pub window_secs: i64,
}

impl Default for SignupThrottle {
    fn default() -> Self {
        Self { max_per_source: 10, window_secs: 3600 }
    }
}

impl SignupThrottle {
    pub fn parse(max_per_source: Option<&str>, window: Option<&str>) -> Result<Self, String> {
        let defaults = Self::default();
        let max_per_source = bounded("signup_max_per_source", max_per_source, defaults.max_per_source, 1, 1_000_000)?;
        let window_secs = bounded("signup_window_secs", window, 3600, 1, 86_400)?;
        Ok(Self { max_per_source, window_secs: i64::from(window_secs) })
    }

    pub fn window_micros(&self) -> i64 {
        self.window_secs * 1_000_000
    }

    /// `None` when another sign-up may go ahead, given the times (micros) of the other recent
    /// attempts from the same address, newest first; else whole seconds until one leaves the
    /// window (at least 1).
    pub fn retry_after(&self, others_newest_first: &[i64], now: i64) -> Option<i64> {
        let limit = usize::try_from(self.max_per_source).unwrap_or(usize::MAX);
        let since = now - self.window_micros();
        let recent: Vec<i64> = others_newest_first.iter().copied().filter(|&at| at > since).collect();
        if recent.len() < limit {
            return None;
        }
        let wait = recent[limit - 1] + self.window_micros() - now;
        Some(((wait + 999_999) / 1_000_000).max(1))
    }
}

fn bounded(key: &str, raw: Option<&str>, default: u32, min: u32, max: u32) -> Result<u32, String> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(format!("{key} must be {min} to {max}, got {text:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn settings_default_and_bounds() {
        assert_eq!(SignupThrottle::parse(None, None), Ok(SignupThrottle::default()));
        assert_eq!(
            SignupThrottle::parse(Some("3"), Some("60")),
            Ok(SignupThrottle { max_per_source: 3, window_secs: 60 })
        );
        assert!(SignupThrottle::parse(Some("0"), None).is_err());
        assert!(SignupThrottle::parse(None, Some("86401")).is_err());
    }

    #[test]
    fn refused_at_the_limit_until_the_limit_th_newest_leaves() {
        let throttle = SignupThrottle { max_per_source: 2, window_secs: 60 };
        let now = 1_000 * S;
        assert_eq!(throttle.retry_after(&[now - S], now), None);
        assert_eq!(throttle.retry_after(&[now - S, now - 10 * S], now), Some(50));
        // Older than the window: not counted.
        assert_eq!(throttle.retry_after(&[now - S, now - 60 * S], now), None);
    }
}
