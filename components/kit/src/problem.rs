//! RFC 9457 problem+json bodies, the same shape in every service and in the host.

use serde_json::{Value, json};

use crate::http::Response;

/// One invalid or missing field, reported to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// A problem response: `type` is `urn:skiff:problem:<kind>`.
pub fn problem(status: u16, kind: &str, title: &str, detail: &str) -> Response {
    problem_with(status, kind, title, detail, None)
}

/// A problem response with one extension member, such as `errors`.
pub fn problem_with(status: u16, kind: &str, title: &str, detail: &str, extension: Option<(&str, Value)>) -> Response {
    let mut body = json!({
        "type": format!("urn:skiff:problem:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
    });
    if let (Some((key, value)), Some(object)) = (extension, body.as_object_mut()) {
        object.insert(key.to_owned(), value);
    }
    Response::with_content_type(status, "application/problem+json", &body)
}

/// 422 listing every invalid field.
pub fn invalid_fields(errors: &[FieldError]) -> Response {
    let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    problem_with(422, "invalid-fields", "Invalid request fields", &detail, Some(("errors", json!(errors))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_lists_each_field() {
        let response = invalid_fields(&[FieldError::new("email", "is required")]);
        assert_eq!(response.status, 422);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["type"], "urn:skiff:problem:invalid-fields");
        assert_eq!(body["errors"][0]["field"], "email");
        assert_eq!(body["detail"], "email: is required");
    }
}
