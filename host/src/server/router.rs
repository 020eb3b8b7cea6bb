//! Routing: the host's own routes first, then services by path prefix.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::client_address::client_address;
use super::{Health, full_body, into_response, problem};
use super::{Listener, WatchedBody};
use crate::capability::request::RequestOrigin;
use crate::metrics::{Metrics, RequestLabels, RouteLabels, method_label};
use crate::service::{ReleasePhase, Service};

const REQUEST_ID_HEADER: &str = "x-request-id";
/// Largest header section (names, values and their separators) the router passes to a service;
/// smaller than hyper's read buffer ([`super::MAX_READ_BUFFER_BYTES`]), so a section between the
/// two gets the host's problem+json 431.
pub const MAX_HEADER_SECTION_BYTES: usize = 32 * 1024;
/// The OpenAPI document of every public route, served at `/openapi.yaml`.
const OPENAPI_YAML: &str = include_str!("../../../openapi/skiff.yaml");

/// Everything one listener serves.
pub struct App {
    /// Mounted services and the path prefixes they own; with one service, it gets every path.
    services: Vec<(Vec<String>, Arc<Service>)>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// Proxies whose `X-Forwarded-For` says who the client is.
    trusted_proxies: Vec<IpNet>,
}

impl App {
    pub fn new(
        services: Vec<Arc<Service>>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        let services = services
            .into_iter()
            .map(|service| {
                let name = service.name().to_owned();
                // `/users-ms/...` is the contract; `/users/...` the original's alias.
                (vec![format!("/{name}-ms"), format!("/{name}")], service)
            })
            .collect();
        Self { services, health, metrics, trusted_proxies }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.iter().map(|(_, service)| service)
    }

    /// Serves one request from `peer`, arrived on `listener`.
    pub async fn handle(
        &self,
        mut request: Request<WatchedBody>,
        peer: SocketAddr,
        listener: Listener,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        // hyper bounds its read buffer, not the header section: refuse large ones here.
        let header_bytes: usize =
            request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if header_bytes > MAX_HEADER_SECTION_BYTES {
            return problem::problem(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                &format!("the request headers must be at most {MAX_HEADER_SECTION_BYTES} bytes"),
            );
        }
        let request_id = request_id(&request);
        let headers = request.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        // Where the request came from, for the component (`skiff:request`): decided here from
        // the listener and the peer, in an extension no client can set. Nothing from the wire
        // can claim the admin API's origin.
        let client = client_address(peer.ip(), headers, &self.trusted_proxies);
        let internal = listener == Listener::Internal;
        RequestOrigin { internal, admin: false, client_address: Some(client) }.attach(&mut request);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!("request", id = %request_id, %method, %path, %peer, %client);
        let (route, mut response) = self.route(request, listener).instrument(span.clone()).await;
        let status = response.status().as_u16();
        span.in_scope(|| tracing::info!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "served"));
        self.metrics
            .requests
            .get_or_create(&RequestLabels { route: route.clone(), method: method_label(method.as_str()), status })
            .inc();
        self.metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }

    /// The host's routes, then the services. What a probe needs (`/livez`, `/readyz`,
    /// `/startupz`: a status) answers on every listener; what tells about the host (`/metrics`:
    /// request counts per route and status, so login volume; readiness's detail: which service
    /// waits for what, the release) only on the operations listener, which serves no service.
    async fn route(&self, request: Request<WatchedBody>, listener: Listener) -> (String, Response<HyperOutgoingBody>) {
        let host = |response| ("host".to_owned(), response);
        let is_get = request.method() == Method::GET || request.method() == Method::HEAD;
        let ops = listener == Listener::Ops;
        if !ops && request.uri().path() == "/metrics" {
            // Not on the app port, and never handed to a service that takes every path.
            return host(problem::not_found());
        }
        match request.uri().path() {
            "/livez" if is_get => return host(text(StatusCode::OK, "ok")),
            "/readyz" if is_get => {
                let (status, detail) = self.readiness().await;
                let body = if ops { detail } else { bare_readiness(status).to_owned() };
                return host(text(status, &body));
            }
            "/startupz" if is_get => {
                let started = self.health.is_started();
                return host(text(
                    if started { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
                    if started { "started" } else { "starting" },
                ));
            }
            "/metrics" if is_get => {
                let mut response = text(StatusCode::OK, &self.metrics.encode());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                return host(response);
            }
            "/openapi.yaml" if is_get => {
                let mut response = text(StatusCode::OK, OPENAPI_YAML);
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
                return host(response);
            }
            "/livez" | "/readyz" | "/startupz" | "/metrics" | "/openapi.yaml" => {
                return host(problem::method_not_allowed("GET, HEAD"));
            }
            _ if ops => return host(problem::not_found()),
            _ => {}
        }
        if self.health.is_draining() {
            return host(problem::draining());
        }
        match self.service_for(request.uri().path()) {
            Some(service) => (service.name().to_owned(), into_response(service.handle(request).await)),
            None => host(problem::not_found()),
        }
    }

    fn service_for(&self, path: &str) -> Option<&Arc<Service>> {
        if let [(_, only)] = self.services.as_slice() {
            return Some(only);
        }
        self.services.iter().find_map(|(prefixes, service)| {
            prefixes
                .iter()
                .any(|prefix| {
                    path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
                .then_some(service)
        })
    }

    /// The readiness status, and what the operations listener says with it.
    async fn readiness(&self) -> (StatusCode, String) {
        if self.health.is_draining() {
            return (StatusCode::SERVICE_UNAVAILABLE, "draining".into());
        }
        let mut not_ready = Vec::new();
        for service in self.services() {
            if let Err(why) = service.readiness().await {
                tracing::debug!(service = %service.name(), %why, "not ready");
                not_ready.push(service.name().to_owned());
            }
        }
        if not_ready.is_empty() {
            // Ready, but a release a service refused (or is still pulling, or fell back from)
            // is said here too: the pod serves the version it runs.
            let notes: Vec<String> = self
                .services()
                .filter_map(|service| {
                    let release = service.release_status()?;
                    (release.phase != ReleasePhase::Applied || release.fallback)
                        .then(|| format!("{}: {}", service.name(), release.describe()))
                })
                .collect();
            let body = if notes.is_empty() { "ready".to_owned() } else { format!("ready\n{}", notes.join("\n")) };
            (StatusCode::OK, body)
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", not_ready.join(", ")))
        }
    }
}

/// Readiness as the app port says it: the status, no detail.
fn bare_readiness(status: StatusCode) -> &'static str {
    if status.is_success() { "ready" } else { "not ready" }
}

fn text(status: StatusCode, body: &str) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(full_body(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The caller's request id if it is a sane token, else a new one.
fn request_id<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}
