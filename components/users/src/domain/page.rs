//! The list endpoint's query string: filters and offset pagination with a bounded page size.

use super::{Email, FieldError, User};
use service_kit::query::percent_decode;

/// Page size when the client does not ask for one.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;

/// A window into the list, ordered by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

/// `GET /users-ms/users?email=&name=&surname=&limit=&offset=`; filters are exact matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub email: Option<Email>,
    pub name: Option<String>,
    pub surname: Option<String>,
    pub page: Page,
}

impl ListQuery {
    pub fn parse(query: &str) -> Result<Self, Vec<FieldError>> {
        let mut parsed =
            ListQuery { email: None, name: None, surname: None, page: Page { limit: DEFAULT_LIMIT, offset: 0 } };
        let mut errors = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (percent_decode(raw_key), percent_decode(raw_value)) else {
                errors.push(FieldError::new(raw_key, "is not valid percent-encoded UTF-8"));
                continue;
            };
            match key.as_str() {
                "email" => match Email::parse(&value) {
                    Ok(email) => parsed.email = Some(email),
                    Err(message) => errors.push(FieldError::new("email", message)),
                },
                "name" => parsed.name = Some(value.trim().to_owned()),
                "surname" => parsed.surname = Some(value.trim().to_owned()),
                "limit" => match value.parse::<u32>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => parsed.page.limit = limit,
                    _ => errors.push(FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
                },
                "offset" => match value.parse::<u64>() {
                    Ok(offset) if offset <= i64::MAX as u64 => parsed.page.offset = offset,
                    _ => errors.push(FieldError::new("offset", "must be a non-negative integer")),
                },
                other => errors.push(FieldError::new(other, "is not a known query parameter")),
            }
        }
        if errors.is_empty() { Ok(parsed) } else { Err(errors) }
    }

    /// Whether `user` passes the filters (used where the list is not filtered in SQL).
    pub fn matches(&self, user: &User) -> bool {
        self.email.as_ref().is_none_or(|email| email.as_str() == user.email)
            && self.name.as_ref().is_none_or(|name| name == &user.name)
            && self.surname.as_ref().is_none_or(|surname| surname == &user.surname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_a_bounded_first_page() {
        let query = ListQuery::parse("").unwrap();
        assert_eq!(query.page, Page { limit: DEFAULT_LIMIT, offset: 0 });
        assert_eq!(query.email, None);
    }

    #[test]
    fn reads_filters_and_decodes_them() {
        let query =
            ListQuery::parse("email=Ada%40Example.org&name=Ada+Mary&surname=Lovelace&limit=5&offset=10").unwrap();
        assert_eq!(query.email.unwrap().as_str(), "ada@example.org");
        assert_eq!(query.name.as_deref(), Some("Ada Mary"));
        assert_eq!(query.surname.as_deref(), Some("Lovelace"));
        assert_eq!(query.page, Page { limit: 5, offset: 10 });
    }

    #[test]
    fn names_each_bad_parameter() {
        let errors = ListQuery::parse("limit=0&offset=-1&colour=red&email=nope").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "offset", "colour", "email"]);
        assert!(ListQuery::parse("limit=101").is_err());
    }
}
