//! skiff: a host that runs microservices written as WebAssembly components.
//!
//! The pieces, in the order a request meets them: [`server`] (listener, router, host routes),
//! [`service`] (a component version and an instance per request: warm and reused, or fresh; see
//! `docs/isolation.md`), [`runtime`] (the
//! wasmtime engine and per-instance limits) and [`capability`] (what a component may import).
//! [`admin`] rolls out new component versions while the host serves; [`admin_shell`] is its
//! client for `skiff swap` and the other admin commands.

pub mod admin;
pub mod admin_shell;
pub mod capability;
pub mod cli;
pub mod launch;
pub mod metrics;
pub mod release;
pub mod retry;
pub mod runtime;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tls;
