//! What became of a request a service was asked to handle. The service says what happened;
//! the server decides what that means on the wire (problem+json, headers).

use http::{Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::ComponentVersion;

/// A handled request: the outcome, and the version it ran on if it got that far.
pub struct Handled {
    pub outcome: Outcome,
    pub version: Option<Arc<ComponentVersion>>,
}

pub enum Outcome {
    /// The component answered, with any status.
    Answered(Response<HyperOutgoingBody>),
    /// The request cannot be handed to a component as it is (no `Host`, say): the client's
    /// error, so it is never charged to the version.
    Malformed(String),
    /// The body is larger than the limit; no instance was started.
    BodyTooLarge { limit: usize },
    /// The client did not send its whole body within the body timeout; no instance was started.
    BodyTimeout { limit: Duration },
    /// Every instance slot stayed busy for the queue timeout; shed.
    Overloaded,
    /// The instance ran past the request's deadline and was stopped.
    DeadlineExceeded,
    /// The instance trapped, or returned without a usable response.
    ComponentFailed,
}

impl Outcome {
    /// The status the client gets, so a version can be judged by it (5xx counts against it).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Answered(response) => response.status(),
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::ComponentFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
