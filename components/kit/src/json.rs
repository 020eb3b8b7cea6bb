//! Reading a JSON object field by field, collecting every problem with the name of its field.

use serde_json::{Map, Value};

use crate::problem::FieldError;

/// A JSON object being parsed into a domain type; errors accumulate instead of stopping at the
/// first, so the client can fix all of them at once.
pub struct JsonObject {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl JsonObject {
    /// Takes a parsed JSON document; anything but an object is an error on the field `body`.
    pub fn new(value: Value) -> Result<Self, Vec<FieldError>> {
        match value {
            Value::Object(map) => Ok(Self { map, errors: Vec::new() }),
            _ => Err(vec![FieldError::new("body", "must be a JSON object")]),
        }
    }

    /// A field that must be present, parsed by `parse`.
    pub fn required<T>(&mut self, field: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match self.map.remove(field) {
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(field, "is required"));
                None
            }
            Some(value) => self.parse_string(field, value, parse),
        }
    }

    /// A field that may be absent (`None`), or present and then must parse.
    pub fn optional<T>(&mut self, field: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<Option<T>> {
        match self.map.remove(field) {
            None => Some(None),
            Some(Value::Null) => Some(None),
            Some(value) => self.parse_string(field, value, parse).map(Some),
        }
    }

    /// Records `message` against `field` and drops it (a field that must not be combined with
    /// another, say).
    pub fn reject(&mut self, field: &str, message: &str) {
        self.map.remove(field);
        self.errors.push(FieldError::new(field, message));
    }

    /// Whether the client sent this field at all (even as null).
    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    fn parse_string<T>(
        &mut self,
        field: &str,
        value: Value,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Value::String(text) = value else {
            self.errors.push(FieldError::new(field, "must be a string"));
            return None;
        };
        match parse(&text) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.errors.push(FieldError::new(field, message));
                None
            }
        }
    }

    /// Ends parsing: any field left over is unknown and reported as such.
    pub fn finish(mut self) -> Result<(), Vec<FieldError>> {
        let mut unknown: Vec<String> = self.map.keys().cloned().collect();
        unknown.sort();
        for field in unknown {
            self.errors.push(FieldError::new(&field, "is not a known field"));
        }
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn non_empty(text: &str) -> Result<String, String> {
        if text.is_empty() { Err("must not be empty".into()) } else { Ok(text.to_owned()) }
    }

    #[test]
    fn collects_every_problem_with_its_field() {
        let mut object = JsonObject::new(json!({"a": 1, "b": "", "extra": true})).unwrap();
        assert_eq!(object.required("a", non_empty), None);
        assert_eq!(object.required("b", non_empty), None);
        assert_eq!(object.required("c", non_empty), None);
        let errors = object.finish().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "b", "c", "extra"]);
        assert_eq!(errors[0].message, "must be a string");
        assert_eq!(errors[2].message, "is required");
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let mut object = JsonObject::new(json!({"x": null, "y": "ok"})).unwrap();
        assert_eq!(object.optional("x", non_empty), Some(None));
        assert_eq!(object.optional("y", non_empty), Some(Some("ok".to_owned())));
        assert_eq!(object.optional("z", non_empty), Some(None));
        assert!(object.finish().is_ok());
    }

    #[test]
    fn a_non_object_body_is_refused() {
        let errors = JsonObject::new(json!([1, 2])).err().unwrap();
        assert_eq!(errors[0].field, "body");
    }
}
