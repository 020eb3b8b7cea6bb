//! Login rules, free of WIT so they are unit-tested natively; `session` holds the refresh
//! token rules.

pub mod session;

use serde_json::{Value, json};
use service_kit::json::JsonObject;
use service_kit::platform::Exchange;
use service_kit::problem::FieldError;
use service_kit::throttle::{self, bounded_setting};
use service_kit::time;

/// Where login events go: a fanout exchange, as in the original, so every queue bound to it
/// gets every event (the routing key is empty and ignored).
pub const LOGIN_EXCHANGE: Exchange = Exchange::fanout("user_login_event");
/// Default access token lifetime: short, because an access token cannot be revoked; a client
/// keeps its session with the refresh token.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 900;
/// The longest an access token may live.
pub const MAX_TOKEN_TTL_SECS: i64 = 900;

/// `{email, password}` as sent to `POST /auth-ms/auth/login`.
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl LoginRequest {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        // The original's clients send the email as `username`; either name is accepted, once.
        let email = if object.has("username") && !object.has("email") {
            object.required("username", |raw| non_empty(raw, 320))
        } else {
            if object.has("username") {
                object.reject("username", "give the email as `email` or as `username`, not both");
            }
            object.required("email", |raw| non_empty(raw, 320))
        };
        // bcrypt reads 72 bytes; anything longer cannot be a stored password.
        let password = object.required("password", |raw| non_empty(raw, 1024));
        object.finish()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => Err(vec![FieldError::new("body", "is invalid")]),
        }
    }
}

/// `{refresh_token}` as sent to `POST /auth-ms/auth/refresh` and `/auth-ms/auth/logout`.
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl RefreshRequest {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        let refresh_token = object.required("refresh_token", |raw| non_empty(raw, 256));
        object.finish()?;
        refresh_token
            .map(|refresh_token| Self { refresh_token })
            .ok_or_else(|| vec![FieldError::new("body", "is invalid")])
    }
}

fn non_empty(raw: &str, max: usize) -> Result<String, String> {
    if raw.is_empty() {
        Err("must not be empty".into())
    } else if raw.len() > max {
        Err(format!("must be at most {max} bytes"))
    } else {
        Ok(raw.to_owned())
    }
}

/// The `user_login_event` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginEvent {
    pub event_id: String,
    pub user_id: String,
    pub occurred_at_micros: i64,
    pub source_address: Option<String>,
    pub user_agent: Option<String>,
}

impl LoginEvent {
    pub fn to_json(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "user_id": self.user_id,
            "occurred_at": time::format_rfc3339(self.occurred_at_micros),
            "source_address": self.source_address,
            "user_agent": self.user_agent,
        })
    }
}

/// Access token lifetime from the `token_ttl_secs` setting: 60 s to 15 min.
pub fn token_ttl(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(DEFAULT_TOKEN_TTL_SECS),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(ttl) if (60..=MAX_TOKEN_TTL_SECS).contains(&ttl) => Ok(ttl),
            _ => Err(format!("token_ttl_secs must be 60 to {MAX_TOKEN_TTL_SECS}, got {text:?}")),
        },
    }
}

/// Login throttling limits, from the `login_max_failures_per_account_and_source`,
/// `login_max_failures_per_account`, `login_max_failures_per_source` and
/// `login_failure_window_secs` settings.
///
/// An account is locked for one source after a few failures from it, and for everyone only
/// past a much higher ceiling that failures from many sources must reach together: a guesser
/// locks out themself, not the account's owner, unless they spread over many addresses (and
/// each address is also held to its own limit across accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub max_per_account_and_source: u32,
    pub max_per_account: u32,
    pub max_per_source: u32,
    pub window_secs: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self { max_per_account_and_source: 5, max_per_account: 50, max_per_source: 20, window_secs: 300 }
    }
}

/// The settings a [`Throttle`] is read from, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottleSettings<'a> {
    pub per_account_and_source: Option<&'a str>,
    pub per_account: Option<&'a str>,
    pub per_source: Option<&'a str>,
    pub window: Option<&'a str>,
}

