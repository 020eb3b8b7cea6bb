//! The one place where the users service turns failures into HTTP responses: clients get an
//! RFC 9457 problem+json body, internal detail goes to the log only.

use service_kit::http::Response;
use service_kit::problem::{FieldError, invalid_fields, problem, problem_with};

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON.
    MalformedBody(String),
    /// The body is not of a JSON media type.
    UnsupportedMediaType,
    /// Fields or query parameters that are missing or invalid.
    InvalidFields(Vec<FieldError>),
    /// No valid bearer token.
    Unauthorized,
    /// A valid token that does not allow this.
    Forbidden,
    /// Wrong email or password on the credentials check.
    BadCredentials,
    NotFound,
    MethodNotAllowed(&'static str),
    DuplicateEmail,
    /// The database is unreachable; worth retrying.
    Unavailable(String),
    /// A bug or a broken configuration; the detail is logged, not returned.
    Internal(String),
}

impl ApiError {
    pub fn into_response(self) -> Response {
        match self {
            Self::MalformedBody(detail) => problem(400, "malformed-body", "Malformed request body", &detail),
            Self::UnsupportedMediaType => {
                problem(415, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
            }
            Self::InvalidFields(errors) => invalid_fields(&errors),
            Self::Unauthorized => problem(401, "unauthorized", "Unauthorized", "a valid bearer token is required")
                .header("www-authenticate", "Bearer"),
            Self::Forbidden => problem(403, "forbidden", "Forbidden", "this token may not act on this user"),
            Self::BadCredentials => problem(401, "bad-credentials", "Unauthorized", "wrong email or password"),
            Self::NotFound => problem(404, "not-found", "Not found", "no such resource"),
            Self::MethodNotAllowed(allow) => {
                problem(405, "method-not-allowed", "Method not allowed", &format!("allowed: {allow}"))
                    .header("allow", allow)
            }
            Self::DuplicateEmail => problem_with(
                409,
                "duplicate-email",
                "Email already registered",
                "a user with this email already exists",
                Some(("errors", serde_json::json!([FieldError::new("email", "is already registered")]))),
            ),
            Self::Unavailable(cause) => {
                eprintln!("users: database unavailable: {cause}");
                problem(503, "unavailable", "Service unavailable", "the database is unavailable, retry later")
                    .header("retry-after", "1")
            }
            Self::Internal(cause) => {
                eprintln!("users: internal error: {cause}");
                problem(500, "internal", "Internal error", "the request could not be completed")
            }
        }
    }
}
