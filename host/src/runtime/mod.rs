//! The wasmtime engine and what every instance gets: pooling allocation, epoch-based deadlines
//! with async yields, a memory limit, and the linker with WASI and the host's capabilities.

mod state;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy, Store,
    UpdateDeadline,
};

pub use state::HostState;

use crate::capability::{HostCapabilities, InstanceStates};

/// How often the engine's epoch advances: the granularity of deadlines and of the yields that
/// let a CPU-heavy instance (bcrypt) share a core with other requests.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits that hold for every instance.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Instances that may run at once across the process; also sizes the pooling allocator.
    pub max_instances: u32,
    /// Instances that may wait warm between requests across the process (reuse isolation);
    /// `None` is as many as `max_instances`. Also sizes the pooling allocator.
    pub max_warm_instances: Option<u32>,
    /// Largest linear memory an instance may grow to.
    pub max_memory_bytes: u64,
    /// Tell `perf` where the compiled components' functions are (a perf map file).
    pub perf_map: bool,
    /// Where instances' memories, tables and stacks come from.
    pub allocator: InstanceAllocator,
}

/// Where instances' memories, tables and stacks come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceAllocator {
    /// Slots reserved at start and reused (the default; what production runs). The pool
    /// reserves its whole virtual address space up front (about 1.2 TB with the defaults).
    #[default]
    Pooling,
    /// Each instance maps its own memory when it is created and unmaps it when dropped. For
    /// measuring only: tools such as valgrind's callgrind cannot run a process that reserves
    /// the pool's address space, and this allocator changes what instantiation costs.
    OnDemand,
}

impl RuntimeOptions {
    pub const DEFAULT_MAX_INSTANCES: u32 = 64;
    pub const DEFAULT_MAX_MEMORY_MIB: u64 = 64;
}

impl RuntimeOptions {
    /// How many instances may wait warm.
    pub fn warm_instances(&self) -> u32 {
        self.max_warm_instances.unwrap_or(self.max_instances)
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_instances: Self::DEFAULT_MAX_INSTANCES,
            max_warm_instances: None,
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_MIB << 20,
            perf_map: false,
            allocator: InstanceAllocator::Pooling,
        }
    }
}

/// The error an instance fails with when it runs past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request ran past its deadline")]
pub struct DeadlineExceeded;

/// One engine per process, shared by every component and version, and the capabilities every
/// instance is linked with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    options: RuntimeOptions,
    /// `None` in a runtime that only compiles (`skiff compile`, `skiff push`).
    capabilities: Option<Arc<HostCapabilities>>,
}

impl Runtime {
    /// A runtime that serves: its instances get `capabilities`.
    pub fn new(options: RuntimeOptions, capabilities: HostCapabilities) -> anyhow::Result<Self> {
        Self::with(options, Some(Arc::new(capabilities)))
    }

    /// A runtime that compiles and links components but serves none (no capability is built,
    /// so nothing connects to a database or a broker).
    pub fn compile_only(options: RuntimeOptions) -> anyhow::Result<Self> {
        Self::with(options, None)
    }

    fn with(options: RuntimeOptions, capabilities: Option<Arc<HostCapabilities>>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.allocation_strategy(match options.allocator {
            InstanceAllocator::Pooling => InstanceAllocationStrategy::Pooling(pooling(&options)),
            InstanceAllocator::OnDemand => InstanceAllocationStrategy::OnDemand,
        });
        // Components are called one export at a time with wasip2's async bindings; the
        // component-model-async machinery (futures and streams across the boundary) would only
        // add bookkeeping to every call.
        config.concurrency_support(false);
        if options.perf_map {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);
        Ok(Self { engine, options, capabilities })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// The capabilities instances get; `None` in a [`Runtime::compile_only`].
    pub fn capabilities(&self) -> Option<&Arc<HostCapabilities>> {
        self.capabilities.as_ref()
    }

    /// A linker with WASI, wasi:http and every capability of this host.
    pub fn linker(&self) -> anyhow::Result<Linker<HostState>> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::capability::request::add_to_linker(&mut linker)?;
        HostCapabilities::add_to_linker(&mut linker)?;
        Ok(linker)
    }

    /// The state of a new instance whose capabilities' states are `capabilities`.
    pub fn instance_state(&self, capabilities: InstanceStates) -> HostState {
        HostState::new(capabilities, self.options.max_memory_bytes)
    }

    /// A store for one instance that traps with [`DeadlineExceeded`] once `deadline` passes,
    /// yielding to the executor at every epoch tick until then.
    /// The deadline lives in the state, so a warm instance's next request brings its own
    /// (see [`HostState::next_request`]).
    pub fn store(&self, mut state: HostState, deadline: Instant) -> Store<HostState> {
        state.deadline = deadline;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

fn pooling(options: &RuntimeOptions) -> PoolingAllocationConfig {
    // Room for every concurrent request, as many warm instances idle between requests (see
    // `service::warm`), and the instances used to read migrations and for smoke tests, which
    // run outside the request limit.
    let instances = options.max_instances + options.warm_instances() + 16;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    // A Rust wasip2 component is a handful of core instances (its module plus adapter shims)
    // with one memory and a few tables.
    pool.total_core_instances(instances * 8);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 4);
    pool.total_stacks(instances);
    pool.max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX));
    // With fresh instances the reset of a slot is part of every request (with warm ones, of
    // every instance's last). By default
    // wasmtime gives a used slot's pages back with madvise, which costs a TLB shootdown across
    // cores and page faults on the next request. Where the kernel can say which pages were
    // written (PAGEMAP_SCAN, Linux 6.7+), only those are reset, with memcpy, and stay resident.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes);
        pool.linear_memory_keep_resident(RESIDENT_MEMORY_BYTES);
        pool.table_keep_resident(RESIDENT_TABLE_BYTES);
    }
    pool
}

/// Per slot, how much of a linear memory may stay resident between instances: a Rust
/// component's 1 MiB shadow stack plus its data and a small heap.
const RESIDENT_MEMORY_BYTES: usize = 2 << 20;
/// The same for tables (8 bytes per element).
const RESIDENT_TABLE_BYTES: usize = 64 << 10;

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    thread::Builder::new()
        .name("skiff-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
