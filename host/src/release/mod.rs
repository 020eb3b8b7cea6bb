//! Releases across pods: components as OCI artifacts (`skiff push`), and a release file naming
//! the desired digest (a ConfigMap mounted into every pod of a service) that each host follows
//! in process, through the same gate as a hot swap.
//!
//! - [`registry`]: push and pull Wasm artifacts, digests checked, cached by digest.
//! - [`file`]: the release file.
//! - [`converge`]: from what runs to what the file asks for, never half of it.
//! - [`watch`]: reads the file at start (before the host reports ready) and on every change.

mod cache;
mod converge;
pub mod file;
pub mod registry;
mod watch;

pub use cache::Cache;
pub use file::Release;
pub use registry::{
    MAX_MANIFEST_BYTES, PullError, PullLimits, Pulled, Pushed, Registry, RegistryOptions, default_auth_file,
    registry_of,
};
pub use watch::{ReleaseSpec, follow, initial_status};
