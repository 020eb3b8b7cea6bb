//! The glue between `wasi:http` and the plain [`Request`]/[`Response`] values: [`serve`] for a
//! component's `wasi:http/incoming-handler` export, [`send`] for outbound calls through
//! `wasi:http/outgoing-handler`.

use crate::bindings::skiff::request::context;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, IncomingResponse, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};
use crate::http::{MAX_BODY_BYTES, Method, Request, Response};
use crate::problem::problem;

/// Largest response body [`send`] reads.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Serves one `wasi:http` request: reads it in full (413 past [`MAX_BODY_BYTES`]), hands it to
/// `handler` and writes the response. A component's `incoming-handler` export calls this.
pub fn serve(request: IncomingRequest, response_out: ResponseOutparam, handler: impl FnOnce(&Request) -> Response) {
    let response = match read_request(request) {
        Ok(request) => handler(&request),
        Err(problem) => problem,
    };
    write_response(response_out, response);
}

/// An outbound request: where to, and what.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: Method,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// A service name such as `users` (resolved by the host) or `host:port`.
    pub authority: &'a str,
    pub path_with_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// For connecting, the first byte and between bytes each.
    pub timeout_ms: u64,
}

/// Sends a request and reads the whole response (`Err` past 1 MiB). `Err` carries why it could
/// not be sent.
pub fn send(outgoing: Outgoing<'_>) -> Result<Response, String> {
    send_reading(outgoing, |stream| {
        read_all(stream, MAX_RESPONSE_BYTES).map_err(|()| "response body too large or broken".to_owned())
    })
}

/// Sends a request and reads at most the first `max_bytes` of the response body, then closes
/// it: for a caller that needs the status, never the body (a webhook's 2xx is a delivery
/// however much it sends back). A body that breaks after its status is not an error.
pub fn send_reading_prefix(outgoing: Outgoing<'_>, max_bytes: usize) -> Result<Response, String> {
    send_reading(outgoing, |stream| Ok(read_prefix(stream, max_bytes)))
}

fn send_reading(
    outgoing: Outgoing<'_>,
    read: impl FnOnce(&InputStream) -> Result<Vec<u8>, String>,
) -> Result<Response, String> {
    let request = OutgoingRequest::new(fields(outgoing.headers, outgoing.body.len()));
    let wasi_method = match outgoing.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Other => return Err("unsupported method".into()),
    };
    let _ = request.set_method(&wasi_method);
    let wasi_scheme = if outgoing.scheme == "https" { Scheme::Https } else { Scheme::Http };
    let _ = request.set_scheme(Some(&wasi_scheme));
    let _ = request.set_authority(Some(outgoing.authority));
    let _ = request.set_path_with_query(Some(outgoing.path_with_query));
    let outgoing_body = request.body().map_err(|()| "request body unavailable".to_owned())?;
    let options = RequestOptions::new();
    let nanos = outgoing.timeout_ms.saturating_mul(1_000_000);
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    write_body(outgoing_body, outgoing.body);
    pending.subscribe().block();
    let response: IncomingResponse = pending
        .get()
        .ok_or_else(|| "no response".to_owned())?
        .map_err(|()| "response already taken".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let headers = lower_case_entries(&response.headers());
    let incoming = response.consume().map_err(|()| "response body unavailable".to_owned())?;
    let body = {
        let stream = incoming.stream().map_err(|()| "response body unavailable".to_owned())?;
        // The stream goes before its body, as wasi:http requires.
        read(&stream)?
    };
    let _trailers = IncomingBody::finish(incoming);
    Ok(Response { status, headers, body })
}

fn too_large() -> Response {
    problem(
        413,
        "payload-too-large",
        "Payload too large",
        &format!("the request body must be at most {MAX_BODY_BYTES} bytes"),
    )
}

fn read_request(request: IncomingRequest) -> Result<Request, Response> {
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
    let headers = lower_case_entries(&request.headers());
    let declared = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let unreadable = || problem(400, "malformed-body", "Malformed request body", "the request body could not be read");
    let incoming = request.consume().map_err(|()| unreadable())?;
    let body = {
        let stream = incoming.stream().map_err(|()| unreadable())?;
        read_all(&stream, MAX_BODY_BYTES).map_err(|()| too_large())?
    };
    let _trailers = IncomingBody::finish(incoming);
    Ok(Request { method, path, query, headers, body, origin: context::request_origin() })
}

/// Header entries with lower-case names and lossily decoded values.
fn lower_case_entries(fields: &Fields) -> Vec<(String, String)> {
    fields
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
        .collect()
}

/// Reads a stream to its end; `Err` past `limit` bytes or when the stream breaks (the host
/// cuts bodies over its own limit mid-stream).
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

/// Reads a stream until it ends or `limit` bytes are in; what is read, at most `limit` bytes.
fn read_prefix(stream: &InputStream, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match stream.blocking_read((limit - body.len()).min(16 * 1024) as u64) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    body
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

fn write_response(out: ResponseOutparam, response: Response) {
    let outgoing = OutgoingResponse::new(fields(&response.headers, response.body.len()));
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else { return };
    ResponseOutparam::set(out, Ok(outgoing));
    write_body(body, &response.body);
}
