//! The admin API's routes:
//!
//! - `GET  /admin/services`: the services and their active versions
//! - `GET  /admin/services/{name}/versions`: every loaded version with its state
//! - `POST /admin/services/{name}/versions?label=v2&canary=10`: roll out the uploaded component
//!   (`application/wasm`), or `application/json` `{"path", "label", "canary"}` naming a file in
//!   the components folder
//! - `POST /admin/services/{name}/rollback`, `POST /admin/services/{name}/promote`
//! - `POST /admin/services/{name}/canary` `{"percent": 25}`: change the canary's share
//! - `GET  /admin/services/{name}/release`: the release file's version against what runs

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::error::AdminError;
use super::{AdminSpec, MAX_COMPONENT_BYTES, auth};
use crate::capability::request::RequestOrigin;
use crate::server::{WatchedBody, full_body};
use crate::service::{Candidate, Service, VersionState};

/// The admin API over a host's services.
pub struct Admin {
    services: Vec<Arc<Service>>,
    token: String,
    components_dir: Option<PathBuf>,
}

/// `{"path": ...}` rollouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathRollout {
    path: PathBuf,
    label: Option<String>,
    canary: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryShare {
    percent: u8,
}

impl Admin {
    pub fn new(services: Vec<Arc<Service>>, spec: &AdminSpec) -> Self {
        Self { services, token: spec.token.clone(), components_dir: spec.components_dir.clone() }
    }

    pub async fn handle(&self, request: Request<WatchedBody>, peer: SocketAddr) -> Response<HyperOutgoingBody> {
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        match self.route(request).await {
            Ok(response) => {
                tracing::info!(%method, %path, %peer, status = response.status().as_u16(), "admin request");
                response
            }
            Err(error) => {
                tracing::warn!(%method, %path, %peer, error = %error, "admin request refused");
                error.into_response()
            }
        }
    }

    async fn route(&self, request: Request<WatchedBody>) -> Result<Response<HyperOutgoingBody>, AdminError> {
        if !auth::authorized(request.headers(), &self.token) {
            return Err(AdminError::Unauthorized);
        }
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        if let (&Method::GET, ["admin", "services"]) = (&method, segments.as_slice()) {
            let services: Vec<Value> = self
                .services
                .iter()
                .map(|s| json!({"name": s.name(), "active": s.current().label, "canary": s.versions().canary()}))
                .collect();
            return Ok(json_response(StatusCode::OK, &json!({ "services": services })));
        }
        let ["admin", "services", name, action] = segments.as_slice() else {
            return Err(AdminError::NotFound(format!("no admin route {method} {path}")));
        };
        let service = self
            .services
            .iter()
            .find(|s| s.name() == *name)
            .ok_or_else(|| AdminError::NotFound(format!("no service named {name}")))?;
        match (method, *action) {
            (Method::GET, "versions") => Ok(versions(service, StatusCode::OK, json!({}))),
            (Method::GET, "release") => Ok(versions(service, StatusCode::OK, release(service))),
            (Method::POST, "versions") => {
                let candidate = self.candidate(request).await?;
                let deployment = service.deploy(candidate).await?;
                Ok(versions(service, StatusCode::CREATED, json!({ "deployment": deployment })))
            }
            (Method::POST, "rollback") => {
                let rolled_back = service.versions().rollback().await?;
                let detail =
                    json!({"rolled_back": rolled_back.from, "active": rolled_back.to, "served": rolled_back.served});
                Ok(versions(service, StatusCode::OK, detail))
            }
            (Method::POST, "promote") => {
                let promoted = service.versions().promote().await?;
                Ok(versions(service, StatusCode::OK, json!({ "promoted": promoted })))
            }
            (Method::POST, "admins") => {
                let body = read_body(request.into_body(), 4096).await?;
                let grant: AdminGrant = serde_json::from_slice(&body)
                    .map_err(|e| AdminError::BadRequest(format!("expected {{\"user_id\": \"...\"}}: {e}")))?;
                let user = uuid::Uuid::parse_str(&grant.user_id)
                    .map_err(|_| AdminError::BadRequest("user_id must be a UUID".into()))?;
                Ok(grant_admin(service, user).await)
            }
            (Method::POST, "canary") => {
                let body = read_body(request.into_body(), 4096).await?;
                let share: CanaryShare = serde_json::from_slice(&body)
                    .map_err(|e| AdminError::BadRequest(format!("expected {{\"percent\": 1-99}}: {e}")))?;
                service.versions().set_canary_percent(canary_percent(share.percent)?)?;
                Ok(versions(service, StatusCode::OK, json!({})))
            }
            (method, _) => Err(AdminError::NotFound(format!("no admin route {method} {path}"))),
        }
    }

