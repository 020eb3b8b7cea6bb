//! The sign-up throttle: every sign-up costs a bcrypt hash and can test whether an email is
//! registered (409), so each client address gets a few per window.

use service_kit::throttle::{self, bounded_setting};

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
        let max_per_source =
            bounded_setting("signup_max_per_source", max_per_source, defaults.max_per_source, 1, 1_000_000)?;
        let default_window = u32::try_from(defaults.window_secs).unwrap_or(u32::MAX);
        let window_secs = bounded_setting("signup_window_secs", window, default_window, 1, 86_400)?;
        Ok(Self { max_per_source, window_secs: i64::from(window_secs) })
    }

    pub fn window_micros(&self) -> i64 {
        self.window_secs * 1_000_000
    }

    /// `None` when another sign-up may go ahead, given the times (micros) of the other recent
    /// attempts from the same address, newest first; else whole seconds until one leaves the
    /// window (at least 1).
    pub fn retry_after(&self, others_newest_first: &[i64], now: i64) -> Option<i64> {
        throttle::retry_after(others_newest_first, self.max_per_source, now, self.window_micros())
    }
}

/// From the `email_change_max_per_account` setting: email changes one account may make in the
/// sign-up window (each can test whether an address is registered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailChangeThrottle {
    pub max_per_account: u32,
}

impl EmailChangeThrottle {
    pub const DEFAULT_MAX_PER_ACCOUNT: u32 = 5;

    pub fn parse(max_per_account: Option<&str>) -> Result<Self, String> {
        let max_per_account = bounded_setting(
            "email_change_max_per_account",
            max_per_account,
            Self::DEFAULT_MAX_PER_ACCOUNT,
            1,
            1_000_000,
        )?;
        Ok(Self { max_per_account })
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
        assert_eq!(EmailChangeThrottle::parse(None), Ok(EmailChangeThrottle { max_per_account: 5 }));
        assert_eq!(EmailChangeThrottle::parse(Some("2")), Ok(EmailChangeThrottle { max_per_account: 2 }));
        assert!(EmailChangeThrottle::parse(Some("0")).is_err());
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
