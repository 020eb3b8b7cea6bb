//! Host capabilities a component imports. Each lives in its own folder with the same shape:
//! `mod.rs` wires it into the linker, `host.rs` implements the generated `Host` traits, and
//! backends sit behind a trait in `client.rs`.

pub mod config;
pub mod crypto;
pub mod messaging;
pub mod outbound_http;
pub mod sql;
