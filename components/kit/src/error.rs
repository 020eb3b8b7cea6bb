//! The API failures every service answers alike. A service wraps [`ApiError`] in its own error
//! type for the answers only it gives, and turns both into HTTP in one place.

use crate::http::{Request, Response};
use crate::platform::log_error;
use crate::problem::{FieldError, invalid_fields, problem};
use crate::sql::StoreError;
use crate::token::BearerError;

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
    /// A valid token that does not allow this; the detail says what it may not do.
    Forbidden(&'static str),
    NotFound,
    /// The path exists; these are the methods it allows.
    MethodNotAllowed(&'static str),
    /// The database is unreachable; worth retrying.
    Unavailable(String),
    /// A bug or a broken configuration; the detail is logged, not returned.
    Internal(String),
}

impl ApiError {
    /// The problem+json response; `service` names the log lines of what is not returned.
    pub fn into_response(self, service: &str) -> Response {
        match self {
            Self::MalformedBody(detail) => problem(400, "malformed-body", "Malformed request body", &detail),
            Self::UnsupportedMediaType => {
                problem(415, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
            }
            Self::InvalidFields(errors) => invalid_fields(&errors),
            Self::Unauthorized => problem(401, "unauthorized", "Unauthorized", "a valid bearer token is required")
                .header("www-authenticate", "Bearer"),
            Self::Forbidden(detail) => problem(403, "forbidden", "Forbidden", detail),
            Self::NotFound => problem(404, "not-found", "Not found", "no such resource"),
            Self::MethodNotAllowed(allow) => {
                problem(405, "method-not-allowed", "Method not allowed", &format!("allowed: {allow}"))
                    .header("allow", allow)
            }
            Self::Unavailable(cause) => {
                log_error(service, &format!("database unavailable: {cause}"));
                problem(503, "unavailable", "Service unavailable", "the database is unavailable, retry later")
                    .header("retry-after", "1")
            }
            Self::Internal(cause) => {
                log_error(service, &format!("internal error: {cause}"));
                problem(500, "internal", "Internal error", "the request could not be completed")
            }
        }
    }
}

/// A failed setting or host call: the operator's or the platform's problem.
impl From<String> for ApiError {
    fn from(cause: String) -> Self {
        Self::Internal(cause)
    }
}

/// A store's failure, where a unique violation means nothing more specific to the service.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::UniqueViolation(constraint) => Self::Internal(format!("unique violation: {constraint:?}")),
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(error: BearerError) -> Self {
        match error {
            BearerError::Unauthorized => Self::Unauthorized,
            BearerError::NotConfigured(cause) => Self::Internal(cause),
        }
    }
}

/// The conversions into a service's error type `$error`, whose variant `Api` holds an
/// [`ApiError`]: from an [`ApiError`], a failed setting or host call (`String`) and a bearer token
/// failure, each answered as every service answers it. A service converts a `StoreError`
/// itself: what a unique violation or an outage means is its own to say.
#[macro_export]
macro_rules! wraps_api_error {
    ($error:ty) => {
        impl ::core::convert::From<$crate::error::ApiError> for $error {
            fn from(error: $crate::error::ApiError) -> Self {
                Self::Api(error)
            }
        }

        impl ::core::convert::From<::std::string::String> for $error {
            fn from(cause: ::std::string::String) -> Self {
                Self::Api(cause.into())
            }
        }

        impl ::core::convert::From<$crate::token::BearerError> for $error {
            fn from(error: $crate::token::BearerError) -> Self {
                Self::Api(error.into())
            }
        }
    };
}

/// The request body as JSON: 415 for another media type, 400 when it does not parse.
pub fn json_body(request: &Request) -> Result<serde_json::Value, ApiError> {
    if !request.has_json_body() {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn status_and_kind(error: ApiError) -> (u16, String) {
        let response = error.into_response("test");
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        (response.status, body["type"].as_str().unwrap().to_owned())
    }

    #[test]
    fn each_arm_has_its_status_and_kind() {
        assert_eq!(status_and_kind(ApiError::Unauthorized), (401, "urn:skiff:problem:unauthorized".into()));
        assert_eq!(status_and_kind(ApiError::Forbidden("no")), (403, "urn:skiff:problem:forbidden".into()));
        assert_eq!(
            status_and_kind(ApiError::Unavailable("down".into())),
            (503, "urn:skiff:problem:unavailable".into())
        );
        assert_eq!(status_and_kind(ApiError::Internal("bug".into())), (500, "urn:skiff:problem:internal".into()));
        let allowed = ApiError::MethodNotAllowed("GET").into_response("test");
        assert!(allowed.headers.contains(&("allow".into(), "GET".into())));
    }

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let response = ApiError::Internal("secret cause".into()).into_response("test");
        assert!(!String::from_utf8_lossy(&response.body).contains("secret"));
    }

    #[derive(Debug)]
    enum ServiceError {
        Api(ApiError),
    }

    crate::wraps_api_error!(ServiceError);

    #[test]
    fn a_wrapping_error_takes_every_api_failure_as_is() {
        assert!(matches!(ServiceError::from(ApiError::NotFound), ServiceError::Api(ApiError::NotFound)));
        assert!(matches!(
            ServiceError::from(String::from("no setting")),
            ServiceError::Api(ApiError::Internal(cause)) if cause == "no setting"
        ));
        assert!(matches!(ServiceError::from(BearerError::Unauthorized), ServiceError::Api(ApiError::Unauthorized)));
    }

    #[test]
    fn bodies_must_be_json() {
        let mut request = Request {
            method: Method::Post,
            path: "/".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"{}".to_vec(),
            origin: Default::default(),
        };
        assert!(matches!(json_body(&request), Err(ApiError::UnsupportedMediaType)));
        request.headers.clear();
        assert!(matches!(json_body(&request), Err(ApiError::UnsupportedMediaType)), "no content type is not JSON");
        request.headers.push(("content-type".into(), "application/json".into()));
        assert!(json_body(&request).is_ok());
        request.body = b"{".to_vec();
        assert!(matches!(json_body(&request), Err(ApiError::MalformedBody(_))));
    }
}
