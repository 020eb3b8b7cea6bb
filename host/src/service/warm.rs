//! Isolation between the requests of one service, and the warm instances that reuse keeps.
//!
//! With [`Isolation::Fresh`] every request gets an instance of its own, dropped after it. With
//! [`Isolation::Reuse`] (the default) an instance that served a request cleanly goes back to its
//! version's [`WarmPool`] and serves the next one, one request at a time, until it has served
//! its share of requests or lived its time. Whatever could carry harm from one request to the
//! next ends its instance instead: a trap or a deadline, a refused memory growth, a resource
//! still open when the handler returned, or its version leaving service (a swap, a rollback, a
//! canary's end). The instance limit counts instances serving a request; warm ones wait in
//! their pool outside it, at most `--max-warm-instances` across the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::metrics::{DiscardLabels, Metrics};
use crate::runtime::HostState;

/// How a service's requests are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A new instance for every request: nothing one request leaves in memory reaches another.
    Fresh,
    /// An instance serves up to `max_requests` requests, one at a time, within `max_age` of its
    /// creation.
    Reuse { max_requests: u32, max_age: Duration },
}

impl Isolation {
    /// wasmtime's own default for reusing an instance (`wasmtime serve`, WASIp3).
    pub const DEFAULT_MAX_REQUESTS: u32 = 128;
    /// Bounds how long anything an instance keeps (a cache, a leak) lives.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10);

    pub fn reuse() -> Self {
        Self::Reuse { max_requests: Self::DEFAULT_MAX_REQUESTS, max_age: Self::DEFAULT_MAX_AGE }
    }

    /// `fresh`, or `reuse` with its budget, for logs and `/metrics`.
    pub fn describe(&self) -> String {
        match self {
            Self::Fresh => "fresh".into(),
            Self::Reuse { max_requests, max_age } => {
                format!("reuse (up to {max_requests} requests or {} ms per instance)", max_age.as_millis())
            }
        }
    }

    /// Whether an instance created at `born` that has served `served` requests has used up
    /// its budget.
    fn used_up(&self, served: u32, born: Instant, now: Instant) -> bool {
        match self {
            Self::Fresh => true,
            Self::Reuse { max_requests, max_age } => served >= *max_requests || now.duration_since(born) >= *max_age,
        }
    }
}

impl Default for Isolation {
    fn default() -> Self {
        Self::reuse()
    }
}

/// A store and, once a request has instantiated it, the component's instance in it: what one
/// request runs on, and what a warm pool keeps between requests.
pub struct ServiceInstance {
    pub store: Store<HostState>,
    pub proxy: Option<Proxy>,
    /// Requests it has started, the current one included.
    served: u32,
    born: Instant,
}

impl ServiceInstance {
    /// A store for a request that has no warm instance: the request instantiates in it.
    pub fn fresh(store: Store<HostState>) -> Self {
        Self { store, proxy: None, served: 1, born: Instant::now() }
    }
}

/// How many instances may wait warm across the process (`--max-warm-instances`), the room
/// the pooling allocator keeps for them. Each warm instance holds one [`IdleToken`].
pub struct WarmBudget {
    idle: AtomicUsize,
    max: usize,
    metrics: Arc<Metrics>,
}

impl WarmBudget {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { idle: AtomicUsize::new(0), max, metrics })
    }

    /// A place for one more warm instance holding `memory_bytes` of linear memory, if the
    /// budget has one.
    fn reserve(self: &Arc<Self>, memory_bytes: usize) -> Option<IdleToken> {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| (idle < self.max).then_some(idle + 1))
            .ok()?;
        let memory_bytes = i64::try_from(memory_bytes).unwrap_or(i64::MAX);
        self.metrics.warm_instances.inc();
        self.metrics.warm_memory.inc_by(memory_bytes);
        Some(IdleToken { budget: self.clone(), memory_bytes })
    }
}

/// One warm instance's share of the [`WarmBudget`], given back when it leaves its pool.
struct IdleToken {
    budget: Arc<WarmBudget>,
    memory_bytes: i64,
}

impl Drop for IdleToken {
    fn drop(&mut self) {
        self.budget.idle.fetch_sub(1, Ordering::AcqRel);
        self.budget.metrics.warm_instances.dec();
        self.budget.metrics.warm_memory.dec_by(self.memory_bytes);
    }
}

/// The warm instances of one component version, the most recently used last.
#[derive(Default)]
pub struct WarmPool {
    idle: Mutex<Vec<(ServiceInstance, IdleToken)>>,
    /// Set while the version does not serve: nothing is kept for it.
    retired: AtomicBool,
}

