//! Where a service stands with its release file: what the file asks for, and whether the
//! service runs it, is still getting there, or refused it (and why).

use serde::Serialize;

/// The phase of a service's release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleasePhase {
    /// Pulling, checking or switching.
    Applying,
    /// The service runs what the file asks for.
    Applied,
    /// The registry did not answer or the file could not be read: tried again shortly.
    Retrying,
    /// The release was refused (bad file, digest mismatch, the gate, a canary rolled back); the
    /// running version stays until the file changes.
    Refused,
}

/// What `GET /admin/services/{name}/release` and `skiff release status` show.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseStatus {
    /// The release file.
    pub file: String,
    /// The file's `component` (`REF@sha256:…`), or `image` for the component the image ships.
    pub desired: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_label: Option<String>,
    /// The component's own digest (the `.wasm`'s, the OCI layer's) once pulled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// The file's canary: `REF@sha256:…` and its share of requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_canary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_canary_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_canary_digest: Option<String>,
    pub phase: ReleasePhase,
    /// Why it was refused or is retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A release has been applied since the process started (until then it is not ready,
    /// unless `fallback`).
    pub applied_once: bool,
    /// Serving the image's component because the release could not be applied at start
    /// (`SKIFF_RELEASE_FALLBACK`).
    pub fallback: bool,
    /// When the phase last changed.
    pub since: String,
}

impl ReleaseStatus {
    /// Whether the service may report ready: it runs a release it was given, or falls back.
    pub fn serving(&self) -> bool {
        self.applied_once || self.fallback
    }

    /// One line for readiness and logs.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        let phase = match self.phase {
            ReleasePhase::Applying => "being applied",
            ReleasePhase::Applied => "applied",
            ReleasePhase::Retrying => "not applied yet",
            ReleasePhase::Refused => "refused",
        };
        let fallback = if self.fallback { " (serving the image's component)" } else { "" };
        format!("release {} {phase}{reason}{fallback}", self.desired)
    }
}
