//! The request path: serving one request on an instance (fresh, or warm from its version's
//! pool; see [`super::warm`]), within the process-wide instance bound and the request's deadline.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::service_core::ServiceCore;
use super::slot::Slot;
use super::warm::{Isolation, ServiceInstance, WarmBudget, count_discards};
use super::{ComponentVersion, Handled, Outcome};
use crate::capability::request::RequestOrigin;
use crate::capability::{CallerGone, CapabilityStore};
use crate::metrics::Metrics;
use crate::runtime::DeadlineExceeded;

/// Per-request limits.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// From the moment a request is admitted to its last response byte.
    pub timeout: Duration,
    /// How long a request may wait for an instance slot before it is shed with 503.
    pub queue_timeout: Duration,
    /// Largest request body passed to a component; more is refused with 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send its whole body (408 past it). The body is read
    /// before the request takes an instance slot, so a client that never sends it holds a
    /// connection, never a slot.
    pub body_timeout: Duration,
}

impl RequestLimits {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            queue_timeout: Self::DEFAULT_QUEUE_TIMEOUT,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// Requests into instances of the service's versions.
pub struct RequestPath {
    pub(super) core: Arc<ServiceCore>,
    pub(super) slot: Arc<Slot>,
}

impl RequestPath {
    /// Serves one request on an instance of the current version. The body may come from
    /// a socket or, for calls between services of one process, from another component.
    pub async fn handle<B>(&self, request: Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = &self.core.ctx.limits;
        let declared =
            request.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limits.max_body_bytes as u64) {
            return Handled { outcome: Outcome::BodyTooLarge { limit: limits.max_body_bytes }, version: None };
        }
        let request = match self.read_body(request).await {
            Ok(request) => request,
            Err(outcome) => return Handled { outcome, version: None },
        };
        let Some(permit) = self.instance_permit(&request).await else {
            self.core.ctx.metrics.shed_requests.inc();
            return Handled { outcome: Outcome::Overloaded, version: None };
        };
        let picked = self.slot.pick();
        let outcome = self.run(picked.version(), permit, request).await;
        self.record(&picked, &outcome);
        Handled { outcome, version: Some(picked.version().clone()) }
    }