impl Throttle {
    pub fn parse(raw: ThrottleSettings<'_>) -> Result<Self, String> {
        let defaults = Self::default();
        Ok(Self {
            max_per_account_and_source: bounded_setting(
                "login_max_failures_per_account_and_source",
                raw.per_account_and_source,
                defaults.max_per_account_and_source,
                1,
                10_000,
            )?,
            max_per_account: bounded_setting(
                "login_max_failures_per_account",
                raw.per_account,
                defaults.max_per_account,
                1,
                100_000,
            )?,
            max_per_source: bounded_setting(
                "login_max_failures_per_source",
                raw.per_source,
                defaults.max_per_source,
                1,
                100_000,
            )?,
            window_secs: i64::from(bounded_setting(
                "login_failure_window_secs",
                raw.window,
                u32::try_from(defaults.window_secs).unwrap_or(u32::MAX),
                1,
                86_400,
            )?),
        })
    }

    pub fn window_micros(&self) -> i64 {
        self.window_secs * 1_000_000
    }
}

/// The key failures are counted under for an account: the email as users normalises it
/// (trimmed, lower-cased), whether or not such a user exists.
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

/// The key failures are counted under for a client address.
pub fn source_key(address: &str) -> String {
    format!("source:{address}")
}

/// The key failures are counted under for one account from one client address.
pub fn account_source_key(email: &str, address: &str) -> String {
    format!("account-source:{}|{address}", email.trim().to_lowercase())
}

/// Whether another login attempt may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; whole seconds until enough failures have left the window (at least 1).
    RetryAfter(i64),
}

/// Decides from the times of recorded failures (micros, any order, possibly older than the
/// window): refused while `limit` or more fall within the window ending at `now`, until the
/// failure that keeps the count at `limit` leaves it.
pub fn decide(failures: &[i64], limit: u32, now: i64, window_micros: i64) -> Verdict {
    match throttle::retry_after(failures, limit, now, window_micros) {
        None => Verdict::Allowed,
        Some(seconds) => Verdict::RetryAfter(seconds),
    }
}

