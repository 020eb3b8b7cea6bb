//! The REST side of notify, and the one place its failures become HTTP.

use serde_json::json;
use service_kit::error::ApiError;
use service_kit::http::{Method, Request, Response};
use service_kit::page::Page;
use service_kit::platform::verify_bearer;
use service_kit::problem::FieldError;
use service_kit::query::read_params;
use service_kit::token::Role;

use crate::domain::Notification;
use crate::store;

/// What a token that may not read someone's notifications is told.
const FORBIDDEN: &str = "this token may not read these notifications";

pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(|error| error.into_response("notify"))
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
    let claims = verify_bearer(request)?;
    let (mut user_id, mut page) = (None, Page::default());
    read_params(&request.query, |key, value, errors| {
        if key == "user_id" {
            user_id = Some(value);
        } else if !page.accept(key, &value, errors) {
            errors.push(FieldError::new(key, "is not a known query parameter"));
        }
    })
    .map_err(ApiError::InvalidFields)?;
    let user_id = match (claims.role, user_id) {
        (Role::Admin, requested) => requested,
        (Role::User, None) => Some(claims.sub.clone()),
        (Role::User, Some(requested)) if requested == claims.sub => Some(requested),
        (Role::User, Some(_)) => return Err(ApiError::Forbidden(FORBIDDEN)),
    };
    let found = store::list(user_id.as_deref(), page)?;
    Ok(Response::json(200, &page.body(found.iter().map(Notification::to_json).collect())))
}