    /// The rollout asked for: uploaded bytes, or a file from the components folder.
    async fn candidate(&self, request: Request<WatchedBody>) -> Result<Candidate, AdminError> {
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let body = read_body(request.into_body(), MAX_COMPONENT_BYTES).await?;
        if content_type.starts_with("application/json") {
            let rollout: PathRollout = serde_json::from_slice(&body).map_err(|e| {
                AdminError::BadRequest(format!("expected {{\"path\": ..., \"label\": ..., \"canary\": ...}}: {e}"))
            })?;
            let bytes = self.read_component(&rollout.path).await?;
            return Ok(Candidate {
                label: rollout.label.map(check_label).transpose()?,
                canary_percent: rollout.canary.map(canary_percent).transpose()?,
                ..Candidate::upload(bytes)
            });
        }
        if !(content_type.starts_with("application/wasm") || content_type.starts_with("application/octet-stream")) {
            return Err(AdminError::BadRequest(
                "send the component as application/wasm, or application/json {\"path\": ...}".into(),
            ));
        }
        let mut candidate = Candidate::upload(body.to_vec());
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("label", label) => candidate.label = Some(check_label(label.to_owned())?),
                ("canary", percent) => {
                    let percent = percent.parse().map_err(|_| AdminError::BadRequest("canary must be 1-99".into()))?;
                    candidate.canary_percent = Some(canary_percent(percent)?);
                }
                (key, _) => return Err(AdminError::BadRequest(format!("unknown parameter {key}"))),
            }
        }
        Ok(candidate)
    }

    /// Reads `relative` from the components folder; nothing outside it.
    async fn read_component(&self, relative: &Path) -> Result<Vec<u8>, AdminError> {
        let Some(dir) = &self.components_dir else {
            return Err(AdminError::Forbidden(
                "loading from a path is off: set SKIFF_ADMIN_COMPONENTS_DIR, or upload the component".into(),
            ));
        };
        let outside =
            || AdminError::Forbidden(format!("{} is not a file in the components folder", relative.display()));
        let root = tokio::fs::canonicalize(dir).await.map_err(|_| outside())?;
        let file = tokio::fs::canonicalize(root.join(relative)).await.map_err(|_| outside())?;
        if !file.starts_with(&root) {
            return Err(outside());
        }
        tokio::fs::read(&file).await.map_err(|_| outside())
    }
}

async fn read_body(body: WatchedBody, limit: usize) -> Result<Bytes, AdminError> {
    Limited::new(body, limit).collect().await.map(|body| body.to_bytes()).map_err(|error| {
        if error.is::<http_body_util::LengthLimitError>() {
            AdminError::TooLarge(limit)
        } else {
            AdminError::BadRequest(format!("reading the body: {error}"))
        }
    })
}

/// `{"user_id": ...}`: whom to make an admin.
#[derive(Deserialize)]
struct AdminGrant {
    user_id: String,
}

/// Asks the service's component to give `user` the admin role: `PUT /NAME-ms/internal/admins/ID`
/// with the admin API's origin (`skiff:request`, which no client request can carry). The
/// component's answer (200 with the user, 404) is the admin API's.
async fn grant_admin(service: &Arc<Service>, user: uuid::Uuid) -> Response<HyperOutgoingBody> {
    let request = Request::put(format!("http://localhost/{}-ms/internal/admins/{user}", service.name()))
        .header(header::HOST, "localhost")
        .body(http_body_util::Empty::<Bytes>::new());
    match request {
        Ok(mut request) => {
            RequestOrigin::FROM_THE_ADMIN_API.attach(&mut request);
            crate::server::into_response(service.handle(request).await)
        }
        Err(error) => AdminError::BadRequest(format!("cannot build the grant: {error}")).into_response(),
    }
}

/// Labels go into a response header: short, visible ASCII, no separators.
fn check_label(label: String) -> Result<String, AdminError> {
    if !crate::service::valid_label(&label) {
        return Err(AdminError::BadRequest("a label is 1-64 characters of A-Z a-z 0-9 . - _ + :".into()));
    }
    Ok(label)
}

fn canary_percent(percent: u8) -> Result<u8, AdminError> {
    if (1..=99).contains(&percent) {
        Ok(percent)
    } else {
        Err(AdminError::BadRequest("a canary takes 1-99% of requests (100% is a plain swap)".into()))
    }
}

/// The service's versions, with `extra` fields merged in.
fn versions(service: &Service, status: StatusCode, extra: Value) -> Response<HyperOutgoingBody> {
    let mut body = json!({ "service": service.name(), "versions": service.versions().list() });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The release file's version against what runs: `converged` when the active version (and the
/// canary) are the ones the file names.
fn release(service: &Service) -> Value {
    let status = service.release_status();
    let versions = service.versions().list();
    let active = versions.iter().find(|v| v.state == VersionState::Active);
    let canary = versions.iter().find(|v| v.state == VersionState::Canary);
    let converged = status.as_ref().is_some_and(|status| {
        status.desired_digest.is_some()
            && active.map(|v| &v.digest) == status.desired_digest.as_ref()
            && canary.map(|v| &v.digest) == status.desired_canary_digest.as_ref()
    });
    json!({
        "release": status,
        "active": active.map(|v| json!({"label": v.label, "digest": v.digest})),
        "canary": canary.map(|v| json!({"label": v.label, "digest": v.digest, "percent": v.percent})),
        "converged": converged,
    })
}
