//! The one place where the auth service turns failures into HTTP responses: clients get an
//! RFC 9457 problem+json body, internal detail goes to the log only.

use service_kit::error::ApiError;
use service_kit::http::Response;
use service_kit::platform::log_error;
use service_kit::problem::problem;
use service_kit::sql::StoreError;

#[derive(Debug)]
pub enum Error {
    /// The failures every service answers alike.
    Api(ApiError),
    /// Unknown email and wrong password look the same.
    BadCredentials,
    /// users could not be asked.
    UsersUnavailable(String),
    /// Too many failed logins for the account or the source address; seconds to wait.
    TooManyAttempts(i64),
    /// auth's database cannot be reached: login is refused rather than left unthrottled, and
    /// sessions cannot be refreshed.
    DatabaseUnavailable(String),
    /// A refresh token that is unknown, expired, revoked or spent: all look the same.
    RefreshRefused,
    /// A parallel refresh spent the token first (answered as [`Error::RefreshRefused`]).
    RefreshReused,
}

impl Error {
    pub fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response("auth"),
            Self::BadCredentials => problem(401, "bad-credentials", "Unauthorized", "wrong email or password")
                .header("www-authenticate", "Bearer"),
            Self::UsersUnavailable(cause) => {
                log_error("auth", &format!("users service unavailable: {cause}"));
                problem(
                    503,
                    "users-unavailable",
                    "Service unavailable",
                    "credentials cannot be checked right now, retry later",
                )
                .header("retry-after", "1")
            }
            Self::TooManyAttempts(seconds) => problem(
                429,
                "too-many-attempts",
                "Too many requests",
                "too many failed logins for this account or from this address, retry later",
            )
            .header("retry-after", seconds.to_string()),
            Self::RefreshRefused | Self::RefreshReused => problem(
                401,
                "invalid-refresh-token",
                "Unauthorized",
                "the refresh token is unknown, expired or revoked: log in again",
            )
            .header("www-authenticate", "Bearer"),
            Self::DatabaseUnavailable(cause) => {
                log_error("auth", &format!("database unavailable: {cause}"));
                problem(
                    503,
                    "database-unavailable",
                    "Service unavailable",
                    "logins and sessions cannot be checked right now, retry later",
                )
                .header("retry-after", "1")
            }
        }
    }
}

service_kit::wraps_api_error!(Error);

/// When auth's database is out of reach, login and refresh are refused.
impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::DatabaseUnavailable(cause),
            other => Self::Api(other.into()),
        }
    }
}
