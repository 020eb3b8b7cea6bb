//! Handling one login event: store it once, deliver it through the webhook, say what to do
//! with the message.

use service_kit::http::Method;
use service_kit::platform::{log_warning, new_uuid, now_micros, setting};
use service_kit::wasi_http::{Outgoing, send_reading_prefix};

use crate::bindings::exports::skiff::messaging::consumer::{Delivery, Outcome};
use crate::domain::{LoginEvent, Notification, split_url};
use crate::store;

/// How long the webhook may take before the attempt counts as failed.
const WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// How long a claim on a delivery holds: the webhook's timeout and a margin. A replica that
/// dies while calling the webhook leaves the claim to expire; its unacknowledged message comes
/// back and is delivered then (the consumer's retries span longer than this by default).
const CLAIM_MICROS: i64 = (WEBHOOK_TIMEOUT_MS as i64 + 1_000) * 1_000;

pub fn handle(delivery: &Delivery) -> Outcome {
    let message = &delivery.message;
    let event = match LoginEvent::parse(&message.body) {
        Ok(event) => event,
        Err(error) => {
            log_warning("notify", &format!("rejecting message {}: {error}", message.id));
            return Outcome::Reject;
        }
    };
    let traceparent = message.headers.iter().find(|(name, _)| name == "traceparent").map(|(_, value)| value.clone());
    match deliver_once(&event, traceparent) {
        Ok(outcome) => outcome,
        Err(error) => {
            log_warning("notify", &format!("event {} attempt {} failed: {error}", event.event_id, delivery.attempt));
            Outcome::Retry
        }
    }
}

/// Idempotent by event id: a redelivered event finds its notification and, if it was already
/// delivered, is simply acknowledged. Only the copy that claims the notification calls the
/// webhook; a copy that finds it claimed by another delivery in progress tries again later,
/// and is then acknowledged once that delivery succeeded.
fn deliver_once(event: &LoginEvent, traceparent: Option<String>) -> Result<Outcome, String> {
    let fresh = Notification {
        id: new_uuid(),
        event_id: event.event_id.clone(),
        user_id: event.user_id.clone(),
        kind: "login".into(),
        message: event.message(),
        created_at: now_micros(),
        delivered_at: None,
        attempts: 0,
    };
    let Some(url) = setting("webhook_url")? else {
        // No channel configured: the notification is kept and listed, nothing to send.
        store::insert_if_new(&fresh, &fresh_payload(event, &fresh.id), None).map_err(|e| format!("{e:?}"))?;
        return Ok(Outcome::Ack);
    };
    // The first copy of an event stores its notification already claimed; a redelivered copy
    // finds the stored one and claims it unless it was delivered or another delivery holds it.
    let claimed_until = fresh.created_at + CLAIM_MICROS;
    let stored = if store::insert_if_new(&fresh, &fresh_payload(event, &fresh.id), Some(claimed_until))
        .map_err(|e| format!("{e:?}"))?
    {
        fresh
    } else {
        let stored = store::by_event(&event.event_id).map_err(|e| format!("{e:?}"))?.ok_or("notification vanished")?;
        if stored.delivered_at.is_some() {
            return Ok(Outcome::Ack);
        }
        let now = now_micros();
        if !store::claim_delivery(&event.event_id, now, now + CLAIM_MICROS).map_err(|e| format!("{e:?}"))? {
            return Err("another delivery of this event is in progress".into());
        }
        stored
    };
    let (scheme, authority, path) = split_url(&url)?;
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), event.event_id.clone()),
    ];
    headers.extend(traceparent.map(|value| ("traceparent".to_owned(), value)));
    let body = event.webhook_payload(&stored.id).to_string();
    // Only the status counts: a 2xx is a delivery whatever body comes with it, so no more than a
    // prefix of it is read before the connection is closed.
    let sent = send_reading_prefix(
        Outgoing {
            method: Method::Post,
            scheme: &scheme,
            authority: &authority,
            path_with_query: &path,
            headers: &headers,
            body: body.as_bytes(),
            timeout_ms: WEBHOOK_TIMEOUT_MS,
        },
        WEBHOOK_BODY_PREFIX_BYTES,
    );
    match sent {
        Ok(response) if (200..300).contains(&response.status) => {
            store::record_attempt(&event.event_id, Some(now_micros())).map_err(|e| format!("{e:?}"))?;
            Ok(Outcome::Ack)
        }
        Ok(response) => {
            let _ = store::record_attempt(&event.event_id, None);
            Err(format!("webhook answered {}", response.status))
        }
        Err(error) => {
            let _ = store::record_attempt(&event.event_id, None);
            Err(format!("webhook unreachable: {error}"))
        }
    }
}

/// How much of a webhook's answer is read: nothing in it is used, so a little.
const WEBHOOK_BODY_PREFIX_BYTES: usize = 4 * 1024;

fn fresh_payload(event: &LoginEvent, notification_id: &str) -> String {
    event.webhook_payload(notification_id).to_string()
}
