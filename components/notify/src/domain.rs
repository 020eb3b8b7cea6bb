//! Notification rules, free of WIT so they are unit-tested natively.

use serde_json::{Value, json};
use service_kit::platform::Exchange;
use service_kit::time;

/// auth's login events, fanned out to every queue bound to the exchange, as in the original.
pub const LOGIN_EXCHANGE: Exchange = Exchange::fanout("user_login_event");
/// The durable queue every notify replica shares.
pub const LOGIN_QUEUE: &str = "notify.user_login_event";

/// A login event as auth publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginEvent {
    pub event_id: String,
    pub user_id: String,
    pub occurred_at: String,
    pub source_address: Option<String>,
    pub user_agent: Option<String>,
}

impl LoginEvent {
    /// `Err` means the message can never be handled (dead-letter it).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let required = |key: &str| text(key).filter(|v| !v.is_empty()).ok_or_else(|| format!("missing {key}"));
        let occurred_at = required("occurred_at")?;
        time::parse_rfc3339(&occurred_at).ok_or_else(|| format!("bad occurred_at {occurred_at:?}"))?;
        Ok(Self {
            event_id: required("event_id")?,
            user_id: required("user_id")?,
            occurred_at,
            source_address: text("source_address"),
            user_agent: text("user_agent"),
        })
    }

    /// What the user is told.
    pub fn message(&self) -> String {
        let from = self.source_address.as_deref().unwrap_or("an unknown address");
        let with = self.user_agent.as_deref().unwrap_or("an unknown client");
        format!("New sign-in to your account at {} from {from} using {with}.", self.occurred_at)
    }

    /// The webhook body.
    pub fn webhook_payload(&self, notification_id: &str) -> Value {
        json!({
            "notification_id": notification_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "kind": "login",
            "message": self.message(),
            "occurred_at": self.occurred_at,
        })
    }
}

/// A stored notification as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    pub kind: String,
    pub message: String,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub attempts: i64,
}

impl Notification {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "kind": self.kind,
            "message": self.message,
            "created_at": time::format_rfc3339(self.created_at),
            "delivered_at": self.delivered_at.map(time::format_rfc3339),
            "delivery_attempts": self.attempts,
        })
    }
}

/// A webhook address split for `wasi:http`: scheme, authority, path with query.
pub fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("webhook_url must be absolute: {url:?}"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("webhook_url must be http or https: {url:?}"));
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("webhook_url has no host: {url:?}"));
    }
    Ok((scheme.to_owned(), authority.to_owned(), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json() -> Value {
        json!({"event_id": "e1", "user_id": "u1", "occurred_at": "2026-11-27T08:00:00.000000Z", "source_address": "203.0.113.7", "user_agent": "curl/8"})
    }

    #[test]
    fn parses_a_login_event() {
        let event = LoginEvent::parse(event_json().to_string().as_bytes()).unwrap();
        assert_eq!(event.user_id, "u1");
        assert!(event.message().contains("203.0.113.7"));
        assert_eq!(event.webhook_payload("n1")["event_id"], "e1");
    }

    #[test]
    fn refuses_events_that_can_never_be_handled() {
        assert!(LoginEvent::parse(b"not json").is_err());
        let mut missing = event_json();
        missing.as_object_mut().unwrap().remove("user_id");
        assert!(LoginEvent::parse(missing.to_string().as_bytes()).is_err());
        let mut bad_time = event_json();
        bad_time["occurred_at"] = json!("yesterday");
        assert!(LoginEvent::parse(bad_time.to_string().as_bytes()).is_err());
    }

    #[test]
    fn splits_webhook_urls() {
        assert_eq!(
            split_url("http://hooks.example:8080/notify?x=1").unwrap(),
            ("http".into(), "hooks.example:8080".into(), "/notify?x=1".into())
        );
        assert_eq!(split_url("https://hooks.example").unwrap().2, "/");
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("hooks.example/x").is_err());
    }
}
