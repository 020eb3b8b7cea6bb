//! JSON log lines without a JSON library: one object per line, written straight into the
//! subscriber's reused line buffer. The shape is tracing-subscriber's JSON format with flattened
//! events and the current span: `timestamp`, `level`, the event's fields (`message` first),
//! `target`, `span` (the innermost span: its fields and `name`) and `spans` (root first).
//!
//! tracing-subscriber's own JSON format stores each span's fields as a JSON object and parses it
//! back for every line that names the span, twice (`span` and `spans`); here a span's fields are
//! formatted once, when it is created, as the inside of an object, and copied into each line.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats a span's fields as `"key":value,...` (the inside of a JSON object).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &span::Record<'_>) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = JsonVisitor { writer: current.as_writer(), first, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Formats an event as one JSON object on one line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut visitor = JsonVisitor { writer: writer.by_ref(), first: false, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, metadata.target())?;
        // The innermost span first (`span`), then all of them from the root (`spans`).
        if let Some(innermost) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            writer.write_str(",\"span\":")?;
            span_object::<S, N>(&mut writer, &innermost)?;
            writer.write_str(",\"spans\":[")?;
            for (index, span) in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()).enumerate() {
                if index > 0 {
                    writer.write_char(',')?;
                }
                span_object::<S, N>(&mut writer, &span)?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

/// `{<fields>,"name":"..."}` of one span, its fields as [`JsonFields`] formatted them.
fn span_object<S, N>(writer: &mut Writer<'_>, span: &tracing_subscriber::registry::SpanRef<'_, S>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    writer.write_char('{')?;
    let extensions = span.extensions();
    if let Some(fields) = extensions.get::<FormattedFields<N>>().filter(|fields| !fields.is_empty()) {
        writer.write_str(fields)?;
        writer.write_char(',')?;
    }
    writer.write_str("\"name\":")?;
    string(writer, span.name())?;
    writer.write_char('}')
}

/// Writes each field as `,"key":value` (without the comma before the first when `first`).
struct JsonVisitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl JsonVisitor<'_> {
    /// Writes the key of the next field; false for fields that are left out (the `log.*`
    /// fields a `log` record carries, which its normalized metadata already says).
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if std::mem::take(&mut self.first) { "" } else { "," };
        self.result = write!(self.writer, "{separator}\"{name}\":");
        self.result.is_ok()
    }

    fn value(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.key(field) {
            self.result = write(&mut self.writer);
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, |w| if value.is_finite() { write!(w, "{value}") } else { w.write_str("null") });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, |w| write!(w, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.value(field, |w| string(w, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.value(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.value(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string.
fn string(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        let mut start = 0;
        for (index, byte) in value.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&value[start..index])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = index + 1;
        }
        self.0.write_str(&value[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines_of(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }

    #[test]
    fn a_line_carries_its_fields_and_its_spans_root_first() {
        let lines = lines_of(|| {
            let request = tracing::info_span!("request", id = "r-1", path = %"/a\"b\\c\n");
            let _request = request.enter();
            let component = tracing::info_span!("component", service = "users");
            component.in_scope(|| tracing::info!(status = 200u16, elapsed_ms = 0.25, ok = true, "served"));
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "served");
        assert_eq!(
            (line["status"].as_u64(), line["elapsed_ms"].as_f64(), &line["ok"]),
            (Some(200), Some(0.25), &true.into())
        );
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["span"], serde_json::json!({"name": "component", "service": "users"}));
        assert_eq!(
            line["spans"],
            serde_json::json!([{"name": "request", "id": "r-1", "path": "/a\"b\\c\n"}, {"name": "component", "service": "users"}])
        );
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    }

    #[test]
    fn a_line_outside_any_span_has_no_span_and_odd_values_stay_valid_json() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("late", first = tracing::field::Empty);
            span.record("first", "filled later");
            span.in_scope(|| tracing::info!(nan = f64::NAN, control = "\u{1}", "in a span"));
            tracing::warn!(r#type = "raw", "outside");
        });
        assert_eq!(lines[0]["span"], serde_json::json!({"name": "late", "first": "filled later"}));
        assert_eq!((&lines[0]["nan"], &lines[0]["control"]), (&serde_json::Value::Null, &"\u{1}".into()));
        assert_eq!(
            (lines[1].get("span"), &lines[1]["type"], &lines[1]["level"]),
            (None, &"raw".into(), &"WARN".into())
        );
    }
}
