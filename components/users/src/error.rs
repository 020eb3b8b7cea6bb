//! The one place where the users service turns failures into HTTP responses: clients get an
//! RFC 9457 problem+json body, internal detail goes to the log only.

use service_kit::error::ApiError;
use service_kit::http::Response;
use service_kit::problem::{FieldError, problem, problem_with};
use service_kit::sql::StoreError;

#[derive(Debug)]
pub enum Error {
    /// The failures every service answers alike.
    Api(ApiError),
    /// Wrong email or password on the credentials check.
    BadCredentials,
    DuplicateEmail,
    /// Too many sign-ups from this address; seconds until the next may go ahead.
    TooManySignups(i64),
    /// Too many email changes for this account or from this address; seconds until the next.
    TooManyEmailChanges(i64),
    /// The host's bcrypt queue is full: shed, retry shortly.
    HashingBusy,
    /// A signed, unexpired token whose user is gone or whose password changed after it was
    /// issued.
    TokenRevoked,
    /// A password change whose `current_password` is wrong.
    WrongCurrentPassword,
}

/// What a token that may not act on a user is told.
pub const FORBIDDEN: &str = "this token may not act on this user";

impl Error {
    pub fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response("users"),
            Self::BadCredentials => problem(401, "bad-credentials", "Unauthorized", "wrong email or password"),
            Self::DuplicateEmail => problem_with(
                409,
                "duplicate-email",
                "Email already registered",
                "a user with this email already exists",
                Some(("errors", serde_json::json!([FieldError::new("email", "is already registered")]))),
            ),
            Self::TooManySignups(seconds) => {
                too_many("too-many-signups", "too many sign-ups from this address, retry later", seconds)
            }
            Self::TooManyEmailChanges(seconds) => too_many(
                "too-many-email-changes",
                "too many email changes for this account or from this address, retry later",
                seconds,
            ),
            Self::TokenRevoked => problem(
                401,
                "token-revoked",
                "Unauthorized",
                "this token's user no longer exists or changed the password or email since it was issued: log in again",
            )
            .header("www-authenticate", "Bearer"),
            Self::WrongCurrentPassword => {
                problem(403, "wrong-current-password", "Forbidden", "current_password is not this user's password")
            }
            Self::HashingBusy => problem(
                503,
                "overloaded",
                "Service unavailable",
                "too many passwords are being hashed right now, retry shortly",
            )
            .header("retry-after", "1"),
        }
    }
}

service_kit::wraps_api_error!(Error);

/// The only unique column a write can collide on is the email.
impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UniqueViolation(_) => Self::DuplicateEmail,
            other => Self::Api(other.into()),
        }
    }
}

/// A 429 from one of the throttles, saying when to retry.
fn too_many(kind: &str, detail: &str, retry_after_seconds: i64) -> Response {
    problem(429, kind, "Too many requests", detail).header("retry-after", retry_after_seconds.to_string())
}
