//! bcrypt through the host: what users asks of its host beyond the kit's helpers.

use service_kit::bindings::skiff::crypto::passwords;

use crate::domain::Password;
use crate::error::Error;

/// How the host says its bcrypt queue is full (`skiff:crypto/passwords.hash`).
const BUSY_PREFIX: &str = "overloaded:";
/// How the host says it did not hash because the client has gone (nobody reads this answer).
const CALLER_GONE_PREFIX: &str = "caller-gone:";

/// A bcrypt hash of `password` at `cost`, made by the host; the clear text is dropped here.
/// A full bcrypt queue is [`Error::HashingBusy`] (503), and so is a hash the host did not start
/// because the client has gone; anything else a 500.
pub fn hash_password(password: Password, cost: u32) -> Result<String, Error> {
    passwords::hash(password.clear_text(), cost).map_err(|error| {
        if error.starts_with(BUSY_PREFIX) || error.starts_with(CALLER_GONE_PREFIX) {
            Error::HashingBusy
        } else {
            Error::from(error)
        }
    })
}

/// Whether `password` matches a stored bcrypt hash (checked by the host). Never for one longer
/// than 72 bytes: bcrypt would compare only its first 72, so a set password plus any suffix
/// would match. (Decided before any lookup's outcome matters, for every account alike.)
pub fn password_matches(password: &Password, hash: &str) -> bool {
    password.could_have_been_set() && passwords::verify(password.clear_text(), hash)
}
