//! Any bytes as a request: query string decoding, headers, and a JSON body read field by field,
//! as the services do. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_kit::http::{Method, Request};
use service_kit::json::JsonObject;
use service_kit::query;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = query::pairs(head);
    let request = Request {
        method: Method::Post,
        path: "/".into(),
        query: head.to_owned(),
        headers: vec![("authorization".into(), head.to_owned()), ("content-type".into(), head.to_owned())],
        body: body.as_bytes().to_vec(),
        origin: Default::default(),
    };
    let _ = request.bearer_token();
    let _ = request.has_json_body();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&request.body)
        && let Ok(mut object) = JsonObject::new(value)
    {
        let _ = object.required("email", |raw| if raw.contains('@') { Ok(raw.to_owned()) } else { Err("no @".into()) });
        let _ = object.optional("phone", |raw| Ok(raw.len()));
        let _ = object.finish();
    }
});
