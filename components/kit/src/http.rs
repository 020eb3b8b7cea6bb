//! Requests and responses as plain values; [`crate::wasi_http`] moves them through `wasi:http`.

/// Largest request body a service reads; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Other,
}

/// Where a request came from, as the host established it (`skiff:request/context`): whether it
/// is internal (the host's internal listener, or another service), sent by the admin API, and
/// the client's address. No client can forge any of it.
pub use crate::bindings::skiff::request::context::Origin;

impl Default for Origin {
    /// A public request from an unknown address: what grants nothing.
    fn default() -> Self {
        Self { internal: false, admin: false, client_address: None }
    }
}

/// A request read in full.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub origin: Origin,
}

impl Request {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Whether the body may be read as JSON: only with a JSON content type. Without one it is
    /// not: a web page can make a browser send a body without a content type (or as
    /// `text/plain`) to another site without asking it first, so reading such a body as JSON
    /// would let any page sign people up or try logins in their browser's name.
    pub fn has_json_body(&self) -> bool {
        match self.header("content-type") {
            None => false,
            Some(content_type) => {
                let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
                media_type == "application/json" || media_type.ends_with("+json")
            }
        }
    }
}

/// A response ready to be written.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::with_content_type(status, "application/json", body)
    }

    pub fn with_content_type(status: u16, content_type: &str, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn no_content() -> Self {
        Self { status: 204, headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Get,
            path: "/".into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            origin: Origin::default(),
        }
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(request(&[("authorization", "Bearer abc.def")]).bearer_token(), Some("abc.def"));
        assert_eq!(request(&[("authorization", "bearer  abc")]).bearer_token(), Some("abc"));
        assert_eq!(request(&[("authorization", "Basic abc")]).bearer_token(), None);
        assert_eq!(request(&[]).bearer_token(), None);
    }

    #[test]
    fn json_bodies_by_content_type() {
        assert!(!request(&[]).has_json_body());
        assert!(request(&[("content-type", "application/json; charset=utf-8")]).has_json_body());
        assert!(request(&[("content-type", "application/merge-patch+json")]).has_json_body());
        assert!(!request(&[("content-type", "text/plain")]).has_json_body());
    }
}
