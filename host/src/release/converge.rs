//! Bringing a service to what its release file asks for: pull everything first (a pull that
//! fails changes nothing), then switch the active version and the canary through the gate. A
//! canary refused after the active version switched takes the switch back with it, so a
//! release is applied whole or not at all.

use std::path::PathBuf;
use std::sync::Arc;

use super::file::Release;
use super::registry::{PullError, Registry};
use crate::service::{Candidate, DeployError, Origin, Service, VersionState, digest_of};

/// The component the image ships: what a release without `component` runs.
#[derive(Debug, Clone)]
pub struct ImageComponent {
    pub path: PathBuf,
    pub label: Option<String>,
}

/// Why a release was not applied.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// For metrics: `digest-mismatch`, `smoke-test-failed`, `registry-unavailable`, ….
    pub kind: &'static str,
    pub reason: String,
    /// Worth trying again with the same file (the registry did not answer).
    pub transient: bool,
}

impl From<PullError> for Refusal {
    fn from(error: PullError) -> Self {
        Self { kind: error.kind(), transient: error.is_transient(), reason: error.to_string() }
    }
}

impl From<DeployError> for Refusal {
    fn from(error: DeployError) -> Self {
        Self { kind: error.kind(), transient: false, reason: error.to_string() }
    }
}

/// A version ready to offer to the gate.
struct Target {
    candidate: Candidate,
    /// The component's own digest.
    digest: String,
}

/// The resolved digests of a release that was applied.
#[derive(Debug, Clone)]
pub struct Applied {
    pub digest: String,
    pub canary_digest: Option<String>,
    /// Whether every blob came from the cache.
    pub cached: bool,
}

/// A release whose components are pulled and checked, ready for [`apply`].
pub struct Resolved {
    main: Target,
    canary: Option<(Target, u8)>,
    /// Whether every blob came from the cache.
    cached: bool,
}

/// The digests `release` resolves to, pulling what is needed; nothing changes in the service,
/// so this may be cancelled at any point.
pub async fn resolve(release: &Release, registry: &Registry, image: &ImageComponent) -> Result<Resolved, Refusal> {
    let mut cached = true;
    let main = match &release.component {
        Some(reference) => {
            let pulled = registry.pull(reference).await?;
            cached &= pulled.cached;
            Target {
                digest: pulled.digest,
                candidate: Candidate { label: release.label.clone(), ..Candidate::upload(pulled.bytes) },
            }
        }
        None => {
            let bytes = tokio::fs::read(&image.path).await.map_err(|e| Refusal {
                kind: "image-unreadable",
                reason: format!("reading the image's component {}: {e}", image.path.display()),
                transient: false,
            })?;
            let own = crate::service::component_digest(&image.path).await;
            let digest = own.clone().unwrap_or_else(|| digest_of(&bytes));
            let candidate = Candidate {
                label: release.label.clone().or_else(|| image.label.clone()),
                digest: own,
                origin: Origin::HostFile,
                ..Candidate::upload(bytes)
            };
            Target { digest, candidate }
        }
    };
    let canary = match &release.canary {
        Some(canary) => {
            let pulled = registry.pull(&canary.component).await?;
            cached &= pulled.cached;
            let candidate = Candidate {
                label: canary.label.clone(),
                canary_percent: Some(canary.percent),
                ..Candidate::upload(pulled.bytes)
            };
            Some((Target { digest: pulled.digest, candidate }, canary.percent))
        }
        None => None,
    };
    Ok(Resolved { main, canary, cached })
}

/// Makes `service` run a resolved release: the active version, then the canary.
pub async fn apply(service: &Arc<Service>, resolved: Resolved) -> Result<Applied, Refusal> {
    let Resolved { main, canary, cached } = resolved;
    let applied = Applied {
        digest: main.digest.clone(),
        canary_digest: canary.as_ref().map(|(target, _)| target.digest.clone()),
        cached,
    };
    let running_canary = || service.versions().list().into_iter().find(|v| v.state == VersionState::Canary);
    let mut switched = false;
    if service.current().digest != main.digest {
        if running_canary().is_some_and(|c| c.digest == main.digest) {
            service.versions().promote().await.map_err(DeployError::from)?;
        } else {
            deploy(service, Candidate { replace_canary: true, ..main.candidate }).await?;
            switched = true;
        }
    }
    match (canary, running_canary()) {
        (None, Some(_)) => {
            service.versions().rollback().await.map_err(DeployError::from)?;
        }
        (Some((target, percent)), Some(running)) if running.digest == target.digest => {
            if running.percent != Some(percent) {
                service.versions().set_canary_percent(percent).map_err(DeployError::from)?;
            }
        }
        (Some((target, _)), _) => {
            if let Err(refusal) = deploy(service, Candidate { replace_canary: true, ..target.candidate }).await {
                if switched {
                    // The whole release or none of it: back to the version that ran before.
                    if let Err(error) = service.versions().rollback().await {
                        tracing::error!(service = %service.name(), %error, "cannot take back the switch of a refused release");
                    }
                }
                return Err(refusal);
            }
        }
        (None, None) => {}
    }
    Ok(applied)
}

/// The gate; the same bytes already active are no refusal for a release.
async fn deploy(service: &Service, candidate: Candidate) -> Result<(), Refusal> {
    match service.deploy(candidate).await {
        Ok(_) | Err(DeployError::Unchanged(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
