//! What a store holds for one component instance.

use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::request::RequestOrigin;
use crate::capability::{CallerGone, Capability, CapabilityStore, HasInstanceState, InstanceStates, InstanceView};

/// Per-instance state: WASI contexts, the resource table, each capability's state, and what
/// belongs to the request the instance serves now (its deadline, whether its caller still waits,
/// where it came from).
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    capabilities: InstanceStates,
    pub(super) limits: InstanceLimits,
    /// When the current request's time is up; the store's epoch callback reads it.
    pub(super) deadline: Instant,
    caller_gone: CallerGone,
    origin: RequestOrigin,
}

impl HostState {
    pub fn new(capabilities: InstanceStates, max_memory_bytes: u64) -> Self {
        Self {
            // Components log to stderr; stdout and files are not theirs to use.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            capabilities,
            limits: InstanceLimits::new(max_memory_bytes),
            deadline: Instant::now(),
            caller_gone: CallerGone::new(),
            origin: RequestOrigin::default(),
        }
    }

    /// Readies a warm instance for its next request: the capabilities' states are made anew
    /// (a log record goes under the span of the request it belongs to), and the deadline and
    /// the caller belong to the new request.
    pub fn next_request(&mut self, capabilities: InstanceStates, deadline: Instant) {
        self.capabilities = capabilities;
        self.deadline = deadline;
        self.caller_gone = CallerGone::new();
        self.origin = RequestOrigin::default();
    }

    /// Where the request this instance serves now came from.
    pub fn set_request_origin(&mut self, origin: RequestOrigin) {
        self.origin = origin;
    }

    /// The linear memory the instance holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }

    /// Why this instance must not serve another request, if it must not: it still holds
    /// resources of the request it served (an open transaction, a stream), or it was refused
    /// memory and may be in a state its code did not plan for.
    pub fn unfit_for_reuse(&self) -> Option<&'static str> {
        if self.limits.refused_growth {
            Some("memory-limit")
        } else if !self.table.is_empty() {
            Some("leaked-resources")
        } else {
            None
        }
    }
}

/// The memory an instance may grow to; counts what it holds and remembers whether growth was
/// ever refused.
pub(super) struct InstanceLimits {
    max_memory_bytes: usize,
    /// Its linear memories' sizes together (wasmtime asks here when a memory is created too).
    memory_bytes: usize,
    refused_growth: bool,
}

impl InstanceLimits {
    fn new(max_memory_bytes: u64) -> Self {
        Self {
            max_memory_bytes: usize::try_from(max_memory_bytes).unwrap_or(usize::MAX),
            memory_bytes: 0,
            refused_growth: false,
        }
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // A refused growth is an error the guest sees (its allocator usually aborts), not a trap
        // forced by the host.
        let allowed = desired <= self.max_memory_bytes && maximum.is_none_or(|maximum| desired <= maximum);
        self.refused_growth |= !allowed;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|maximum| desired <= maximum))
    }
}

impl CapabilityStore for HostState {
    fn capability<C: Capability>(&mut self) -> InstanceView<'_, C::Instance>
    where
        InstanceStates: HasInstanceState<C>,
    {
        InstanceView { state: HasInstanceState::<C>::instance_state(&mut self.capabilities), table: &mut self.table }
    }

    fn caller_gone(&self) -> &CallerGone {
        &self.caller_gone
    }

    fn request_origin(&self) -> RequestOrigin {
        self.origin
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.capabilities.outbound_http }
    }
}
