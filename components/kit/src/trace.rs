//! W3C Trace Context: the `traceparent` header that ties a login, its users call and its event
//! together.

/// A `traceparent` continuing `incoming` (same trace id, new span id), or starting a new trace
/// when there is none or it is malformed. `random` supplies 24 bytes.
pub fn child_traceparent(incoming: Option<&str>, random: &[u8; 24]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let span_id = hex(&random[16..24]);
    match incoming.and_then(trace_id) {
        Some(trace) => format!("00-{trace}-{span_id}-01"),
        None => format!("00-{}-{span_id}-01", hex(&random[..16])),
    }
}

/// The trace id of a well-formed version-00 `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else { return None };
    let is_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let valid = *version == "00"
        && is_hex(trace, 32)
        && is_hex(span, 16)
        && is_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && span.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace() {
        let child = child_traceparent(Some(PARENT), &[7; 24]);
        assert_eq!(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01");
    }

    #[test]
    fn starts_a_new_trace_otherwise() {
        for bad in [None, Some("garbage"), Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")] {
            let child = child_traceparent(bad, &[1; 24]);
            assert_eq!(child, "00-01010101010101010101010101010101-0101010101010101-01");
            assert!(trace_id(&child).is_some());
        }
    }
}
