//! Offset pagination of list endpoints, the same limits and messages in every service.

use serde_json::{Value, json};

use crate::problem::FieldError;

/// Page size when the client does not ask for one.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;

/// A window into a list ordered by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, offset: 0 }
    }
}

impl Page {
    /// Takes the query parameter `limit` or `offset`, or reports why it is invalid; `false`
    /// when `key` is neither.
    pub fn accept(&mut self, key: &str, value: &str, errors: &mut Vec<FieldError>) -> bool {
        match key {
            "limit" => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => self.limit = limit,
                _ => errors.push(FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
            },
            "offset" => match value.parse::<u64>() {
                Ok(offset) if offset <= i64::MAX as u64 => self.offset = offset,
                _ => errors.push(FieldError::new("offset", "must be a non-negative integer")),
            },
            _ => return false,
        }
        true
    }

    /// The list body: the items, the page, and where the next page starts (`null` after a
    /// page that was not full).
    pub fn body(&self, items: Vec<Value>) -> Value {
        let full = items.len() == self.limit as usize;
        let next_offset = full.then(|| self.offset + u64::from(self.limit));
        json!({"items": items, "limit": self.limit, "offset": self.offset, "next_offset": next_offset})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (Page, Vec<FieldError>) {
        let (mut page, mut errors) = (Page::default(), Vec::new());
        for (key, value) in pairs {
            assert!(page.accept(key, value, &mut errors), "{key}");
        }
        (page, errors)
    }

    #[test]
    fn reads_limit_and_offset_within_bounds() {
        assert_eq!(read(&[]).0, Page { limit: DEFAULT_LIMIT, offset: 0 });
        assert_eq!(read(&[("limit", "5"), ("offset", "10")]), (Page { limit: 5, offset: 10 }, Vec::new()));
        let (_, errors) = read(&[("limit", "0"), ("limit", "101"), ("offset", "-1")]);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "limit", "offset"]);
        assert_eq!(errors[0].message, "must be an integer from 1 to 100");
        assert!(!Page::default().accept("email", "x", &mut Vec::new()));
    }

    #[test]
    fn a_full_page_points_at_the_next() {
        let page = Page { limit: 2, offset: 4 };
        assert_eq!(page.body(vec![json!(1), json!(2)])["next_offset"], 6);
        assert_eq!(page.body(vec![json!(1)])["next_offset"], Value::Null);
        assert_eq!(page.body(Vec::new())["limit"], 2);
    }
}
