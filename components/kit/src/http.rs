//! Requests and responses as plain values, and the glue that moves them through `wasi:http`.

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

/// A request read in full.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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

    /// Whether the body may be read as JSON: no content type, or a JSON one.
    pub fn has_json_body(&self) -> bool {
        match self.header("content-type") {
            None => true,
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

/// Expands, in a component crate whose bindings live in `crate::bindings`, to the
/// `wasi:http/incoming-handler` export of `$component`, which reads each request in full, hands
/// it to `$handler: fn(&Request) -> Response` and writes the response; and to
/// `send(…) -> Result<Response, String>` for outbound calls through `wasi:http/outgoing-handler`.
// `crate::bindings` is meant: the bindings are generated in the component that expands this.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! wasi_http_glue {
    ($component:ident, $handler:path) => {
        impl crate::bindings::exports::wasi::http::incoming_handler::Guest for $component {
            fn handle(
                request: crate::bindings::wasi::http::types::IncomingRequest,
                response_out: crate::bindings::wasi::http::types::ResponseOutparam,
            ) {
                let response = match wasi_http_glue::read_request(request) {
                    Ok(request) => $handler(&request),
                    Err(problem) => problem,
                };
                wasi_http_glue::write_response(response_out, response);
            }
        }

        #[allow(dead_code)]
        mod wasi_http_glue {
            use crate::bindings::wasi::http::outgoing_handler;
            use crate::bindings::wasi::http::types::{
                Fields, IncomingBody, IncomingRequest, IncomingResponse, Method as WasiMethod, OutgoingBody,
                OutgoingRequest, OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
            };
            use crate::bindings::wasi::io::streams::{InputStream, StreamError};
            use $crate::http::{MAX_BODY_BYTES, Method, Request, Response};
            use $crate::problem::problem;

            fn too_large() -> Response {
                problem(
                    413,
                    "payload-too-large",
                    "Payload too large",
                    &format!("the request body must be at most {MAX_BODY_BYTES} bytes"),
                )
            }

            pub fn read_request(request: IncomingRequest) -> Result<Request, Response> {
                let method = match request.method() {
                    WasiMethod::Get => Method::Get,
                    WasiMethod::Post => Method::Post,
                    WasiMethod::Put => Method::Put,
                    WasiMethod::Delete => Method::Delete,
                    _ => Method::Other,
                };
                let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
                let (path, query) = match path_with_query.split_once('?') {
                    Some((path, query)) => (path.to_owned(), query.to_owned()),
                    None => (path_with_query, String::new()),
                };
                let headers: Vec<(String, String)> = request
                    .headers()
                    .entries()
                    .into_iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
                    .collect();
                let declared = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .and_then(|(_, value)| value.trim().parse::<usize>().ok());
                if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
                    return Err(too_large());
                }
                let unreadable =
                    || problem(400, "malformed-body", "Malformed request body", "the request body could not be read");
                let incoming = request.consume().map_err(|()| unreadable())?;
                let body = {
                    let stream = incoming.stream().map_err(|()| unreadable())?;
                    read_all(&stream, MAX_BODY_BYTES).map_err(|()| too_large())?
                };
                let _trailers = IncomingBody::finish(incoming);
                Ok(Request { method, path, query, headers, body })
            }

            /// Reads a stream to its end; `Err` past `limit` bytes or when the stream breaks
            /// (the host cuts bodies over its own limit mid-stream).
            fn read_all(stream: &InputStream, limit: usize) -> Result<Vec<u8>, ()> {
                let mut body = Vec::new();
                loop {
                    match stream.blocking_read(16 * 1024) {
                        Ok(chunk) => {
                            body.extend_from_slice(&chunk);
                            if body.len() > limit {
                                return Err(());
                            }
                        }
                        Err(StreamError::Closed) => return Ok(body),
                        Err(StreamError::LastOperationFailed(_)) => return Err(()),
                    }
                }
            }

            fn fields(headers: &[(String, String)], body_len: usize) -> Fields {
                let mut list: Vec<(String, Vec<u8>)> =
                    headers.iter().map(|(name, value)| (name.clone(), value.clone().into_bytes())).collect();
                list.push(("content-length".into(), body_len.to_string().into_bytes()));
                Fields::from_list(&list).unwrap_or_else(|_| Fields::new())
            }

            fn write_body(body: OutgoingBody, bytes: &[u8]) {
                if let Ok(stream) = body.write() {
                    for chunk in bytes.chunks(4096) {
                        if stream.blocking_write_and_flush(chunk).is_err() {
                            // The peer went away; nothing left to tell it.
                            return;
                        }
                    }
                }
                let _ = OutgoingBody::finish(body, None);
            }

            pub fn write_response(out: ResponseOutparam, response: Response) {
                let outgoing = OutgoingResponse::new(fields(&response.headers, response.body.len()));
                let _ = outgoing.set_status_code(response.status);
                let Ok(body) = outgoing.body() else { return };
                ResponseOutparam::set(out, Ok(outgoing));
                write_body(body, &response.body);
            }

            /// Sends a request to `authority` (a service name such as `users`, resolved by the
            /// host) and reads the whole response. `Err` carries why it could not be sent.
            pub fn send(
                method: Method,
                scheme: &str,
                authority: &str,
                path_with_query: &str,
                headers: &[(String, String)],
                body: &[u8],
                timeout_ms: u64,
            ) -> Result<Response, String> {
                let request = OutgoingRequest::new(fields(headers, body.len()));
                let wasi_method = match method {
                    Method::Get => WasiMethod::Get,
                    Method::Post => WasiMethod::Post,
                    Method::Put => WasiMethod::Put,
                    Method::Delete => WasiMethod::Delete,
                    Method::Other => return Err("unsupported method".into()),
                };
                let _ = request.set_method(&wasi_method);
                let wasi_scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
                let _ = request.set_scheme(Some(&wasi_scheme));
                let _ = request.set_authority(Some(authority));
                let _ = request.set_path_with_query(Some(path_with_query));
                let outgoing_body = request.body().map_err(|()| "request body unavailable".to_owned())?;
                let options = RequestOptions::new();
                let nanos = timeout_ms.saturating_mul(1_000_000);
                let _ = options.set_connect_timeout(Some(nanos));
                let _ = options.set_first_byte_timeout(Some(nanos));
                let _ = options.set_between_bytes_timeout(Some(nanos));
                let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
                write_body(outgoing_body, body);
                pending.subscribe().block();
                let response: IncomingResponse = pending
                    .get()
                    .ok_or_else(|| "no response".to_owned())?
                    .map_err(|()| "response already taken".to_owned())?
                    .map_err(|e| format!("{e:?}"))?;
                let status = response.status();
                let headers = response
                    .headers()
                    .entries()
                    .into_iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
                    .collect();
                let incoming = response.consume().map_err(|()| "response body unavailable".to_owned())?;
                let body = {
                    let stream = incoming.stream().map_err(|()| "response body unavailable".to_owned())?;
                    read_all(&stream, 1 << 20).map_err(|()| "response body too large or broken".to_owned())?
                };
                let _trailers = IncomingBody::finish(incoming);
                Ok(Response { status, headers, body })
            }
        }
        #[allow(unused_imports)]
        pub use wasi_http_glue::send;
    };
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
        assert!(request(&[]).has_json_body());
        assert!(request(&[("content-type", "application/json; charset=utf-8")]).has_json_body());
        assert!(request(&[("content-type", "application/merge-patch+json")]).has_json_body());
        assert!(!request(&[("content-type", "text/plain")]).has_json_body());
    }
}