impl WarmPool {
    /// The most recently used instance that still has budget left, counted as serving one more
    /// request. Instances found used up on the way are dropped.
    pub fn take(&self, isolation: &Isolation) -> Option<ServiceInstance> {
        let now = Instant::now();
        let mut used_up = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                match idle.pop() {
                    Some((instance, token)) if isolation.used_up(instance.served, instance.born, now) => {
                        used_up.push((instance, token))
                    }
                    Some((mut instance, _token)) => {
                        instance.served += 1;
                        break Some(instance);
                    }
                    None => break None,
                }
            }
        };
        // Dropping a store resets its pooling slot: outside the lock.
        drop(used_up);
        found
    }

    /// Keeps `instance` for a later request, or says why it is dropped instead.
    pub fn put(
        &self,
        instance: ServiceInstance,
        isolation: &Isolation,
        budget: &Arc<WarmBudget>,
    ) -> Result<(), &'static str> {
        if self.retired.load(Ordering::Acquire) {
            return Err("retired");
        }
        if isolation.used_up(instance.served, instance.born, Instant::now()) {
            return Err("used-up");
        }
        if instance.proxy.is_none() {
            return Err("failed");
        }
        if let Some(reason) = instance.store.data().unfit_for_reuse() {
            return Err(reason);
        }
        let token = budget.reserve(instance.store.data().memory_bytes()).ok_or("full")?;
        let mut idle = self.lock();
        // Retiring takes the lock too: checked again under it, nothing slips in after the drain.
        if self.retired.load(Ordering::Acquire) {
            return Err("retired");
        }
        idle.push((instance, token));
        Ok(())
    }

    /// The version stopped serving: its warm instances are dropped and none is kept until it
    /// serves again. Requests still running on it finish on their instances.
    pub fn retire(&self) {
        let drained = {
            let mut idle = self.lock();
            self.retired.store(true, Ordering::Release);
            std::mem::take(&mut *idle)
        };
        drop_off_the_caller(drained);
    }

    /// The version serves (again).
    pub fn revive(&self) {
        self.retired.store(false, Ordering::Release);
    }

    /// Drops the instances whose budget has run out while they waited; returns how many.
    pub fn drop_used_up(&self, isolation: &Isolation) -> usize {
        let now = Instant::now();
        let expired: Vec<_> = {
            let mut idle = self.lock();
            let (expired, kept) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|(instance, _)| isolation.used_up(instance.served, instance.born, now));
            *idle = kept;
            expired
        };
        let count = expired.len();
        drop(expired);
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ServiceInstance, IdleToken)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropping many stores takes a while; a caller holding a lock (a version switch) hands them to
/// a task of their own.
fn drop_off_the_caller<T: Send + 'static>(value: Vec<T>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if !value.is_empty() => {
            runtime.spawn(async move { drop(value) });
        }
        _ => drop(value),
    }
}

/// Counts instances dropped instead of being kept for another request.
pub fn count_discards(metrics: &Metrics, reason: &'static str, count: usize) {
    if count > 0 {
        metrics.discarded_instances.get_or_create(&DiscardLabels { reason }).inc_by(count as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_isolation_never_keeps_an_instance() {
        let now = Instant::now();
        assert!(Isolation::Fresh.used_up(1, now, now));
    }

    #[test]
    fn reuse_ends_at_the_request_budget_or_the_age_budget() {
        let isolation = Isolation::Reuse { max_requests: 3, max_age: Duration::from_secs(10) };
        let born = Instant::now();
        assert!(!isolation.used_up(2, born, born));
        assert!(isolation.used_up(3, born, born));
        assert!(!isolation.used_up(1, born, born + Duration::from_secs(9)));
        assert!(isolation.used_up(1, born, born + Duration::from_secs(10)));
    }

    #[test]
    fn the_budget_bounds_idle_instances_across_the_process_and_is_given_back() {
        let metrics = Arc::new(Metrics::default());
        let budget = WarmBudget::new(2, metrics.clone());
        let first = budget.reserve(1 << 20).expect("room for one");
        let second = budget.reserve(3 << 20).expect("room for two");
        assert!(budget.reserve(1).is_none(), "a third is over the budget");
        assert_eq!(metrics.warm_instances.get(), 2);
        assert_eq!(metrics.warm_memory.get(), 4 << 20);
        drop(first);
        assert!(budget.reserve(0).is_some(), "a token given back makes room");
        drop(second);
        assert_eq!(metrics.warm_instances.get(), 0);
        assert_eq!(metrics.warm_memory.get(), 0);
    }
}
