//! The messaging capability's flags and settings.

use async_trait::async_trait;
use std::time::Duration;

use super::{DEFAULT_LEASE, MessagingCapability, RetryPolicy, connect_broker};
use crate::capability::{Composed, HostResources};

#[derive(Debug, Clone, clap::Args)]
pub struct MessagingArgs {
    /// RabbitMQ (`amqp://user:pass@host:5672/%2f`); without it, the embedded queue in
    /// DATA_DIR/broker.db.
    #[arg(long, env = "SKIFF_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Deliveries of one message before it is dead-lettered.
    #[arg(long, env = "SKIFF_MAX_DELIVERY_ATTEMPTS", default_value_t = RetryPolicy::DEFAULT_MAX_ATTEMPTS)]
    pub max_delivery_attempts: u32,
    /// Back-off before the first redelivery, doubling each time (capped at 30 s), in ms.
    #[arg(long, env = "SKIFF_RETRY_BASE_DELAY_MS", default_value_t = RetryPolicy::DEFAULT_BASE_DELAY.as_millis() as u64)]
    pub retry_base_delay_ms: u64,
    /// How long an outbox relay's claim on a batch holds, in ms: rows of a relay that died
    /// are taken over by another replica after this.
    #[arg(long, env = "SKIFF_OUTBOX_LEASE_MS", default_value_t = DEFAULT_LEASE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..))]
    pub outbox_lease_ms: u64,
}

/// The host's messaging settings.
#[derive(Debug, Clone)]
pub struct MessagingSettings {
    /// RabbitMQ; `None` for the embedded queue under the data folder.
    pub amqp_url: Option<String>,
    /// How failing messages are redelivered, then dead-lettered.
    pub retry: RetryPolicy,
    /// How long an outbox relay's claim holds.
    pub outbox_lease: Duration,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self { amqp_url: None, retry: RetryPolicy::default(), outbox_lease: DEFAULT_LEASE }
    }
}

#[async_trait]
impl Composed for MessagingCapability {
    type Args = MessagingArgs;
    type Settings = MessagingSettings;

    fn settings(args: &MessagingArgs) -> MessagingSettings {
        MessagingSettings {
            amqp_url: args.amqp_url.clone(),
            retry: RetryPolicy {
                max_attempts: args.max_delivery_attempts.max(1),
                base_delay: Duration::from_millis(args.retry_base_delay_ms),
                ..RetryPolicy::default()
            },
            outbox_lease: Duration::from_millis(args.outbox_lease_ms),
        }
    }

    async fn build(settings: &MessagingSettings, host: &HostResources<'_>) -> anyhow::Result<Self> {
        let broker = connect_broker(settings.amqp_url.as_deref(), host.data_dir).await?;
        Self::new(broker, settings.retry, settings.outbox_lease, host.metrics.clone(), host.host_settings)
    }
}
