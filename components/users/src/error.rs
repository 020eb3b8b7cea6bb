//! The one place where the users service turns failures into HTTP responses: clients get an
//! RFC 9457 problem+json body, internal detail goes to the log only.

use crate::domain::FieldError;
use crate::http::Response;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON (or not readable).
    MalformedBody(String),
    /// The body is JSON but not of this media type.
    UnsupportedMediaType,
    /// Fields or query parameters that are missing or invalid.
    InvalidFields(Vec<FieldError>),
    NotFound,
    MethodNotAllowed(&'static str),
    DuplicateEmail,
    PayloadTooLarge(usize),
    /// The database is unreachable; worth retrying.
    Unavailable(String),
    /// A bug or a broken configuration; the detail is logged, not returned.
    Internal(String),
}

impl ApiError {
    pub fn into_response(self) -> Response {
        let (status, kind, title, detail, extra) = match self {
            Self::MalformedBody(detail) => (
                400,
                "malformed-body",
                "Malformed request body",
                detail,
                None,
            ),
            Self::UnsupportedMediaType => (
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json".into(),
                None,
            ),
            Self::InvalidFields(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    422,
                    "invalid-fields",
                    "Invalid request fields",
                    detail,
                    Some(("errors", json!(errors))),
                )
            }
            Self::NotFound => (
                404,
                "not-found",
                "Not found",
                "no such resource".into(),
                None,
            ),
            Self::MethodNotAllowed(allow) => {
                let response = problem(
                    405,
                    "method-not-allowed",
                    "Method not allowed",
                    &format!("allowed: {allow}"),
                    None,
                );
                return response.header("allow", allow);
            }
            Self::DuplicateEmail => (
                409,
                "duplicate-email",
                "Email already registered",
                "a user with this email already exists".into(),
                Some((
                    "errors",
                    json!([FieldError::new("email", "is already registered")]),
                )),
            ),
            Self::PayloadTooLarge(limit) => (
                413,
                "payload-too-large",
                "Payload too large",
                format!("the request body must be at most {limit} bytes"),
                None,
            ),
            Self::Unavailable(cause) => {
                eprintln!("users: database unavailable: {cause}");
                let response = problem(
                    503,
                    "unavailable",
                    "Service unavailable",
                    "the database is unavailable, retry later",
                    None,
                );
                return response.header("retry-after", "1");
            }
            Self::Internal(cause) => {
                eprintln!("users: internal error: {cause}");
                (
                    500,
                    "internal",
                    "Internal error",
                    "the request could not be completed".into(),
                    None,
                )
            }
        };
        problem(status, kind, title, &detail, extra)
    }
}

fn problem(
    status: u16,
    kind: &str,
    title: &str,
    detail: &str,
    extra: Option<(&str, serde_json::Value)>,
) -> Response {
    let mut body = json!({
        "type": format!("urn:skiff:problem:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
    });
    if let (Some((key, value)), Some(object)) = (extra, body.as_object_mut()) {
        object.insert(key.into(), value);
    }
    Response::with_content_type(status, "application/problem+json", &body)
}
