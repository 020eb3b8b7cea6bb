//! The hooks wasi:http calls for every outgoing request, and the policy they apply.

use http::uri::{Authority, Uri};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::local::{LocalService, LocalServices};
use super::send_tls::send_over_tls;
use super::timeouts::{DEFAULT_RESPONSE_TIMEOUT, with_defaults};
use crate::capability::request::RequestOrigin;
use crate::tls::ClientTls;

/// Where a service name leads: `host:port`, over TLS when the route said `https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceTarget {
    authority: String,
    tls: bool,
}

impl ServiceTarget {
    /// `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
    fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (authority, tls) = match (raw.strip_prefix("https://"), raw.strip_prefix("http://")) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, false),
            (None, None) => (raw, false),
        };
        let authority = authority.trim_end_matches('/');
        authority.parse::<Authority>().map_err(|e| format!("{authority:?} is not HOST:PORT: {e}"))?;
        Ok(Self { authority: authority.to_owned(), tls })
    }
}

/// Where components may send requests.
#[derive(Default)]
pub struct OutboundPolicy {
    /// Service name → where it is.
    services: HashMap<String, ServiceTarget>,
    /// Hosts (`host` or `host:port`) reachable as they are, e.g. a webhook receiver.
    allowed: Vec<String>,
    /// Services in this process, reached without a socket.
    local: Arc<LocalServices>,
    /// The CA the `https://` services' certificates must chain to.
    tls: Option<Arc<ClientTls>>,
}

/// A service route the policy cannot follow.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "the service route {name}=https://{authority} needs a CA bundle to check {name}'s certificate: set SKIFF_TLS_CA (--tls-ca)"
    )]
    MissingCa { name: String, authority: String },
    #[error("the service route for {name}: {detail}")]
    Invalid { name: String, detail: String },
}

impl OutboundPolicy {
    /// `services` are `NAME=TARGET` routes as [`parse_service_route`] reads them; `tls` is the
    /// CA every `https://` one is checked against (required if there is one).
    pub fn new(
        services: Vec<(String, String)>,
        allowed: Vec<String>,
        local: Arc<LocalServices>,
        tls: Option<Arc<ClientTls>>,
    ) -> Result<Self, RouteError> {
        let mut parsed = HashMap::new();
        for (name, raw) in services {
            let target =
                ServiceTarget::parse(&raw).map_err(|detail| RouteError::Invalid { name: name.clone(), detail })?;
            if target.tls && tls.is_none() {
                return Err(RouteError::MissingCa { name, authority: target.authority });
            }
            parsed.insert(name, target);
        }
        Ok(Self { services: parsed, allowed, local, tls })
    }

    fn route(&self, authority: &Authority) -> Route {
        let host = authority.host();
        if let Some(service) = self.local.get(host) {
            return Route::InProcess(service);
        }
        if let Some(target) = self.services.get(host) {
            return match (&self.tls, target.tls) {
                (Some(tls), true) => {
                    Route::Tls { service: host.to_owned(), authority: target.authority.clone(), tls: tls.clone() }
                }
                _ => Route::Remote(Some(target.authority.clone())),
            };
        }
        let allowed = self.allowed.iter().any(|entry| entry == host || entry == authority.as_str());
        if allowed { Route::Remote(None) } else { Route::Denied }
    }
}

enum Route {
    InProcess(Arc<dyn LocalService>),
    /// Over the network, to the rewritten authority if any.
    Remote(Option<String>),
    /// To a named service over TLS, its certificate checked against the configured CA.
    Tls {
        service: String,
        authority: String,
        tls: Arc<ClientTls>,
    },
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
                // Whatever origin the calling component's request had, this one is internal.
                RequestOrigin::FROM_ANOTHER_SERVICE.attach(&mut request);
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
                    match rewrite_authority(request.uri(), &target, None) {
                        Some(uri) => *request.uri_mut() = uri,
                        None => return Box::new(async { Err(Error::HttpRequestUriInvalid) }),
                    }
                }
                let options = with_defaults(options);
                Box::new(async move {
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as ResponseFuture))
                })
            }
            Route::Tls { service, authority, tls } => {
                // The component says `http://users/…`; the route decides it goes over TLS.
                match rewrite_authority(request.uri(), &authority, Some(http::uri::Scheme::HTTPS)) {
                    Some(uri) => *request.uri_mut() = uri,
                    None => return Box::new(async { Err(Error::HttpRequestUriInvalid) }),
                }
                Box::new(send_over_tls(request, with_defaults(options), tls, service))
            }
        }
    }
}

fn rewrite_authority(uri: &Uri, target: &str, scheme: Option<http::uri::Scheme>) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(target.parse().ok()?);
    if let Some(scheme) = scheme {
        parts.scheme = Some(scheme);
    }
    Uri::from_parts(parts).ok()
}

/// Parses a `NAME=HOST:PORT` service route; `NAME=https://HOST:PORT` calls it over TLS.
pub fn parse_service_route(raw: &str) -> Result<(String, String), String> {
    let (name, target) =
        raw.split_once('=').ok_or_else(|| format!("expected NAME=HOST:PORT or NAME=https://HOST:PORT, got {raw:?}"))?;
    let target = target.trim();
    ServiceTarget::parse(target)?;
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
            None,
        )
        .unwrap();
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
        let rewritten = rewrite_authority(&uri, "users-cluster-ip-service:4001", None).unwrap();
        assert_eq!(rewritten.to_string(), "http://users-cluster-ip-service:4001/users-ms/internal/credentials?x=1");
        let tls = rewrite_authority(&uri, "users-cluster-ip-service:4001", Some(http::uri::Scheme::HTTPS)).unwrap();
        assert_eq!(tls.to_string(), "https://users-cluster-ip-service:4001/users-ms/internal/credentials?x=1");
    }

    #[test]
    fn an_https_route_needs_a_ca() {
        let routes = vec![("users".to_owned(), "https://users-cluster-ip-service:4001".to_owned())];
        let refused = OutboundPolicy::new(routes, Vec::new(), Arc::default(), None).err().unwrap();
        assert!(refused.to_string().contains("SKIFF_TLS_CA"), "{refused}");
    }

    #[test]
    fn service_routes_parse() {
        assert_eq!(
            parse_service_route("users=users-cluster-ip-service:4001"),
            Ok(("users".into(), "users-cluster-ip-service:4001".into()))
        );
        assert_eq!(
            parse_service_route("users=https://users-cluster-ip-service:4001"),
            Ok(("users".into(), "https://users-cluster-ip-service:4001".into()))
        );
        assert_eq!(
            ServiceTarget::parse("https://users-cluster-ip-service:4001"),
            Ok(ServiceTarget { authority: "users-cluster-ip-service:4001".into(), tls: true })
        );
        assert_eq!(
            ServiceTarget::parse("users:4001"),
            Ok(ServiceTarget { authority: "users:4001".into(), tls: false })
        );
        assert!(parse_service_route("users").is_err());
        assert!(parse_service_route("users=https://").is_err());
    }
}
