//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The service that handled the request, or `host` for the host's own routes.
    pub route: String,
    /// See [`method_label`].
    pub method: &'static str,
    pub status: u16,
}

/// A request method as a label: the standard methods by name, anything else `OTHER`. A client
/// may send any token as a method, and each label value is a series kept for the life of the
/// process.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.into_iter().find(|standard| *standard == method).unwrap_or("OTHER")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwapLabels {
    pub route: String,
    /// `switched`, `canary`, `promoted`, or why the candidate was refused.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    pub route: String,
    /// `command` or `canary-errors`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub route: String,
    /// The version's label.
    pub version: String,
    /// `ok` or `error` (5xx, traps, deadlines).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    /// Why an instance was dropped instead of serving another request: `failed` (a trap or a
    /// deadline), `leaked-resources`, `memory-limit`, `used-up` (its request or age budget),
    /// `retired` (its version stopped serving) or `full` (the warm budget is spent).
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub live_instances: Gauge,
    pub shed_requests: Counter,
    pub traps: Counter,
    /// Instances created (one per request in fresh isolation, one per many in reuse).
    pub instantiations: Counter,
    /// Instances idle between requests, ready for the next one (reuse isolation).
    pub warm_instances: Gauge,
    /// Linear memory the warm instances hold, in bytes.
    pub warm_memory: Gauge,
    pub discarded_instances: Family<DiscardLabels, Counter>,
    pub outbox_depth: Family<RouteLabels, Gauge>,
    pub outbox_oldest_age: Family<RouteLabels, Gauge>,
    pub messages: Family<MessageLabels, Counter>,
    pub swaps: Family<SwapLabels, Counter>,
    pub rollbacks: Family<RollbackLabels, Counter>,
    pub version_requests: Family<VersionLabels, Counter>,
    /// 1 while a service runs what its release file asks for.
    pub release_converged: Family<RouteLabels, Gauge>,
    /// 1 while a service serves the image's component because its release failed at start.
    pub release_fallback: Family<RouteLabels, Gauge>,
    /// Releases refused, by reason (`result`).
    pub release_refusals: Family<SwapLabels, Counter>,
    /// Bearer tokens answered from the verified-token cache, without a signature check.
    pub token_cache_hits: Counter,
    /// Bearer tokens the cache did not hold (or held too long), verified in full.
    pub token_cache_misses: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub route: String,
    /// `ack`, `retry`, `reject` or `failed` (trap or deadline).
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("skiff");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let live_instances = Gauge::default();
        let shed_requests = Counter::default();
        let traps = Counter::default();
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        registry.register("http_request_duration_seconds", "Time to response headers, by route", latency.clone());
        registry.register("live_instances", "Component instances running now", live_instances.clone());
        registry.register(
            "shed_requests",
            "Requests refused with 503 because every instance slot was busy",
            shed_requests.clone(),
        );
        registry.register("component_traps", "Requests whose component instance trapped", traps.clone());
        let instantiations = Counter::default();
        registry.register("instantiations", "Component instances created for requests", instantiations.clone());
        let warm_instances = Gauge::default();
        registry.register(
            "warm_instances",
            "Component instances idle between requests, kept for the next one",
            warm_instances.clone(),
        );
        let warm_memory = Gauge::default();
        registry.register(
            "warm_instance_memory_bytes",
            "Linear memory held by the instances idle between requests",
            warm_memory.clone(),
        );
        let discarded_instances = Family::<DiscardLabels, Counter>::default();
        registry.register(
            "discarded_instances",
            "Instances dropped after a request instead of being kept warm, by reason",
            discarded_instances.clone(),
        );
        let outbox_depth = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Messages waiting in a service's outbox for the broker",
            outbox_depth.clone(),
        );
        let outbox_oldest_age = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "How long the oldest message in a service's outbox has waited for the broker, in seconds (0 when empty)",
            outbox_oldest_age.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "messages_handled",
            "Deliveries handled by a consumer component, by outcome",
            messages.clone(),
        );
        let swaps = Family::<SwapLabels, Counter>::default();
        registry.register("swaps", "Component rollouts, by result", swaps.clone());
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        registry.register("rollbacks", "Rollbacks to an earlier version, by reason", rollbacks.clone());
        let version_requests = Family::<VersionLabels, Counter>::default();
        registry.register(
            "version_requests",
            "Requests served by a service's components, by version label and result",
            version_requests.clone(),
        );
        let release_converged = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "release_converged",
            "1 while the service runs what its release file asks for",
            release_converged.clone(),
        );
        let release_fallback = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "release_fallback",
            "1 while the service serves the image's component because its release failed at start",
            release_fallback.clone(),
        );
        let release_refusals = Family::<SwapLabels, Counter>::default();
        registry.register("release_refusals", "Releases refused, by reason", release_refusals.clone());
        let token_cache_hits = Counter::default();
        registry.register(
            "token_cache_hits",
            "Bearer tokens answered from the verified-token cache, without a signature check",
            token_cache_hits.clone(),
        );
        let token_cache_misses = Counter::default();
        registry.register(
            "token_cache_misses",
            "Bearer tokens not in the verified-token cache, verified in full",
            token_cache_misses.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            live_instances,
            shed_requests,
            traps,
            instantiations,
            warm_instances,
            warm_memory,
            discarded_instances,
            outbox_depth,
            outbox_oldest_age,
            messages,
            swaps,
            rollbacks,
            version_requests,
            release_converged,
            release_fallback,
            release_refusals,
            token_cache_hits,
            token_cache_misses,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
