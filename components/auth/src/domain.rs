//! Login rules, free of WIT so they are unit-tested natively.

use serde_json::{Value, json};
use service_kit::json::JsonObject;
use service_kit::problem::FieldError;
use service_kit::time;

/// Exchange the login events go to.
pub const LOGIN_EXCHANGE: &str = "user_login_event";
/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 3600;

/// `{email, password}` as sent to `POST /auth-ms/auth/login`.
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl LoginRequest {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        let email = object.required("email", |raw| non_empty(raw, 320));
        // bcrypt reads 72 bytes; anything longer cannot be a stored password.
        let password = object.required("password", |raw| non_empty(raw, 1024));
        object.finish()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => Err(vec![FieldError::new("body", "is invalid")]),
        }
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

/// The client's address: the first hop of `X-Forwarded-For` when a proxy set it, else the
/// peer address the host saw.
pub fn source_address(forwarded_for: Option<&str>, peer: Option<&str>) -> Option<String> {
    forwarded_for
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|first| !first.is_empty())
        .or(peer)
        .map(str::to_owned)
}

/// Token lifetime from the `token_ttl_secs` setting: 60 s to 1 day.
pub fn token_ttl(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(DEFAULT_TOKEN_TTL_SECS),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(ttl) if (60..=86_400).contains(&ttl) => Ok(ttl),
            _ => Err(format!("token_ttl_secs must be 60 to 86400, got {text:?}")),
        },
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
    fn source_address_prefers_the_first_forwarded_hop() {
        assert_eq!(source_address(Some("203.0.113.7, 10.0.0.1"), Some("10.0.0.2")).as_deref(), Some("203.0.113.7"));
        assert_eq!(source_address(None, Some("10.0.0.2")).as_deref(), Some("10.0.0.2"));
        assert_eq!(source_address(Some(" "), None), None);
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
    }
}