    /// Reads the whole body (up to the limit, within the body timeout) before the request may
    /// take an instance slot: a client that announces a body and sends it slowly, or never,
    /// holds only its own connection.
    async fn read_body<B>(&self, request: Request<B>) -> Result<Request<Full<Bytes>>, Outcome>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = &self.core.ctx.limits;
        let (parts, body) = request.into_parts();
        let read = tokio::time::timeout(limits.body_timeout, Limited::new(body, limits.max_body_bytes).collect());
        match read.await {
            Ok(Ok(collected)) => Ok(Request::from_parts(parts, Full::new(collected.to_bytes()))),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                Err(Outcome::BodyTooLarge { limit: limits.max_body_bytes })
            }
            Ok(Err(error)) => Err(Outcome::Malformed(format!("the request body could not be read: {error}"))),
            Err(_) => Err(Outcome::BodyTimeout { limit: limits.body_timeout }),
        }
    }

    /// A slot for one instance, waiting at most the queue timeout. The service's own health
    /// route (what liveness probes ask) never waits behind busy slots: when every slot is
    /// taken it runs on one of a few kept for probes.
    async fn instance_permit<B>(&self, request: &Request<B>) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.core.ctx.instances.clone().try_acquire_owned() {
            return Some(permit);
        }
        // A health check takes a few milliseconds, so even behind a flood of them a probe gets
        // its turn on the kept instances within the queue timeout.
        let pool = if self.is_probe(request) { &self.core.ctx.probe_instances } else { &self.core.ctx.instances };
        match tokio::time::timeout(self.core.ctx.limits.queue_timeout, pool.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }

    /// `GET /NAME-ms/healthcheck` (or `/NAME/healthcheck`): the route Kubernetes probes.
    fn is_probe<B>(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        (request.method() == http::Method::GET || request.method() == http::Method::HEAD)
            && path
                .strip_suffix("/healthcheck")
                .and_then(|prefix| prefix.strip_prefix('/'))
                .is_some_and(|prefix| prefix.strip_suffix("-ms").unwrap_or(prefix) == self.core.name)
    }

    /// Sends the component's own health route to `version` (not yet serving): the gate a new
    /// version passes before it gets traffic.
    pub(super) async fn smoke_test(&self, version: &Arc<ComponentVersion>, timeout: Duration) -> Result<(), String> {
        let path = format!("/{}-ms/healthcheck", self.core.name);
        let request = Request::get(format!("http://localhost{path}"))
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request for {path}: {e}"))?;
        let run = async {
            let permit = self.core.ctx.instances.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(self.run(version, permit, request).await)
        };
        let outcome = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("GET {path} did not answer within {} ms", timeout.as_millis()))??;
        let status = outcome.status();
        if status.is_success() { Ok(()) } else { Err(format!("GET {path} answered {status}, expected 2xx")) }
    }

    /// Drops the warm instances whose budget ran out while they waited, so a service without
    /// traffic gives their memory back. Runs for the life of the process.
    pub async fn drop_used_up_instances(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for version in self.slot.serving() {
                let dropped = version.warm.drop_used_up(&self.core.ctx.isolation);
                count_discards(&self.core.ctx.metrics, "used-up", dropped);
            }
        }
    }

    /// Instantiates the active version on a fresh store, as a request would, and drops the
    /// instance uncalled. Returns how long the instantiation alone took: the benchmark's
    /// `instantiate_us` figure.
    pub async fn measure_instantiation(&self) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + self.core.ctx.limits.timeout;
        let mut store = self.core.ctx.runtime.store(self.core.new_state(), deadline);
        let pre = self.slot.active().proxy.clone();
        let started = Instant::now();
        pre.instantiate_async(&mut store).await?;
        Ok(started.elapsed())
    }

    /// Runs one request on `version` to its response headers.
    async fn run<B>(
        &self,
        version: &Arc<ComponentVersion>,
        permit: OwnedSemaphorePermit,
        request: Request<B>,
    ) -> Outcome
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = &self.core.ctx.limits;
        let deadline = Instant::now() + limits.timeout;
        // The component's own log records (wasi:logging) go under this span.
        let span = tracing::info_span!("component", service = %self.core.name, version = %version.label);
        let warm = match self.core.ctx.isolation {
            Isolation::Fresh => None,
            Isolation::Reuse { .. } => version.warm.take(&self.core.ctx.isolation),
        };
        let mut instance = match warm {
            Some(mut warm) => {
                let capabilities = span.in_scope(|| self.core.instance_states());
                warm.store.data_mut().next_request(capabilities, deadline);
                warm.store.set_epoch_deadline(1);
                warm
            }
            None => {
                ServiceInstance::fresh(self.core.ctx.runtime.store(span.in_scope(|| self.core.new_state()), deadline))
            }
        };
        instance.store.data_mut().set_request_origin(RequestOrigin::of(&request));
        let max_body = limits.max_body_bytes;
        let request = request.map(move |body| {
            Limited::new(body, max_body).map_err(move |error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body as u64))
                } else {
                    wasmtime_wasi_http::Error::HttpProtocolError
                }
            })
        });
        let (sender, receiver) = oneshot::channel();
        let prepared = instance
            .store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| Ok((req, instance.store.data_mut().http().new_response_outparam(sender)?)));
        let (incoming, outparam) = match prepared {
            Ok(pair) => pair,
            // wasi:http needs what the client must send (an authority), so what fails here is
            // the request, not the service.
            Err(error) => return Outcome::Malformed(format!("{error:#}")),
        };
        let pre = version.proxy.clone();
        let keeper =
            Keeper { version: version.clone(), isolation: self.core.ctx.isolation, budget: self.core.ctx.warm.clone() };
        let metrics = self.core.ctx.metrics.clone();
        let caller_gone = instance.store.data().caller_gone().clone();
        let mut driven = DrivenInstance::new(caller_gone, async move {
            let _permit = permit;
            metrics.live_instances.inc();
            // An instance leaves `proxy` empty unless its request ends cleanly: a trapped
            // instance cannot be entered again, and one stopped at its deadline may be anywhere
            // in its code. Either is dropped, never kept.
            let run = async {
                let proxy = match instance.proxy.take() {
                    Some(proxy) => proxy,
                    None => {
                        metrics.instantiations.inc();
                        pre.instantiate_async(&mut instance.store).await?
                    }
                };
                proxy.wasi_http_incoming_handler().call_handle(&mut instance.store, incoming, outparam).await?;
                instance.proxy = Some(proxy);
                wasmtime::Result::<()>::Ok(())
            };
            // Host calls (a database that hangs) are not interrupted by epochs; this is.
            let result = match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(result) => result,
                Err(_) => Err(DeadlineExceeded.into()),
            };
            // Kept (or dropped) before it leaves the gauge: once no instance is live, every one
            // that served is back in its pool.
            keeper.keep(instance, &metrics);
            metrics.live_instances.dec();
            result
        });
        let mut receiver = receiver;

        // The instance runs on this task until it has answered: most components write their
        // whole body within the call, and a task of its own would cost a hand-off between
        // threads on every request. One still streaming its body after answering continues on a
        // task of its own while the response goes out.
        let progress = tokio::select! {
            biased;
            finished = driven.running() => Progress::Finished(finished),
            answer = &mut receiver => Progress::Answered(answer),
        };
        let answer = match progress {
            Progress::Answered(answer) => {
                driven.continue_on_own_task();
                answer.map_err(|_| ())
            }
            Progress::Finished(Ok(())) => {
                driven.finished();
                receiver.try_recv().map_err(|_| ())
            }
            Progress::Finished(Err(error)) => {
                driven.finished();
                return self.failure(error);
            }
        };
        match answer {
            Ok(Ok(response)) => Outcome::Answered(response),
            Ok(Err(code)) => {
                tracing::warn!(?code, "the component answered with an error code");
                Outcome::ComponentFailed
            }
            Err(()) => {
                tracing::warn!("the component returned without a response");
                Outcome::ComponentFailed
            }
        }
    }

    /// What became of a request whose instance failed before answering.
    fn failure(&self, error: wasmtime::Error) -> Outcome {
        if error.downcast_ref::<DeadlineExceeded>().is_some() {
            return Outcome::DeadlineExceeded;
        }
        tracing::warn!(error = %format!("{error:?}"), "the component trapped");
        self.core.ctx.metrics.traps.inc();
        Outcome::ComponentFailed
    }
}

