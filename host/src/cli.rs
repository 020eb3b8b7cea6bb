//! The command line. Every flag is also an environment variable, so a pod is configured the
//! twelve-factor way and a developer the flag way, with the same names.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admin::AdminSpec;
use crate::capability::CapabilityArgs;
use crate::capability::config::parse_pair;
use crate::launch::{HostSpec, ServiceSpec};
use crate::runtime::{InstanceAllocator, RuntimeOptions};
use crate::server::{self, DEFAULT_SHUTDOWN_GRACE};
use crate::service::{CanaryPolicy, Isolation, RequestLimits, SwapOptions};
use crate::tls::TlsFiles;

#[derive(Debug, Parser)]
#[command(name = "skiff", version, about = "Runs microservices written as WebAssembly components")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `human` for terminals, `json` for log collectors.
    #[arg(long, env = "SKIFF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

// Parsed once per process; the serve flags make one variant large, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one component, as a pod does.
    Serve(ServeArgs),
    /// Serve every built component in one process on one port, on embedded storage.
    Dev(DevArgs),
    /// Compile a component ahead of time (`.wasm` → `.cwasm`) so a host starts without compiling.
    Compile(CompileArgs),
    /// Push a component to an OCI registry as a Wasm artifact; prints `REF@sha256:…` for a
    /// release file.
    Push(PushArgs),
    #[command(flatten)]
    Admin(AdminCommand),
}

/// Commands that talk to a running host's admin listener.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Roll out a new version of a service's component (health-gated; optionally as a canary).
    Swap(SwapArgs),
    /// Go back to the previous version (or drop the running canary).
    Rollback(AdminTarget),
    /// Give the running canary every request.
    Promote(AdminTarget),
    /// Change the share of requests the running canary gets.
    Canary(CanaryArgs),
    /// List a service's loaded versions.
    Versions(AdminTarget),
    /// Give a user the admin role (users: the operator's way to make the first admin).
    GrantAdmin(GrantArgs),
    /// Releases: `skiff release status --service users` shows the release file's version, the
    /// active one, and why a refused release was refused.
    #[command(subcommand)]
    Release(ReleaseCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// What the release file asks for, what runs, and why a release was refused.
    Status(AdminTarget),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component (a `.wasm` file; machine code from `skiff compile` is refused).
    #[arg(long)]
    pub component: PathBuf,
    /// Where to push it: `REGISTRY/REPOSITORY:TAG`.
    pub reference: String,
    /// Reach the registry over plain HTTP (a local registry only).
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach registries.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Credentials per registry: a docker config file, or a Kubernetes pull secret's
    /// `.dockerconfigjson`; defaults to `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    #[arg(long, env = "SKIFF_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
    /// How long to wait for a registry to accept a connection, and between two reads of its
    /// answer, in milliseconds.
    #[arg(long, env = "SKIFF_REGISTRY_TIMEOUT_MS", default_value_t = 20_000)]
    pub registry_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub target: AdminTarget,
    /// The user's id (from the sign-up's answer or `Location`).
    #[arg(long)]
    pub user: String,
}

/// Which host and service an admin command is for.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// The service (its name, e.g. `users`).
    #[arg(long)]
    pub service: String,
    /// The host's admin listener.
    #[arg(long, env = "SKIFF_ADMIN_URL", default_value = "http://127.0.0.1:4090")]
    pub admin_url: String,
    /// The host's admin token.
    #[arg(long, env = "SKIFF_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// For an `https://` admin URL: the CA bundle (PEM) the host's certificate must chain to.
    #[arg(long, env = "SKIFF_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SwapArgs {
    #[command(flatten)]
    pub target: AdminTarget,
    /// The new version (a `.wasm` file), uploaded to the host.
    #[arg(long)]
    pub component: PathBuf,
    /// Its label, shown in the `skiff-component-version` header; defaults to the digest.
    #[arg(long)]
    pub label: Option<String>,
    /// Send this percentage of requests (1-99) to it as a canary instead of switching at once.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub canary: Option<u8>,
}

