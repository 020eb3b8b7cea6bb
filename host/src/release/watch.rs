//! Following the release file. It is read at start, before the host reports ready, then every
//! interval: the whole file (a few hundred bytes) is compared with the last one acted on, which
//! catches both the kubelet's update of a mounted ConfigMap (a new `..data` folder swapped in
//! through a symlink, so the path's target changes, not the file) and a plain rewrite.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::Cache;
use super::converge::{ImageComponent, Refusal, apply, resolve};
use super::file::Release;
use super::registry::{Registry, RegistryOptions};
use crate::service::{ReleasePhase, ReleaseStatus, Service, VersionState};

/// Where the release file is and how to follow it.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    pub file: PathBuf,
    pub interval: Duration,
    /// Pulled components and manifests, by digest.
    pub cache_dir: PathBuf,
    pub registry: RegistryOptions,
    /// Serve the image's component (and say so) when the release cannot be applied at start,
    /// instead of staying unready until it can.
    pub fallback: bool,
}

/// Longest wait between two tries of a release the registry did not serve.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Follows `spec.file` for `service` forever. `settled` turns true once the service may report
/// ready: the release is applied, or it failed at start and `spec.fallback` allows the image's
/// component.
pub async fn follow(
    service: Arc<Service>,
    spec: ReleaseSpec,
    image_path: PathBuf,
    image_label: Option<String>,
    settled: tokio::sync::watch::Sender<bool>,
) {
    let image = ImageComponent { path: image_path, label: image_label };
    let registry = Registry::new(spec.registry.clone(), Some(Cache::new(&spec.cache_dir)));
    tracing::info!(service = %service.name(), file = %spec.file.display(), cache = %spec.cache_dir.display(), "following the release file");
    let mut follower = Follower { service, spec, image, registry, settled, seen: None, retry: None };
    loop {
        follower.tick().await;
        tokio::time::sleep(follower.spec.interval).await;
    }
}

struct Follower {
    service: Arc<Service>,
    spec: ReleaseSpec,
    image: ImageComponent,
    registry: Registry,
    settled: tokio::sync::watch::Sender<bool>,
    /// The file content last acted on.
    seen: Option<Vec<u8>>,
    /// When to try the same content again, and how many tries failed.
    retry: Option<(Instant, u32)>,
}