/// The stricter of two verdicts.
pub fn stricter(a: Verdict, b: Verdict) -> Verdict {
    match (a, b) {
        (Verdict::RetryAfter(x), Verdict::RetryAfter(y)) => Verdict::RetryAfter(x.max(y)),
        (Verdict::RetryAfter(x), Verdict::Allowed) | (Verdict::Allowed, Verdict::RetryAfter(x)) => {
            Verdict::RetryAfter(x)
        }
        (Verdict::Allowed, Verdict::Allowed) => Verdict::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_needs_both_fields() {
        let errors = LoginRequest::parse(json!({"email": ""})).err().unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password"]);
        assert!(LoginRequest::parse(json!({"email": "a@b.org", "password": "x"})).is_ok());
    }

    #[test]
    fn login_takes_the_email_as_username_too() {
        let login = LoginRequest::parse(json!({"username": "a@b.org", "password": "x"})).ok().unwrap();
        assert_eq!(login.email, "a@b.org");
        let errors =
            LoginRequest::parse(json!({"username": "a@b.org", "email": "c@d.org", "password": "x"})).err().unwrap();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["username"]);
        let errors = LoginRequest::parse(json!({"username": "", "password": "x"})).err().unwrap();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["username"]);
    }

    #[test]
    fn events_serialise_with_rfc3339_time() {
        let event = LoginEvent {
            event_id: "e".into(),
            user_id: "u".into(),
            occurred_at_micros: 0,
            source_address: None,
            user_agent: Some("curl/8".into()),
        };
        let body = event.to_json();
        assert_eq!(body["occurred_at"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(body["user_agent"], "curl/8");
    }

    #[test]
    fn token_ttl_bounds() {
        assert_eq!(token_ttl(None), Ok(DEFAULT_TOKEN_TTL_SECS));
        assert_eq!(token_ttl(Some("600")), Ok(600));
        assert!(token_ttl(Some("5")).is_err());
        // Access tokens cannot be revoked: at most 15 minutes (3600 used to be the default).
        assert!(token_ttl(Some("901")).is_err());
        assert!(token_ttl(Some("3600")).is_err());
    }

    const S: i64 = 1_000_000;

    #[test]
    fn throttle_settings_default_and_bounds() {
        assert_eq!(Throttle::parse(ThrottleSettings::default()), Ok(Throttle::default()));
        let given = ThrottleSettings {
            per_account_and_source: Some("3"),
            per_account: Some("30"),
            per_source: Some(" 7 "),
            window: Some("2"),
        };
        assert_eq!(
            Throttle::parse(given),
            Ok(Throttle { max_per_account_and_source: 3, max_per_account: 30, max_per_source: 7, window_secs: 2 })
        );
        let with = |f: fn(&mut ThrottleSettings<'static>)| {
            let mut settings = ThrottleSettings::default();
            f(&mut settings);
            Throttle::parse(settings)
        };
        assert!(with(|s| s.per_account_and_source = Some("0")).is_err());
        assert!(with(|s| s.per_account = Some("five")).is_err());
        assert!(with(|s| s.per_source = Some("-1")).is_err());
        assert!(with(|s| s.window = Some("0")).is_err());
        assert!(with(|s| s.window = Some("86401")).is_err());
        assert_eq!(Throttle::default().window_micros(), 300 * S);
    }

    #[test]
    fn keys_normalise_the_email() {
        assert_eq!(account_key("  Ada@Example.ORG "), "account:ada@example.org");
        assert_eq!(source_key("203.0.113.7"), "source:203.0.113.7");
        assert_eq!(account_source_key(" Ada@Example.ORG", "203.0.113.7"), "account-source:ada@example.org|203.0.113.7");
    }

    #[test]
    fn below_the_limit_is_allowed() {
        let now = 1_000 * S;
        assert_eq!(decide(&[], 3, now, 60 * S), Verdict::Allowed);
        assert_eq!(decide(&[now - S, now - 2 * S], 3, now, 60 * S), Verdict::Allowed);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let now = 1_000 * S;
        // Exactly on the window's edge has left it.
        assert_eq!(decide(&[now - 60 * S, now - 61 * S, now - S], 2, now, 60 * S), Verdict::Allowed);
    }

    #[test]
    fn at_the_limit_waits_for_the_oldest_counted_failure() {
        let now = 1_000 * S;
        let failures = [now - 10 * S, now - 5 * S, now - S];
        // The oldest leaves the window 50 s from now.
        assert_eq!(decide(&failures, 3, now, 60 * S), Verdict::RetryAfter(50));
        // Partial seconds round up, never below 1.
        assert_eq!(decide(&[now - 10 * S - 1], 1, now, 60 * S), Verdict::RetryAfter(50));
        assert_eq!(decide(&[now - 60 * S + 1], 1, now, 60 * S), Verdict::RetryAfter(1));
    }

    #[test]
    fn above_the_limit_waits_until_fewer_than_the_limit_remain() {
        let now = 1_000 * S;
        // Five failures against a limit of 3 (concurrent attempts overshoot): the 3rd newest
        // (30 s old) must leave, not just the oldest.
        let failures = [now - 40 * S, now - 50 * S, now - 30 * S, now - 20 * S, now - 10 * S];
        assert_eq!(decide(&failures, 3, now, 60 * S), Verdict::RetryAfter(30));
    }

    #[test]
    fn the_stricter_verdict_wins() {
        assert_eq!(stricter(Verdict::Allowed, Verdict::Allowed), Verdict::Allowed);
        assert_eq!(stricter(Verdict::Allowed, Verdict::RetryAfter(3)), Verdict::RetryAfter(3));
        assert_eq!(stricter(Verdict::RetryAfter(9), Verdict::RetryAfter(3)), Verdict::RetryAfter(9));
    }
}
