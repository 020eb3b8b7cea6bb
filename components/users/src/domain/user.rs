//! A user profile, and the two ways a client changes one: creating and updating.

use super::{Email, FieldError, JsonObject, Password, PersonName, Phone, time};
use serde_json::{Value, json};
use service_kit::token::{Role, role_name};

/// A stored profile as clients see it. The password hash is not part of it: it stays in the
/// database and in the credentials check.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub surname: String,
    pub phone: Option<String>,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the password or the email last changed (micros), if ever since sign-up: access
    /// tokens and sessions from before it are no longer accepted.
    pub password_changed_at: Option<i64>,
}

impl User {
    /// Whether an access token of this user's issued at `iat` (seconds) still stands: not if
    /// it was issued before the password last changed. A token issued in the second of the
    /// change is accepted, since `iat` has whole seconds and a login right after the change
    /// must work.
    pub fn accepts_token_issued_at(&self, iat: i64) -> bool {
        self.password_changed_at.is_none_or(|changed| iat >= changed.div_euclid(1_000_000))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "surname": self.surname,
            "phone": self.phone,
            "role": role_name(self.role),
            "created_at": time::format_rfc3339(self.created_at),
            "updated_at": time::format_rfc3339(self.updated_at),
        })
    }
}

/// A valid sign-up: `POST /users-ms/users`.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub name: PersonName,
    pub surname: PersonName,
    pub phone: Option<Phone>,
    pub password: Password,
}

impl NewUser {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        let name = object.required("name", PersonName::parse);
        let surname = object.required("surname", PersonName::parse);
        let email = object.required("email", Email::parse);
        let password = object.required("password", Password::parse);
        let phone = object.optional("phone", Phone::parse);
        object.finish()?;
        match (name, surname, email, password, phone) {
            (Some(name), Some(surname), Some(email), Some(password), Some(phone)) => {
                Ok(Self { email, name, surname, phone, password })
            }
            // finish() reports every field that failed, so this arm is not reached.
            _ => Err(vec![FieldError::new("body", "is invalid")]),
        }
    }
}

/// A valid update: `PUT /users-ms/users/{id}`. Fields left out keep their value; `phone: null`
/// clears the phone.
#[derive(Debug)]
pub struct UserChanges {
    pub email: Option<Email>,
    pub name: Option<PersonName>,
    pub surname: Option<PersonName>,
    pub phone: Option<Option<Phone>>,
    pub password: Option<Password>,
    /// The current password, as typed: a user changing their own password or email must give it.
    pub current_password: Option<Password>,
}

impl UserChanges {
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let mut object = JsonObject::new(body)?;
        let clears_phone = object.has("phone");
        let changes_credentials = object.has("password") || object.has("email");
        let name = object.optional("name", PersonName::parse);
        let surname = object.optional("surname", PersonName::parse);
        let email = object.optional("email", Email::parse);
        let password = object.optional("password", Password::parse);
        let phone = object.optional("phone", Phone::parse);
        // Not held to the sign-up rules: a wrong one is simply wrong.
        let current_password = if object.has("current_password") && !changes_credentials {
            object.reject("current_password", "is only used together with password or email");
            Some(None)
        } else {
            object.optional("current_password", |raw| Ok(Password::unchecked(raw.to_owned())))
        };
        object.finish()?;
        let (Some(name), Some(surname), Some(email), Some(password), Some(phone), Some(current_password)) =
            (name, surname, email, password, phone, current_password)
        else {
            return Err(vec![FieldError::new("body", "is invalid")]);
        };
        let changes = Self { email, name, surname, phone: clears_phone.then_some(phone), password, current_password };
        if changes.is_empty() {
            return Err(vec![FieldError::new(
                "body",
                "must change at least one of name, surname, email, phone, password",
            )]);
        }
        Ok(changes)
    }

    fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.name.is_none()
            && self.surname.is_none()
            && self.phone.is_none()
            && self.password.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn sign_up_needs_every_required_field() {
        let errors = NewUser::parse(json!({"name": "Ada"})).unwrap_err();
        assert_eq!(fields(errors), ["surname", "email", "password"]);
    }

    #[test]
    fn sign_up_parses_and_normalises() {
        let user = NewUser::parse(json!({
            "name": " Ada ", "surname": "Lovelace", "email": "ADA@example.org", "password": "analytical engine"
        }))
        .unwrap();
        assert_eq!(user.name.as_str(), "Ada");
        assert_eq!(user.email.as_str(), "ada@example.org");
        assert!(user.phone.is_none());
    }

    #[test]
    fn sign_up_refuses_unknown_fields_and_bad_types() {
        let errors = NewUser::parse(json!({
            "name": "Ada", "surname": "L", "email": "ada@example.org", "password": 12345678, "role": "admin"
        }))
        .unwrap_err();
        assert_eq!(fields(errors), ["password", "role"]);
    }

    #[test]
    fn update_is_partial_and_not_empty() {
        let changes = UserChanges::parse(json!({"surname": "Byron"})).unwrap();
        assert_eq!(changes.surname.unwrap().as_str(), "Byron");
        assert!(changes.phone.is_none());
        assert!(UserChanges::parse(json!({})).is_err());
        let cleared = UserChanges::parse(json!({"phone": null})).unwrap();
        assert!(matches!(cleared.phone, Some(None)));
    }

    #[test]
    fn the_current_password_comes_only_with_a_new_one() {
        let changes = UserChanges::parse(json!({"password": "new password!", "current_password": "old"})).unwrap();
        assert_eq!(changes.current_password.map(|p| p.clear_text().to_owned()), Some("old".to_owned()));
        assert!(UserChanges::parse(json!({"password": "new password!"})).unwrap().current_password.is_none());
        let email = UserChanges::parse(json!({"email": "b@c.org", "current_password": "old"})).unwrap();
        assert!(email.current_password.is_some());
        let errors = UserChanges::parse(json!({"name": "Ada", "current_password": "old"})).unwrap_err();
        assert_eq!(fields(errors), ["current_password"]);
    }

    fn user(password_changed_at: Option<i64>) -> User {
        User {
            id: "id".into(),
            email: "a@b.org".into(),
            name: "A".into(),
            surname: "B".into(),
            phone: None,
            role: Role::User,
            created_at: 0,
            updated_at: 0,
            password_changed_at,
        }
    }

    #[test]
    fn tokens_from_before_a_password_change_are_refused() {
        assert!(user(None).accepts_token_issued_at(0));
        let changed = user(Some(1_000_500_000));
        assert!(!changed.accepts_token_issued_at(999));
        assert!(changed.accepts_token_issued_at(1_000), "issued in the second of the change");
        assert!(changed.accepts_token_issued_at(1_001));
    }

    #[test]
    fn json_view_has_no_password() {
        let view = user(Some(5)).to_json();
        assert!(view.get("password").is_none() && view.get("password_hash").is_none());
        assert_eq!(view["created_at"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(view["role"], "user");
        assert!(view.get("password_changed_at").is_none());
    }
}
