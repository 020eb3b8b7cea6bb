//! The list endpoint's query string: exact-match filters and the kit's offset pagination.

use super::{Email, FieldError, User};
use service_kit::page::Page;
use service_kit::query::read_params;

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
        let mut parsed = ListQuery { email: None, name: None, surname: None, page: Page::default() };
        read_params(query, |key, value, errors| match key {
            "email" => match Email::parse(&value) {
                Ok(email) => parsed.email = Some(email),
                Err(message) => errors.push(FieldError::new("email", message)),
            },
            "name" => parsed.name = Some(value.trim().to_owned()),
            "surname" => parsed.surname = Some(value.trim().to_owned()),
            other => {
                if !parsed.page.accept(other, &value, errors) {
                    errors.push(FieldError::new(other, "is not a known query parameter"));
                }
            }
        })?;
        Ok(parsed)
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
    use service_kit::page::DEFAULT_LIMIT;

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
