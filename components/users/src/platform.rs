//! bcrypt through the host: what users asks of its host beyond the kit's helpers.

use service_kit::bindings::skiff::crypto::passwords;

use crate::domain::Password;

/// A bcrypt hash of `password` at `cost`, made by the host; the clear text is dropped here.
pub fn hash_password(password: Password, cost: u32) -> Result<String, String> {
    passwords::hash(password.clear_text(), cost)
}

/// Whether `password` matches a stored bcrypt hash (checked by the host).
pub fn password_matches(password: &Password, hash: &str) -> bool {
    passwords::verify(password.clear_text(), hash)
}
