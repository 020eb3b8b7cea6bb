//! The one place admin errors become HTTP responses (problem+json).

use http::{HeaderValue, Response, StatusCode, header};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::server::problem::problem;
use crate::service::{DeployError, SlotError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the component is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Slot(#[from] SlotError),
}

impl AdminError {
    pub fn into_response(self) -> Response<HyperOutgoingBody> {
        let (status, kind) = match &self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            Self::Deploy(DeployError::Unchanged(_) | DeployError::Slot(_)) | Self::Slot(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            // The candidate is at fault, not the request or the host: refused as unprocessable.
            Self::Deploy(error) => (StatusCode::UNPROCESSABLE_ENTITY, error.kind()),
        };
        // Refusal reasons are for the operator who asked; they carry no secrets.
        let mut response = problem(status, kind, &self.to_string());
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
