//! The broker trait behind `skiff:messaging`.

use async_trait::async_trait;
use std::time::Duration;

/// How an exchange routes (the WIT `exchange-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExchangeKind {
    /// Every bound queue gets every message.
    Fanout,
    /// By routing key against each binding's pattern.
    Topic,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Topic => "topic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            _ => None,
        }
    }

    /// Whether a queue bound with `binding_key` gets a message published with `routing_key`.
    pub fn routes(self, binding_key: &str, routing_key: &str) -> bool {
        match self {
            Self::Fanout => true,
            Self::Topic => topic_matches(binding_key, routing_key),
        }
    }
}

/// A durable exchange: its name and kind, which every service using it declares alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
}

impl Exchange {
    pub fn new(name: impl Into<String>, kind: ExchangeKind) -> Self {
        Self { name: name.into(), kind }
    }
}

/// Deliveries a consumer holds and handles at once (the AMQP prefetch): one failing or slow
/// message leaves the others to run. Each also needs an instance slot of the host's limit.
pub const IN_FLIGHT: u16 = 8;

/// Headers whose names start with this are the host's (signature, publisher, attempt): a
/// component cannot publish them, and deliveries carry only the host's own.
pub const HOST_HEADER_PREFIX: &str = "x-skiff-";

/// A message on its way to an exchange, or delivered from one (then `exchange` is the
/// subscription's).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub exchange: Exchange,
    pub id: String,
    pub routing_key: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A durable queue bound to an exchange; `binding_key` matters for topic exchanges only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubscriptionSpec {
    pub exchange: Exchange,
    pub queue: String,
    pub binding_key: String,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Returns once the broker has taken responsibility for the message (publisher confirm).
    async fn publish(&self, message: &OutboundMessage) -> anyhow::Result<()>;
    /// Declares the queue, its binding, and where its retries wait, and starts delivering.
    async fn subscribe(
        &self,
        subscription: &SubscriptionSpec,
        retry: &RetryPolicy,
    ) -> anyhow::Result<Box<dyn DeliveryStream>>;
    /// `amqp` or `embedded`.
    fn backend(&self) -> &'static str;
}

#[async_trait]
pub trait DeliveryStream: Send {
    /// The next delivery; `Err` when the connection is lost (subscribe again).
    async fn next(&mut self) -> anyhow::Result<Box<dyn InboundDelivery>>;
}

/// One delivered message, to be settled exactly once.
#[async_trait]
pub trait InboundDelivery: Send + Sync {
    fn message(&self) -> &OutboundMessage;
    /// 1 on first delivery; the consuming host's own count, never a publisher's header.
    fn attempt(&self) -> u32;
    async fn ack(self: Box<Self>) -> anyhow::Result<()>;
    /// Delivers the message again after `delay`, with the attempt counted up. Returns at
    /// once: the wait happens in the broker, so other messages are not held up by it.
    async fn retry(self: Box<Self>, delay: Duration) -> anyhow::Result<()>;
    /// Moves the message to the dead-letter queue, with `reason` and the attempt count in
    /// its headers (`x-skiff-dead-letter-reason`, `x-skiff-attempts`).
    async fn dead_letter(self: Box<Self>, reason: &str) -> anyhow::Result<()>;
}

/// How failing messages are retried before they are dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }
}

impl RetryPolicy {
    /// Exponential back-off after `attempt` failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Every distinct back-off a message can wait, shortest first: one delay queue each.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> =
            (1..self.max_attempts.max(1)).map(|attempt| self.delay_after(attempt)).collect();
        delays.dedup();
        delays
    }
}

/// Header names the dead-letter queue's messages carry.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-skiff-dead-letter-reason";
pub const ATTEMPTS_HEADER: &str = "x-skiff-attempts";

/// Whether a topic `binding_key` (`*` one word, `#` zero or more) matches `routing_key`.
pub fn topic_matches(binding_key: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], words: &[&str]) -> bool {
        match (pattern.first(), words.first()) {
            (None, None) => true,
            (Some(&"#"), _) => matches(&pattern[1..], words) || (!words.is_empty() && matches(pattern, &words[1..])),
            (Some(&"*"), Some(_)) => matches(&pattern[1..], &words[1..]),
            (Some(p), Some(w)) if p == w => matches(&pattern[1..], &words[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = binding_key.split('.').collect();
    let words: Vec<&str> = if routing_key.is_empty() { Vec::new() } else { routing_key.split('.').collect() };
    matches(&pattern, &words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(topic_matches("#", "user.login"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("user.*", "user.login"));
        assert!(!topic_matches("user.*", "user.login.failed"));
        assert!(topic_matches("user.#", "user.login.failed"));
        assert!(topic_matches("user.#", "user"));
        assert!(!topic_matches("order.*", "user.login"));
        assert!(topic_matches("*.login", "user.login"));
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(policy.delay_after(1), Duration::from_millis(100));
        assert_eq!(policy.delay_after(2), Duration::from_millis(200));
        assert_eq!(policy.delay_after(3), Duration::from_millis(350));
        assert_eq!(policy.delay_after(40), Duration::from_millis(350));
        let delays: Vec<u64> = policy.delays().iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350], "one delay queue per distinct back-off");
    }

    #[test]
    fn fanout_routes_everything_and_topic_by_pattern() {
        assert!(ExchangeKind::Fanout.routes("", "user.login"));
        assert!(ExchangeKind::Fanout.routes("order.*", "user.login"));
        assert!(!ExchangeKind::Topic.routes("order.*", "user.login"));
        assert_eq!(ExchangeKind::parse("fanout"), Some(ExchangeKind::Fanout));
        assert_eq!(ExchangeKind::parse(ExchangeKind::Topic.as_str()), Some(ExchangeKind::Topic));
        assert_eq!(ExchangeKind::parse("direct"), None);
    }
}
