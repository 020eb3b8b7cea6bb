//! Bearer tokens as a component sees them: the claims the host verified or will sign
//! (`skiff:crypto/tokens`; the host holds the keys and the token format), and what they allow.

pub use crate::bindings::skiff::crypto::tokens::{Claims, Role};

/// Whether `claims` allow acting on the user `user_id`: an admin acts on anyone, a user on
/// itself.
pub fn may_act_on(claims: &Claims, user_id: &str) -> bool {
    claims.role == Role::Admin || claims.sub == user_id
}

/// A role as the services store it and show it in JSON.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "admin",
    }
}

/// A stored or received role name: `admin` is an admin, anything else a plain user (a role is
/// never widened by a value the code does not know).
pub fn role_named(name: &str) -> Role {
    if name == "admin" { Role::Admin } else { Role::User }
}

/// Why a request's bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No token, or one that does not verify: the client's problem (401).
    Unauthorized,
    /// The service has no usable public key: the operator's problem (500).
    NotConfigured(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, role: Role) -> Claims {
        Claims { sub: sub.into(), role, iat: 1_000, exp: 2_000, jti: "t1".into() }
    }

    #[test]
    fn admins_act_on_anyone_users_on_themselves() {
        assert!(may_act_on(&claims("user-1", Role::User), "user-1"));
        assert!(!may_act_on(&claims("user-1", Role::User), "user-2"));
        assert!(may_act_on(&claims("user-1", Role::Admin), "user-2"));
    }

    #[test]
    fn role_names_round_trip_and_unknown_names_are_users() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(role_named(role_name(role)), role);
        }
        assert_eq!(role_named("root"), Role::User);
        assert_eq!(role_named("Admin"), Role::User);
    }
}
