//! The hooks wasi:http calls for every outgoing request, and the policy they apply.

use http::uri::{Authority, Uri};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::local::{LocalService, LocalServices};
use super::{ADMIN_HEADER, INTERNAL_HEADER};

/// Timeouts used when the component does not set its own.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where components may send requests.
#[derive(Default)]
pub struct OutboundPolicy {
    /// Service name → `host:port`.
    services: HashMap<String, String>,
    /// Hosts (`host` or `host:port`) reachable as they are, e.g. a webhook receiver.
    allowed: Vec<String>,
    /// Services in this process, reached without a socket.
    local: Arc<LocalServices>,
}

impl OutboundPolicy {
    pub fn new(services: Vec<(String, String)>, allowed: Vec<String>, local: Arc<LocalServices>) -> Self {
        Self { services: services.into_iter().collect(), allowed, local }
    }

    fn route(&self, authority: &Authority) -> Route {
        let host = authority.host();
        if let Some(service) = self.local.get(host) {
            return Route::InProcess(service);
        }
        if let Some(target) = self.services.get(host) {
            return Route::Remote(Some(target.clone()));
        }
        let allowed = self.allowed.iter().any(|entry| entry == host || entry == authority.as_str());
        if allowed { Route::Remote(None) } else { Route::Denied }
    }
}

enum Route {
    InProcess(Arc<dyn LocalService>),
    /// Over the network, to the rewritten authority if any.
    Remote(Option<String>),
    Denied,
}

/// The per-store hooks that apply an [`OutboundPolicy`].
pub struct OutboundHttp(pub Arc<OutboundPolicy>);

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseFuture), Error>> + Send>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: ResponseFuture,
    ) -> SendFuture {
        let Some(authority) = request.uri().authority().cloned() else {
            return Box::new(async { Err(Error::HttpRequestUriInvalid) });
        };
        match self.0.route(&authority) {
            Route::Denied => {
                tracing::warn!(%authority, "outbound HTTP refused: not a known service nor on the allow-list");
                Box::new(async { Err(Error::HttpRequestDenied) })
            }
            Route::InProcess(service) => {
                request.headers_mut().insert(INTERNAL_HEADER, http::HeaderValue::from_static("1"));
                request.headers_mut().remove(ADMIN_HEADER);
                let timeout = options.as_ref().and_then(|o| o.first_byte_timeout).unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
                Box::new(async move {
                    let response = tokio::time::timeout(timeout, service.call(request))
                        .await
                        .map_err(|_| Error::ConnectionReadTimeout)?;
                    Ok((response, Box::new(async { Ok(()) }) as ResponseFuture))
                })
            }
            Route::Remote(rewrite) => {
                if let Some(target) = rewrite {
                    match rewrite_authority(request.uri(), &target) {
                        Some(uri) => *request.uri_mut() = uri,
                        None => return Box::new(async { Err(Error::HttpRequestUriInvalid) }),
                    }
                }
                let mut options = options.unwrap_or_default();
                options.connect_timeout.get_or_insert(DEFAULT_CONNECT_TIMEOUT);
                options.first_byte_timeout.get_or_insert(DEFAULT_RESPONSE_TIMEOUT);
                options.between_bytes_timeout.get_or_insert(DEFAULT_RESPONSE_TIMEOUT);
                Box::new(async move {
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as ResponseFuture))
                })
            }
        }
    }
}

fn rewrite_authority(uri: &Uri, target: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(target.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// Parses a `NAME=HOST:PORT` service route.
pub fn parse_service_route(raw: &str) -> Result<(String, String), String> {
    let (name, target) = raw.split_once('=').ok_or_else(|| format!("expected NAME=HOST:PORT, got {raw:?}"))?;
    let target = target.trim();
    target.parse::<Authority>().map_err(|e| format!("{target:?} is not HOST:PORT: {e}"))?;
    Ok((name.trim().to_owned(), target.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_service_name_then_allow_list() {
        let policy = OutboundPolicy::new(
            vec![("users".into(), "users-cluster-ip-service:4001".into())],
            vec!["hooks.example".into(), "127.0.0.1:9000".into()],
            Arc::default(),
        );
        let route = |a: &str| policy.route(&a.parse::<Authority>().unwrap());
        assert!(matches!(route("users"), Route::Remote(Some(t)) if t == "users-cluster-ip-service:4001"));
        assert!(matches!(route("hooks.example:8443"), Route::Remote(None)));
        assert!(matches!(route("127.0.0.1:9000"), Route::Remote(None)));
        assert!(matches!(route("127.0.0.1:9001"), Route::Denied));
        assert!(matches!(route("evil.example"), Route::Denied));
    }

    #[test]
    fn rewrites_only_the_authority() {
        let uri: Uri = "http://users/users-ms/internal/credentials?x=1".parse().unwrap();
        let rewritten = rewrite_authority(&uri, "users-cluster-ip-service:4001").unwrap();
        assert_eq!(rewritten.to_string(), "http://users-cluster-ip-service:4001/users-ms/internal/credentials?x=1");
    }

    #[test]
    fn service_routes_parse() {
        assert_eq!(
            parse_service_route("users=users-cluster-ip-service:4001"),
            Ok(("users".into(), "users-cluster-ip-service:4001".into()))
        );
        assert!(parse_service_route("users").is_err());
    }
}
