//! The credentials check auth asks for, and who is an admin.

use serde_json::Value;

use super::{Email, FieldError, JsonObject};

/// An email and a password to check. The password is not held to the sign-up rules: a wrong
/// one is simply wrong, and says nothing about which rule it broke.
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl Credentials {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        // An address that cannot exist cannot match; keep it as typed so the check fails later.
        let email =
            object.required("email", |raw| Ok(Email::parse(raw).map(|e| e.as_str().to_owned()).unwrap_or_default()));
        let password = object.required("password", |raw| Ok(raw.to_owned()));
        object.finish()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => Err(vec![FieldError::new("body", "is invalid")]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_need_both_fields() {
        assert!(Credentials::parse(json!({"email": "a@b.org"})).is_err());
        let parsed = Credentials::parse(json!({"email": " A@B.org", "password": "x"})).unwrap();
        assert_eq!(parsed.email, "a@b.org");
        assert_eq!(parsed.password, "x");
    }
}
