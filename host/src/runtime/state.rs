//! What a store holds for one component instance.

use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::StoreLimitsBuilder;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::config::ComponentConfig;
use crate::capability::crypto::Crypto;
use crate::capability::messaging::Outbox;
use crate::capability::outbound_http::{OutboundHttp, OutboundPolicy};
use crate::capability::sql::SqlClient;

/// The capabilities of one service, shared by all its instances.
#[derive(Clone)]
pub struct Capabilities {
    pub sql: Arc<dyn SqlClient>,
    pub config: ComponentConfig,
    pub crypto: Arc<Crypto>,
    pub outbox: Option<Arc<Outbox>>,
    pub outbound: Arc<OutboundPolicy>,
}

/// Per-instance state: WASI contexts, the resource table, and the capabilities' handles.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) sql: Arc<dyn SqlClient>,
    pub(crate) config: ComponentConfig,
    pub(crate) crypto: Arc<Crypto>,
    pub(crate) outbox: Option<Arc<Outbox>>,
    pub(crate) limits: StoreLimits,
    outbound: OutboundHttp,
}

impl HostState {
    pub fn new(capabilities: &Capabilities, max_memory_bytes: u64) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(max_memory_bytes).unwrap_or(usize::MAX))
            .trap_on_grow_failure(false)
            .build();
        Self {
            // Components log to stderr; stdout and files are not theirs to use.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            sql: capabilities.sql.clone(),
            config: capabilities.config.clone(),
            crypto: capabilities.crypto.clone(),
            outbox: capabilities.outbox.clone(),
            limits,
            outbound: OutboundHttp(capabilities.outbound.clone()),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}