#[derive(Debug, Args)]
pub struct CanaryArgs {
    #[command(flatten)]
    pub target: AdminTarget,
    /// The canary's new share of requests, 1-99.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub percent: u8,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component (a `.wasm` file).
    #[arg(long)]
    pub component: PathBuf,
    /// Where to write the machine code; serve it with `--component`. It loads only in a skiff of
    /// the same version on the same CPU architecture.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve: a `.wasm` file, or a `.cwasm` file from `skiff compile`.
    #[arg(long, env = "SKIFF_COMPONENT")]
    pub component: PathBuf,
    /// Service name, used for the path prefix, logs and metrics; defaults to the file stem.
    #[arg(long, env = "SKIFF_SERVICE_NAME")]
    pub name: Option<String>,
    /// Version label reported in the `skiff-component-version` header; defaults to the digest.
    #[arg(long, env = "SKIFF_COMPONENT_VERSION")]
    pub component_version: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "0.0.0.0:4000")]
    pub listen: SocketAddr,
    /// A second listener for calls from inside the cluster (the users credentials check is
    /// served only there). Never expose it through a public Service.
    #[arg(long, env = "SKIFF_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// Roll out whatever component lands at this path (e.g. a mounted volume), health-gated.
    #[arg(long, env = "SKIFF_WATCH")]
    pub watch: Option<PathBuf>,
    /// How often the watched path is checked, in milliseconds.
    #[arg(long, env = "SKIFF_WATCH_INTERVAL_MS", default_value_t = 1_000)]
    pub watch_interval_ms: u64,
    /// Follow this release file (a mounted ConfigMap naming `component: REF@sha256:…`): the host
    /// loads that version before it reports ready, and rolls out every change, health-gated.
    #[arg(long, env = "SKIFF_RELEASE_FILE")]
    pub release_file: Option<PathBuf>,
    /// How often the release file is read, in milliseconds.
    #[arg(long, env = "SKIFF_RELEASE_INTERVAL_MS", default_value_t = 1_000)]
    pub release_interval_ms: u64,
    /// Where pulled components are cached by digest; defaults to DATA_DIR/components.
    #[arg(long, env = "SKIFF_RELEASE_CACHE_DIR")]
    pub release_cache_dir: Option<PathBuf>,
    /// If the release cannot be applied at start, serve the image's component (reported in
    /// readiness, metrics and status) instead of staying unready.
    #[arg(long, env = "SKIFF_RELEASE_FALLBACK")]
    pub release_fallback: bool,
    /// The largest component a release may pull, in bytes: a manifest that declares more is
    /// refused, and a registry sending more than its manifest declares is cut off.
    #[arg(long, env = "SKIFF_RELEASE_MAX_COMPONENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub release_max_component_bytes: u64,
    /// The longest a release's pull may take, in milliseconds; then it is tried again, with
    /// back-off. A change of the release file cancels a pull still running.
    #[arg(long, env = "SKIFF_RELEASE_PULL_DEADLINE_MS", default_value_t = 300_000)]
    pub release_pull_deadline_ms: u64,
    /// Registries (`HOST:PORT`) reached over plain HTTP, comma-separated; a local one only.
    #[arg(long, env = "SKIFF_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// `postgres://user:pass@host/db` or `sqlite://path`; defaults to SQLite under --data-dir.
    #[arg(long, env = "SKIFF_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Folder of built components; each `NAME.wasm` is served under `/NAME-ms`.
    #[arg(long, env = "SKIFF_COMPONENTS_DIR", default_value = "target/wasm32-wasip2/release")]
    pub components_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Settings given one environment variable each: `SKIFF_CONFIG_TOKEN_PUBLIC_KEY=…` is the key
