//! The broker trait behind `skiff:messaging`.

use async_trait::async_trait;
use std::time::Duration;

/// A message on its way to an exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub exchange: String,
    pub id: String,
    pub routing_key: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A durable queue bound to a topic exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub exchange: String,
    pub queue: String,
    pub binding_key: String,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Returns once the broker has taken responsibility for the message (publisher confirm).
    async fn publish(&self, message: &OutboundMessage) -> anyhow::Result<()>;
    /// Declares the queue and its binding, and starts delivering.
    async fn subscribe(&self, subscription: &SubscriptionSpec) -> anyhow::Result<Box<dyn DeliveryStream>>;
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
    /// 1 on first delivery.
    fn attempt(&self) -> u32;
    async fn ack(self: Box<Self>) -> anyhow::Result<()>;
    /// Delivers the message again after `delay`, with the attempt counted up.
    async fn retry(self: Box<Self>, delay: Duration) -> anyhow::Result<()>;
    /// Moves the message to the dead-letter queue.
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
}

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
    }
}
