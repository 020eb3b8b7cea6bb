//! Moving requests and responses between `wasi:http` resources and plain Rust values.

use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::error::ApiError;

/// Largest request body the service reads; larger ones get 413.
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
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A response ready to be written.
#[derive(Debug)]
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
        Self {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub fn read_request(request: IncomingRequest) -> Result<Request, ApiError> {
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
    let headers = request.headers();
    let content_type = headers
        .get("content-type")
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let declared_length = headers
        .get("content-length")
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8_lossy(&v).trim().parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let body = read_body(&request)?;
    Ok(Request {
        method,
        path,
        query,
        content_type,
        body,
    })
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::MalformedBody("the request body could not be read".into());
    let incoming = request.consume().map_err(|()| unreadable())?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| unreadable())?;
        loop {
            match stream.blocking_read(16 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_BODY_BYTES {
                        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
                    }
                }
                Err(StreamError::Closed) => break,
                // The host cuts bodies over its own limit mid-stream; that is a size problem.
                Err(StreamError::LastOperationFailed(_)) => {
                    return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
                }
            }
        }
    }
    let _trailers = IncomingBody::finish(incoming);
    Ok(body)
}

pub fn write_response(out: ResponseOutparam, response: Response) {
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    headers.push((
        "content-length".into(),
        response.body.len().to_string().into_bytes(),
    ));
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else { return };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing left to tell it.
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