impl Follower {
    async fn tick(&mut self) {
        let content = match self.read().await {
            Ok(content) => content,
            Err(error) => {
                if self.seen.is_none() {
                    let reason = format!("cannot read {}: {error}", self.spec.file.display());
                    self.failed(&Release::default(), Refusal { kind: "file-unreadable", reason, transient: true });
                }
                return;
            }
        };
        let changed = self.seen.as_ref() != Some(&content);
        let due = self.retry.is_some_and(|(at, _)| Instant::now() >= at);
        if !changed && !due {
            self.watch_canary();
            return;
        }
        if changed {
            self.retry = None;
        }
        self.seen = Some(content.clone());
        let release = match Release::parse(&String::from_utf8_lossy(&content)) {
            Ok(release) => release,
            Err(reason) => {
                let release = Release::default();
                self.failed(&release, Refusal { kind: "bad-file", reason, transient: false });
                return;
            }
        };
        let started = Instant::now();
        self.set_status(&release, ReleasePhase::Applying, None, None);
        // Pulling changes nothing yet, so a newer file may cancel it (a registry that stalls
        // must not hold the service on a release nobody wants any more); switching may not.
        let resolved = tokio::select! {
            resolved = resolve(&release, &self.registry, &self.image) => resolved,
            () = self.superseded(&content) => {
                tracing::info!(service = %self.service.name(), desired = %release.desired(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "the release file changed while its release was pulled; the pull is cancelled");
                return;
            }
        };
        let applied = match resolved {
            Ok(resolved) => apply(&self.service, resolved).await,
            Err(refusal) => Err(refusal),
        };
        match applied {
            Ok(applied) => {
                tracing::info!(service = %self.service.name(), desired = %release.desired(), digest = %applied.digest,
                    canary = ?applied.canary_digest, cached = applied.cached, elapsed_ms = started.elapsed().as_millis() as u64,
                    "release applied");
                self.retry = None;
                let mut status = self.status(&release, ReleasePhase::Applied, None);
                status.desired_digest = Some(applied.digest);
                status.desired_canary_digest = applied.canary_digest;
                status.applied_once = true;
                status.fallback = false;
                self.service.set_release_status(status);
                self.settled.send_replace(true);
            }
            Err(refusal) => self.failed(&release, refusal),
        }
    }

    /// The release file's content; a file that does not exist is empty: an optional ConfigMap
    /// that does not exist mounts as an empty folder, no release stated, so the image's
    /// component.
    async fn read(&self) -> std::io::Result<Vec<u8>> {
        match tokio::fs::read(&self.spec.file).await {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            read => read,
        }
    }

    /// Returns once the release file no longer says `content`.
    async fn superseded(&self, content: &[u8]) {
        loop {
            tokio::time::sleep(self.spec.interval).await;
            if self.read().await.is_ok_and(|now| now != content) {
                return;
            }
        }
    }

    /// Records a refusal (or a pull to try again) and, at start, falls back if allowed.
    fn failed(&mut self, release: &Release, refusal: Refusal) {
        let service = self.service.name().to_owned();
        let fallback = self.spec.fallback && !self.previous().is_some_and(|s| s.applied_once);
        if refusal.transient {
            let tries = self.retry.map_or(0, |(_, tries)| tries) + 1;
            let wait = (self.spec.interval * 2u32.saturating_pow(tries.min(10))).min(MAX_RETRY);
            self.retry = Some((Instant::now() + wait, tries));
            tracing::warn!(%service, desired = %release.desired(), reason = %refusal.reason, retry_in = ?wait, "release not applied yet");
        } else {
            tracing::warn!(%service, desired = %release.desired(), reason = %refusal.reason, kind = refusal.kind, "release refused; the running version stays");
        }
        self.service.count_release_refusal(refusal.kind);
        let phase = if refusal.transient { ReleasePhase::Retrying } else { ReleasePhase::Refused };
        self.set_status(release, phase, Some(refusal.reason), Some(fallback));
        if fallback {
            self.settled.send_replace(true);
        }
    }

    /// A canary the slot rolled back on its own (too many errors) is a refused release.
    fn watch_canary(&self) {
        let Some(status) = self.previous() else { return };
        let Some(canary) = status.desired_canary_digest.clone() else { return };
        if status.phase != ReleasePhase::Applied {
            return;
        }
        let versions = self.service.versions().list();
        if versions.iter().any(|v| v.digest == canary && matches!(v.state, VersionState::Canary | VersionState::Active))
        {
            return;
        }
        // The slot says why, if it was its own judgement (not a rollback by command).
        let why = match self.service.versions().last_canary_rollback() {
            Some(rollback) if rollback.digest == canary => format!(": {}", rollback.evidence.describe()),
            _ => String::new(),
        };
        let reason = format!(
            "the canary {canary} was rolled back after errors{why}; to try it again, change the release file (its percent or label is enough)"
        );
        tracing::warn!(service = %self.service.name(), %reason, "release refused");
        self.service.count_release_refusal("canary-errors");
        self.service.set_release_status(ReleaseStatus {
            phase: ReleasePhase::Refused,
            reason: Some(reason),
            since: now(),
            ..status
        });
    }

    fn previous(&self) -> Option<ReleaseStatus> {
        self.service.release_status()
    }

    fn status(&self, release: &Release, phase: ReleasePhase, reason: Option<String>) -> ReleaseStatus {
        let previous = self.previous();
        ReleaseStatus {
            file: self.spec.file.display().to_string(),
            desired: release.desired(),
            desired_label: release.label.clone(),
            desired_digest: None,
            desired_canary: release.canary.as_ref().map(|c| c.component.clone()),
            desired_canary_percent: release.canary.as_ref().map(|c| c.percent),
            desired_canary_digest: None,
            phase,
            reason,
            applied_once: previous.as_ref().is_some_and(|s| s.applied_once),
            fallback: previous.as_ref().is_some_and(|s| s.fallback),
            since: now(),
        }
    }

    fn set_status(&self, release: &Release, phase: ReleasePhase, reason: Option<String>, fallback: Option<bool>) {
        let mut status = self.status(release, phase, reason);
        if let Some(fallback) = fallback {
            status.fallback = fallback;
        }
        self.service.set_release_status(status);
    }
}

/// The status a service has before its release file is first read: not ready.
pub fn initial_status(spec: &ReleaseSpec) -> ReleaseStatus {
    ReleaseStatus {
        file: spec.file.display().to_string(),
        desired: "unknown".into(),
        desired_label: None,
        desired_digest: None,
        desired_canary: None,
        desired_canary_percent: None,
        desired_canary_digest: None,
        phase: ReleasePhase::Applying,
        reason: Some("the release file has not been read yet".into()),
        applied_once: false,
        fallback: false,
        since: now(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
