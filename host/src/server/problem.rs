//! Responses the host itself gives, as RFC 9457 problem+json.

use http::{Response, StatusCode, header};
use serde_json::json;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::full_body;

pub fn problem(status: StatusCode, kind: &str, detail: &str) -> Response<HyperOutgoingBody> {
    let body = json!({
        "type": format!("urn:skiff:problem:{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    response
}

/// Every instance slot is busy and the request waited its turn: shed, retry shortly.
pub fn overloaded() -> Response<HyperOutgoingBody> {
    let mut response =
        problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the service is at capacity; retry shortly");
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

pub fn deadline_exceeded() -> Response<HyperOutgoingBody> {
    problem(StatusCode::GATEWAY_TIMEOUT, "deadline-exceeded", "the request ran past its deadline and was stopped")
}

/// A request the host cannot pass on as it is; `reason` says what is wrong with it.
pub fn malformed(reason: &str) -> Response<HyperOutgoingBody> {
    problem(StatusCode::BAD_REQUEST, "bad-request", &format!("the request cannot be served: {reason}"))
}

pub fn component_failed() -> Response<HyperOutgoingBody> {
    problem(StatusCode::INTERNAL_SERVER_ERROR, "component-failed", "the service failed while handling the request")
}

pub fn payload_too_large(limit: usize) -> Response<HyperOutgoingBody> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        &format!("the request body must be at most {limit} bytes"),
    )
}

/// The client took longer than `limit` to send its body.
pub fn body_timeout(limit: std::time::Duration) -> Response<HyperOutgoingBody> {
    let mut response = problem(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        &format!("the request body must arrive within {} ms", limit.as_millis()),
    );
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

pub fn not_found() -> Response<HyperOutgoingBody> {
    problem(StatusCode::NOT_FOUND, "not-found", "no service is mounted at this path")
}

/// A host route asked with a method it does not serve.
pub fn method_not_allowed(allow: &'static str) -> Response<HyperOutgoingBody> {
    let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", &format!("allowed: {allow}"));
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

pub fn draining() -> Response<HyperOutgoingBody> {
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", "the host is shutting down");
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}
