//! Choosing the broker from settings.

use std::path::Path;
use std::sync::Arc;

use super::client::Broker;
use super::{amqp, embedded};

/// RabbitMQ when `amqp_url` is given, else the embedded queue in `data_dir/broker.db`.
pub async fn connect_broker(amqp_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn Broker>> {
    match amqp_url {
        Some(url) => Ok(Arc::new(amqp::AmqpBroker::new(url))),
        None => Ok(Arc::new(embedded::EmbeddedBroker::open(&data_dir.join("broker.db")).await?)),
    }
}