/// `token_public_key`. Explicit `--config` pairs come after, so they win.
pub fn config_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = vars
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("SKIFF_CONFIG_")?;
            (!key.is_empty()).then(|| (key.to_ascii_lowercase(), value))
        })
        .collect();
    pairs.sort();
    pairs
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Where embedded databases live (`NAME.db`).
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// A component setting, `KEY=VALUE`, read through wasi:config; repeatable, or comma-separated
    /// in the environment variable. `SKIFF_CONFIG_<KEY>=VALUE` sets one key too (for Secrets).
    #[arg(long = "config", env = "SKIFF_CONFIG", value_parser = parse_pair, value_delimiter = ',', hide_env_values = true)]
    pub config: Vec<(String, String)>,
    /// Component instances that may run at once; beyond it requests wait, then get 503.
    #[arg(long, env = "SKIFF_MAX_INSTANCES", default_value_t = RuntimeOptions::DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,
    /// How requests of a service are kept apart: `reuse` (an instance serves several requests,
    /// one at a time, and is dropped after a trap, a deadline or its budget) or `fresh` (an
    /// instance per request). See docs/isolation.md.
    #[arg(long, env = "SKIFF_ISOLATION", value_enum, default_value_t = IsolationMode::Reuse)]
    pub isolation: IsolationMode,
    /// With `--isolation reuse`: instances that may wait warm between requests across the
    /// process (default: as many as `--max-instances`). Each may hold up to `--max-memory-mb`.
    #[arg(long, env = "SKIFF_MAX_WARM_INSTANCES")]
    pub max_warm_instances: Option<u32>,
    /// With `--isolation reuse`: requests one instance serves before it is dropped.
    #[arg(long, env = "SKIFF_REUSE_MAX_REQUESTS", default_value_t = Isolation::DEFAULT_MAX_REQUESTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub reuse_max_requests: u32,
    /// With `--isolation reuse`: how long one instance lives from its creation, in milliseconds.
    #[arg(long, env = "SKIFF_REUSE_MAX_AGE_MS", default_value_t = millis(Isolation::DEFAULT_MAX_AGE), value_parser = clap::value_parser!(u64).range(1..))]
    pub reuse_max_age_ms: u64,
    /// Largest linear memory one instance may use, in MiB.
    #[arg(long, env = "SKIFF_MAX_MEMORY_MB", default_value_t = RuntimeOptions::DEFAULT_MAX_MEMORY_MIB)]
    pub max_memory_mb: u64,
    /// Write /tmp/perf-PID.map so `perf record`/`perf report` name the components' functions.
    #[arg(long, env = "SKIFF_WASM_PERF_MAP")]
    pub wasm_perf_map: bool,
    /// Where instances' memory comes from: `pooling` (slots reserved at start, the default) or
    /// `on-demand` (mapped per instance). `on-demand` is for measuring only: valgrind's
    /// callgrind cannot run the pool's 1.2 TB address-space reservation.
    #[arg(long, env = "SKIFF_INSTANCE_ALLOCATOR", value_enum, default_value_t = InstanceAllocator::Pooling)]
    pub instance_allocator: InstanceAllocator,
    /// Deadline of one request, from admission to its last byte, in milliseconds.
    #[arg(long, env = "SKIFF_REQUEST_TIMEOUT_MS", default_value_t = millis(RequestLimits::DEFAULT_TIMEOUT))]
    pub request_timeout_ms: u64,
    /// How long a request may wait for a free instance slot, in milliseconds.
    #[arg(long, env = "SKIFF_QUEUE_TIMEOUT_MS", default_value_t = millis(RequestLimits::DEFAULT_QUEUE_TIMEOUT))]
    pub queue_timeout_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "SKIFF_MAX_BODY_BYTES", default_value_t = RequestLimits::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body, in milliseconds (408 past it). Bodies
    /// are read before a request takes an instance slot.
    #[arg(long, env = "SKIFF_BODY_TIMEOUT_MS", default_value_t = millis(RequestLimits::DEFAULT_BODY_TIMEOUT))]
    pub body_timeout_ms: u64,
    /// Connections each listener keeps open at once (public, internal, admin); past it the
    /// listener stops accepting until one closes.
    #[arg(long, env = "SKIFF_MAX_CONNECTIONS", default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` names the client (the ingress controller's pods), as
    /// CIDRs or addresses; comma-separated. Without it, the client is the socket peer.
    #[arg(long = "trusted-proxies", env = "SKIFF_TRUSTED_PROXIES", value_parser = server::parse_trusted_proxy, value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// After SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "SKIFF_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace_secs: u64,
    /// Serve every listener (public, internal, admin) over TLS with this certificate chain
    /// (PEM, leaf first); re-read when the file changes, so a renewed certificate needs no
    /// restart. Needs --tls-key.
    #[arg(long, env = "SKIFF_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SKIFF_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The operations listener: `/metrics` and readiness with its detail (the app port answers
    /// probes with a bare status and has no `/metrics`). Without it neither is served. Never
    /// expose it through a public Service.
    #[arg(long, env = "SKIFF_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,
    /// The admin listener (hot swap). Never expose it publicly.
    #[arg(long, env = "SKIFF_ADMIN_LISTEN", default_value = "127.0.0.1:4090")]
    pub admin_listen: SocketAddr,
    /// Bearer token for the admin listener; without one the admin listener does not start.
    #[arg(long, env = "SKIFF_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The folder the admin API may load components from by path (besides uploads).
    #[arg(long, env = "SKIFF_ADMIN_COMPONENTS_DIR")]
    pub admin_components_dir: Option<PathBuf>,
    /// Versions of each component kept loaded (the active one included) for instant rollback.
    #[arg(long, env = "SKIFF_KEEP_VERSIONS", default_value_t = SwapOptions::DEFAULT_KEEP_VERSIONS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_versions: u64,
    /// A canary is judged on its last this many judged requests, against the stable version's
    /// requests over the same time.
    #[arg(long, env = "SKIFF_CANARY_WINDOW", default_value_t = CanaryPolicy::DEFAULT_WINDOW)]
    pub canary_window: usize,
    /// No canary is rolled back before this many of its requests were judged (a minimum sample).
    #[arg(long, env = "SKIFF_CANARY_MIN_REQUESTS", default_value_t = CanaryPolicy::DEFAULT_MIN_REQUESTS)]
    pub canary_min_requests: usize,
    /// A canary whose error rate (its own faults: traps, deadlines, 5xx other than a 503 with
    /// Retry-After) exceeds the stable version's by more than this many points is rolled back.
    #[arg(long, env = "SKIFF_CANARY_MAX_ERROR_PERCENT", default_value_t = CanaryPolicy::DEFAULT_MAX_ERROR_PERCENT)]
    pub canary_max_error_percent: f64,
    /// Promote a canary after this many judged requests within its error budget; 0 = on command
    /// only.
    #[arg(long, env = "SKIFF_CANARY_PROMOTE_AFTER", default_value_t = CanaryPolicy::DEFAULT_PROMOTE_AFTER)]
    pub canary_promote_after: u64,
    /// How long a new version's health route may take in the smoke test, in milliseconds.
    #[arg(long, env = "SKIFF_SMOKE_TIMEOUT_MS", default_value_t = millis(SwapOptions::DEFAULT_SMOKE_TIMEOUT))]
    pub smoke_timeout_ms: u64,
    /// Each capability's own flags (`capability/*/settings.rs`).
    #[command(flatten)]
    pub capabilities: CapabilityArgs,
}

