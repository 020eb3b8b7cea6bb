//! What a store holds for one component instance.

use wasmtime::StoreLimits;
use wasmtime::StoreLimitsBuilder;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::outbound_http::OutboundHttpCapability;
use crate::capability::{CallerGone, Capability, CapabilityStore, InstanceStates, InstanceView};

/// Per-instance state: WASI contexts, the resource table, and each capability's state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    capabilities: InstanceStates,
    pub(super) limits: StoreLimits,
    caller_gone: CallerGone,
}

impl HostState {
    pub fn new(capabilities: InstanceStates, max_memory_bytes: u64) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(max_memory_bytes).unwrap_or(usize::MAX))
            .trap_on_grow_failure(false)
            .build();
        Self {
            // Components log to stderr; stdout and files are not theirs to use.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            capabilities,
            limits,
            caller_gone: CallerGone::new(),
        }
    }

    /// The token the request's task cancels when it gives up on this instance's answer.
    pub fn caller_gone_token(&self) -> CallerGone {
        self.caller_gone.clone()
    }
}

impl CapabilityStore for HostState {
    fn capability<C: Capability>(&mut self) -> InstanceView<'_, C::Instance> {
        match self.capabilities.get_mut::<C>() {
            Some(state) => InstanceView { state, table: &mut self.table },
            // Every instance gets a state from every capability the linker links.
            None => unreachable!("no state for a linked capability"),
        }
    }

    fn caller_gone(&self) -> &CallerGone {
        &self.caller_gone
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let Some(hooks) = self.capabilities.get_mut::<OutboundHttpCapability>() else {
            unreachable!("no state for the outbound HTTP capability")
        };
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks }
    }
}
