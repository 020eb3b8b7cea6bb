//! Watch mode: poll a component file (a mounted volume in Kubernetes) and roll out whatever
//! lands there through the same gate as the admin API. Polling costs one `stat` per interval and
//! needs no file-notification support from the volume (ConfigMaps and CSI volumes swap
//! symlinks, which inotify-based watchers often miss).

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::service::{Candidate, Service};

/// What to watch and how often.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub path: PathBuf,
    pub interval: Duration,
}

/// Polls `spec.path` forever. A file that changes (modification time or size) and holds a
/// component other than the active one is offered to `service`; a half-written file is refused
/// by the gate and retried once it changes again.
pub async fn watch(service: Arc<Service>, spec: WatchSpec) {
    tracing::info!(service = %service.name(), path = %spec.path.display(), interval = ?spec.interval, "watching for new versions");
    let mut last_stamp: Option<(Option<SystemTime>, u64)> = None;
    let mut last_digest = service.current().digest.clone();
    loop {
        tokio::time::sleep(spec.interval).await;
        let Ok(metadata) = tokio::fs::metadata(&spec.path).await else { continue };
        let stamp = (metadata.modified().ok(), metadata.len());
        if last_stamp == Some(stamp) {
            continue;
        }
        last_stamp = Some(stamp);
        let Ok(bytes) = tokio::fs::read(&spec.path).await else { continue };
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        if digest == last_digest || digest == service.current().digest {
            continue;
        }
        last_digest = digest;
        tracing::info!(service = %service.name(), path = %spec.path.display(), "a new component appeared; rolling it out");
        // The gate logs and counts the outcome; a refused file is retried once it changes.
        let _ = service.deploy(Candidate::upload(bytes)).await;
    }
}