/// The `--isolation` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationMode {
    Reuse,
    Fresh,
}

/// A default duration as the milliseconds a flag takes.
const fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl CommonArgs {
    /// The host's settings from these flags, around `services`.
    pub fn host_spec(&self, listen: SocketAddr, services: Vec<ServiceSpec>) -> HostSpec {
        let mut spec = HostSpec::with_services(listen, services, self.data_dir.clone());
        spec.ops_listen = self.ops_listen;
        spec.runtime = RuntimeOptions {
            max_instances: self.max_instances,
            max_warm_instances: self.max_warm_instances,
            max_memory_bytes: self.max_memory_mb << 20,
            perf_map: self.wasm_perf_map,
            allocator: self.instance_allocator,
        };
        spec.limits = RequestLimits {
            timeout: Duration::from_millis(self.request_timeout_ms),
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            body_timeout: Duration::from_millis(self.body_timeout_ms),
        };
        spec.isolation = match self.isolation {
            IsolationMode::Fresh => Isolation::Fresh,
            IsolationMode::Reuse => Isolation::Reuse {
                max_requests: self.reuse_max_requests,
                max_age: Duration::from_millis(self.reuse_max_age_ms),
            },
        };
        spec.capabilities = self.capabilities.settings();
        spec.config = self.config.clone();
        spec.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        spec.max_connections = self.max_connections;
        spec.trusted_proxies = self.trusted_proxies.clone();
        spec.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        };
        spec.swap = SwapOptions {
            keep_versions: usize::try_from(self.keep_versions).unwrap_or(usize::MAX),
            canary: CanaryPolicy {
                window: self.canary_window,
                min_requests: self.canary_min_requests,
                max_error_rate: self.canary_max_error_percent / 100.0,
                promote_after: self.canary_promote_after,
            },
            smoke_timeout: Duration::from_millis(self.smoke_timeout_ms),
        };
        spec.admin = self.admin_token.clone().filter(|token| !token.is_empty()).map(|token| AdminSpec {
            listen: self.admin_listen,
            token,
            components_dir: self.admin_components_dir.clone(),
        });
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_come_from_prefixed_variables() {
        let vars = [
            ("SKIFF_CONFIG_TOKEN_PUBLIC_KEY".to_owned(), "abc".to_owned()),
            ("SKIFF_CONFIG".to_owned(), "x=y".to_owned()),
            ("SKIFF_CONFIG_".to_owned(), "ignored".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        assert_eq!(config_from_env(vars.into_iter()), vec![("token_public_key".to_owned(), "abc".to_owned())]);
    }

    #[test]
    fn flag_defaults_are_the_hosts_defaults() {
        let cli = Cli::parse_from(["skiff", "dev"]);
        let Command::Dev(args) = cli.command else { panic!("parsed another command") };
        let flags = args.common.host_spec(args.listen, Vec::new());
        let defaults = HostSpec::with_services(args.listen, Vec::new(), args.common.data_dir.clone());
        assert_eq!(format!("{:?}", flags.runtime), format!("{:?}", defaults.runtime));
        assert_eq!(format!("{:?}", flags.limits), format!("{:?}", defaults.limits));
        assert_eq!(format!("{:?}", flags.capabilities), format!("{:?}", defaults.capabilities));
        assert_eq!(format!("{:?}", flags.swap), format!("{:?}", defaults.swap));
        assert_eq!(flags.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(flags.max_connections, defaults.max_connections);
    }
}