/// An instance the request's task drives until it answers. Whatever stops driving it before
/// it has finished (it answered and still streams its body; the client went away; a caller's
/// timeout dropped the request) hands it to a task of its own, so host calls in progress
/// complete and the instance leaves the live-instance gauge. Its own deadline still bounds it.
/// Stopping before it answered also cancels its [`CallerGone`]: nobody reads that answer, so
/// costly work it has not started yet is not started.
struct DrivenInstance<F: Future<Output = wasmtime::Result<()>> + Send + 'static> {
    instance: Option<Pin<Box<F>>>,
    /// Until the instance answers.
    caller_gone: Option<CallerGone>,
}

impl<F: Future<Output = wasmtime::Result<()>> + Send + 'static> DrivenInstance<F> {
    fn new(caller_gone: CallerGone, instance: F) -> Self {
        Self { instance: Some(Box::pin(instance)), caller_gone: Some(caller_gone) }
    }

    fn running(&mut self) -> Pin<&mut F> {
        self.instance.as_mut().expect("an instance is driven only until it finishes").as_mut()
    }

    /// The instance returned: nothing is left to drive.
    fn finished(&mut self) {
        self.instance = None;
        self.caller_gone = None;
    }

    /// The instance answered and may still write its body.
    fn continue_on_own_task(mut self) {
        self.caller_gone = None;
    }
}

impl<F: Future<Output = wasmtime::Result<()>> + Send + 'static> Drop for DrivenInstance<F> {
    fn drop(&mut self) {
        if let Some(caller_gone) = self.caller_gone.take() {
            caller_gone.cancel();
        }
        if let (Some(instance), Ok(runtime)) = (self.instance.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(instance);
        }
    }
}

/// How far an instance got when the request task stopped driving it.
enum Progress {
    /// The handler returned (or trapped, or ran out of time).
    Finished(wasmtime::Result<()>),
    /// The handler set its response and may still be writing the body.
    Answered(Result<Result<Response<HyperOutgoingBody>, ErrorCode>, oneshot::error::RecvError>),
}

/// Gives an instance that has served its request back to its version's warm pool, or drops it.
struct Keeper {
    version: Arc<ComponentVersion>,
    isolation: Isolation,
    budget: Arc<WarmBudget>,
}

impl Keeper {
    fn keep(self, instance: ServiceInstance, metrics: &Metrics) {
        if self.isolation == Isolation::Fresh {
            return;
        }
        if let Err(reason) = self.version.warm.put(instance, &self.isolation, &self.budget) {
            count_discards(metrics, reason, 1);
        }
    }
}
