//! The REST side of notify, and the one place its failures become HTTP.

use serde_json::json;
use service_kit::http::{Method, Request, Response};
use service_kit::problem::{FieldError, invalid_fields, problem};
use service_kit::query;
use service_kit::token::{BearerError, Role};

use crate::domain::Notification;
use crate::platform::verify_bearer;
use crate::store::{self, StoreError};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

enum ApiError {
    InvalidFields(Vec<FieldError>),
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed(&'static str),
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidFields(errors) => invalid_fields(&errors),
            Self::Unauthorized => problem(401, "unauthorized", "Unauthorized", "a valid bearer token is required")
                .header("www-authenticate", "Bearer"),
            Self::Forbidden => problem(403, "forbidden", "Forbidden", "this token may not read these notifications"),
            Self::NotFound => problem(404, "not-found", "Not found", "no such resource"),
            Self::MethodNotAllowed(allow) => {
                problem(405, "method-not-allowed", "Method not allowed", &format!("allowed: {allow}"))
                    .header("allow", allow)
            }
            Self::Unavailable(cause) => {
                eprintln!("notify: database unavailable: {cause}");
                problem(503, "unavailable", "Service unavailable", "the database is unavailable, retry later")
                    .header("retry-after", "1")
            }
            Self::Internal(cause) => {
                eprintln!("notify: internal error: {cause}");
                problem(500, "internal", "Internal error", "the request could not be completed")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    let path = request.path.strip_prefix("/notify-ms").unwrap_or(&request.path);
    match (request.method, path.trim_matches('/')) {
        (Method::Get, "healthcheck") => Ok(Response::json(200, &json!({"status": "ok"}))),
        (_, "healthcheck") => Err(ApiError::MethodNotAllowed("GET")),
        (Method::Get, "notifications") => list(request),
        (_, "notifications") => Err(ApiError::MethodNotAllowed("GET")),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /notify-ms/notifications?user_id=&limit=&offset=`: a user reads their own, an admin
/// anyone's (or all, without `user_id`).
fn list(request: &Request) -> Result<Response, ApiError> {
    let claims = verify_bearer(request).map_err(|error| match error {
        BearerError::Unauthorized => ApiError::Unauthorized,
        BearerError::NotConfigured(cause) => ApiError::Internal(cause),
    })?;
    let (mut user_id, mut limit, mut offset, mut errors) = (None, DEFAULT_LIMIT, 0u64, Vec::new());
    for (key, value) in query::pairs(&request.query) {
        let Some(value) = value else {
            errors.push(FieldError::new(&key, "is not valid percent-encoded UTF-8"));
            continue;
        };
        match key.as_str() {
            "user_id" => user_id = Some(value),
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
            },
            "offset" => match value.parse::<u64>() {
                Ok(n) if n <= i64::MAX as u64 => offset = n,
                _ => errors.push(FieldError::new("offset", "must be a non-negative integer")),
            },
            other => errors.push(FieldError::new(other, "is not a known query parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let user_id = match (claims.role, user_id) {
        (Role::Admin, requested) => requested,
        (Role::User, None) => Some(claims.sub.clone()),
        (Role::User, Some(requested)) if requested == claims.sub => Some(requested),
        (Role::User, Some(_)) => return Err(ApiError::Forbidden),
    };
    let found = store::list(user_id.as_deref(), limit, offset)?;
    let next_offset = (found.len() == limit as usize).then(|| offset + u64::from(limit));
    let items: Vec<_> = found.iter().map(Notification::to_json).collect();
    Ok(Response::json(200, &json!({"items": items, "limit": limit, "offset": offset, "next_offset": next_offset})))
}
