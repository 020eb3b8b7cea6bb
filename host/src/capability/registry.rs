//! The list of capabilities a host composes, with each one's type erased so that the runtime
//! drives them all the same way: link, configure per service, state per instance, prepare,
//! readiness, background tasks.

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;
use wasmtime::component::Linker;

use super::{Capability, CapabilityStore, ServiceSetup};

type SharedState = Arc<dyn Any + Send + Sync>;

/// The capabilities of a host, in the order they are configured.
pub struct Capabilities<T> {
    list: Vec<Arc<dyn Erased<T>>>,
}

impl<T: CapabilityStore> Default for Capabilities<T> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

/// What the runtime knows of a service when its capabilities are configured.
#[derive(Debug, Clone)]
pub struct ServiceFacts {
    pub name: String,
    /// Where the service's own database lives (`postgres://…` or `sqlite://…`).
    pub database_url: String,
    /// The interfaces the component imports, e.g. `skiff:messaging/producer@0.3.0`.
    pub imports: Vec<String>,
    /// The interfaces it exports, e.g. `skiff:messaging/consumer@0.3.0`.
    pub exports: Vec<String>,
}

/// Every capability's state for one service, in composition order.
#[derive(Clone, Default)]
pub struct ServiceStates {
    states: Vec<(TypeId, SharedState)>,
}

impl ServiceStates {
    pub fn get<C: Capability>(&self) -> Option<Arc<C::Service>> {
        let (_, state) = self.states.iter().find(|(id, _)| *id == TypeId::of::<C>())?;
        state.clone().downcast::<C::Service>().ok()
    }
}

/// Every capability's state for one instance, kept in its store.
#[derive(Default)]
pub struct InstanceStates {
    states: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl InstanceStates {
    pub fn get_mut<C: Capability>(&mut self) -> Option<&mut C::Instance> {
        let (_, state) = self.states.iter_mut().find(|(id, _)| *id == TypeId::of::<C>())?;
        state.downcast_mut::<C::Instance>()
    }
}

impl<T: CapabilityStore> Capabilities<T> {
    /// Adds `capability` after the ones already composed.
    pub fn with<C: Capability>(mut self, capability: C) -> Self {
        self.list.push(Arc::new(Entry { capability, store: PhantomData }));
        self
    }

    pub fn add_to_linker(&self, linker: &mut Linker<T>) -> anyhow::Result<()> {
        self.list.iter().try_for_each(|entry| entry.link(linker))
    }

    /// Configures every capability for one service, each seeing the ones before it.
    pub async fn configure(&self, service: &ServiceFacts) -> anyhow::Result<ServiceStates> {
        let mut states = ServiceStates::default();
        for entry in &self.list {
            let setup = ServiceSetup { service, earlier: &states };
            let state = entry.configure(&setup).await?;
            states.states.push((entry.id(), state));
        }
        Ok(states)
    }

    /// The per-instance states for a new instance of the service.
    pub fn instances(&self, service: &ServiceStates) -> InstanceStates {
        let states = self.list.iter().zip(&service.states).map(|(entry, (id, state))| (*id, entry.instance(state)));
        InstanceStates { states: states.collect() }
    }

    pub async fn prepare(&self, service: &ServiceStates) -> anyhow::Result<()> {
        for (entry, (_, state)) in self.list.iter().zip(&service.states) {
            entry.prepare(state).await?;
        }
        Ok(())
    }

    /// `Err` names the first capability that is not ready and why.
    pub async fn ready(&self, service: &ServiceStates) -> Result<(), String> {
        for (entry, (_, state)) in self.list.iter().zip(&service.states) {
            entry.ready(state).await?;
        }
        Ok(())
    }

    pub fn background(&self, service: &ServiceStates, service_name: &str) -> Vec<BoxFuture<'static, ()>> {
        let tasks =
            self.list.iter().zip(&service.states).flat_map(|(entry, (_, state))| entry.background(state, service_name));
        tasks.collect()
    }
}

/// [`Capability`] without its associated types.
#[async_trait]
trait Erased<T>: Send + Sync {
    fn id(&self) -> TypeId;
    fn link(&self, linker: &mut Linker<T>) -> anyhow::Result<()>;
    async fn configure(&self, setup: &ServiceSetup<'_>) -> anyhow::Result<SharedState>;
    fn instance(&self, service: &SharedState) -> Box<dyn Any + Send>;
    async fn prepare(&self, service: &SharedState) -> anyhow::Result<()>;
    async fn ready(&self, service: &SharedState) -> Result<(), String>;
    fn background(&self, service: &SharedState, service_name: &str) -> Vec<BoxFuture<'static, ()>>;
}

struct Entry<C, T> {
    capability: C,
    store: PhantomData<fn(T)>,
}

impl<C: Capability, T> Entry<C, T> {
    /// States are only ever made by this entry's `configure`, so the type always matches.
    /// Borrowed, not cloned: `instance` runs on every request.
    fn state<'s>(&self, service: &'s SharedState) -> &'s C::Service {
        match (**service).downcast_ref::<C::Service>() {
            Some(state) => state,
            None => unreachable!("the {} capability was given another capability's state", self.capability.name()),
        }
    }
}

#[async_trait]
impl<C: Capability, T: CapabilityStore> Erased<T> for Entry<C, T> {
    fn id(&self) -> TypeId {
        TypeId::of::<C>()
    }

    fn link(&self, linker: &mut Linker<T>) -> anyhow::Result<()> {
        C::add_to_linker(linker).map_err(|e| e.context(format!("linking the {} capability", self.capability.name())))
    }

    async fn configure(&self, setup: &ServiceSetup<'_>) -> anyhow::Result<SharedState> {
        let state = self.capability.configure(setup).await;
        let state = state
            .map_err(|e| e.context(format!("setting up {} for {}", self.capability.name(), setup.service.name)))?;
        Ok(Arc::new(state))
    }

    fn instance(&self, service: &SharedState) -> Box<dyn Any + Send> {
        Box::new(self.capability.instance(self.state(service)))
    }

    async fn prepare(&self, service: &SharedState) -> anyhow::Result<()> {
        let prepared = self.capability.prepare(self.state(service)).await;
        prepared.map_err(|e| e.context(format!("preparing {}", self.capability.name())))
    }

    async fn ready(&self, service: &SharedState) -> Result<(), String> {
        let ready = self.capability.ready(self.state(service)).await;
        ready.map_err(|why| format!("{}: {why}", self.capability.name()))
    }

    fn background(&self, service: &SharedState, service_name: &str) -> Vec<BoxFuture<'static, ()>> {
        self.capability.background(self.state(service), service_name)
    }
}
