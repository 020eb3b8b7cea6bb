//! What a service did with a request, as the client sees it: the component's own response, or a
//! problem+json the host writes; either way named with the version that ran it.

use http::{HeaderValue, Response};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::problem;
use crate::service::{ComponentVersion, Handled, Outcome};

/// The header naming the component version that served a response.
pub const VERSION_HEADER: &str = "skiff-component-version";
/// The header carrying that version's content digest.
pub const DIGEST_HEADER: &str = "skiff-component-digest";

pub fn into_response(handled: Handled) -> Response<HyperOutgoingBody> {
    let response = match handled.outcome {
        Outcome::Answered(response) => response,
        Outcome::Malformed(reason) => problem::malformed(&reason),
        Outcome::BodyTooLarge { limit } => problem::payload_too_large(limit),
        Outcome::BodyTimeout { limit } => problem::body_timeout(limit),
        Outcome::Overloaded => problem::overloaded(),
        Outcome::DeadlineExceeded => problem::deadline_exceeded(),
        Outcome::ComponentFailed => problem::component_failed(),
    };
    match &handled.version {
        Some(version) => with_version_headers(version, response),
        None => response,
    }
}

/// Names the version that served, so clients and tests can tell versions apart during a swap.
fn with_version_headers(
    version: &ComponentVersion,
    mut response: Response<HyperOutgoingBody>,
) -> Response<HyperOutgoingBody> {
    let headers = response.headers_mut();
    let (label, digest) = version.header_values();
    if let Some(label) = label {
        headers.insert(VERSION_HEADER, HeaderValue::clone(label));
    }
    if let Some(digest) = digest {
        headers.insert(DIGEST_HEADER, HeaderValue::clone(digest));
    }
    response
}
