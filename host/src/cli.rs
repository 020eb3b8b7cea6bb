//! The command line. Every flag is also an environment variable, so a pod is configured the
//! twelve-factor way and a developer the flag way, with the same names.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::capability::config::parse_pair;

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    about = "Runs microservices written as WebAssembly components"
)]
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one component, as a pod does.
    Serve(ServeArgs),
    /// Serve every built component in one process on one port, on embedded storage.
    Dev(DevArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve (a `.wasm` file).
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
    /// `postgres://user:pass@host/db` or `sqlite://path`; defaults to SQLite under --data-dir.
    #[arg(long, env = "SKIFF_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Folder of built components; each `NAME.wasm` is served under `/NAME-ms`.
    #[arg(
        long,
        env = "SKIFF_COMPONENTS_DIR",
        default_value = "target/wasm32-wasip2/release"
    )]
    pub components_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Where embedded databases live (`NAME.db`).
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// A component setting, `KEY=VALUE`, read through wasi:config; repeatable, or comma-separated
    /// in the environment variable.
    #[arg(long = "config", env = "SKIFF_CONFIG", value_parser = parse_pair, value_delimiter = ',', hide_env_values = true)]
    pub config: Vec<(String, String)>,
    /// Component instances that may run at once; beyond it requests wait, then get 503.
    #[arg(long, env = "SKIFF_MAX_INSTANCES", default_value_t = 64)]
    pub max_instances: u32,
    /// Largest linear memory one instance may use, in MiB.
    #[arg(long, env = "SKIFF_MAX_MEMORY_MB", default_value_t = 64)]
    pub max_memory_mb: u64,
    /// Deadline of one request, from admission to its last byte, in milliseconds.
    #[arg(long, env = "SKIFF_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// How long a request may wait for a free instance slot, in milliseconds.
    #[arg(long, env = "SKIFF_QUEUE_TIMEOUT_MS", default_value_t = 1_000)]
    pub queue_timeout_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "SKIFF_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Connections per database pool.
    #[arg(long, env = "SKIFF_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// After SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "SKIFF_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,
}
