//! A password in clear text exists only here, between parsing and hashing.

use std::fmt;

/// A candidate password: 8 to 72 bytes (bcrypt reads no further than 72, so longer ones are
/// refused rather than silently cut), without control characters (NUL included: bcrypt would
/// end the password there).
pub struct Password(String);

const MIN_CHARS: usize = 8;
const MAX_BYTES: usize = 72;

/// bcrypt cost used when the configuration does not set one.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() < MIN_CHARS {
            return Err(format!("must be at least {MIN_CHARS} characters"));
        }
        if raw.len() > MAX_BYTES {
            return Err(format!("must be at most {MAX_BYTES} bytes"));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// Whether a password as typed can be one that was set: one longer than 72 bytes cannot
    /// (bcrypt would compare only its first 72, so a set password plus any suffix would pass).
    pub fn could_have_been_set(&self) -> bool {
        self.0.len() <= MAX_BYTES
    }

    /// A password as typed at login, held to no rule: it is only compared with a hash.
    pub fn unchecked(raw: String) -> Self {
        Self(raw)
    }

    /// The clear text, only to hand it to the host's bcrypt (`platform::hash_password`).
    pub fn clear_text(&self) -> &str {
        &self.0
    }
}

/// Highest bcrypt cost the host hashes at (about a second per hash on one core; each step
/// doubles it).
pub const MAX_BCRYPT_COST: u32 = 14;

/// Reads the configured bcrypt cost: 4 to [`MAX_BCRYPT_COST`].
pub fn parse_bcrypt_cost(raw: Option<&str>) -> Result<u32, String> {
    match raw {
        None => Ok(DEFAULT_BCRYPT_COST),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(cost) if (4..=MAX_BCRYPT_COST).contains(&cost) => Ok(cost),
            _ => Err(format!("bcrypt_cost must be an integer from 4 to {MAX_BCRYPT_COST}, got {text:?}")),
        },
    }
}

/// Salt and checksum of the decoy hash: well-formed (canonical bcrypt base64), made of random
/// characters, so no password is known to match it.
const DECOY_SALT_AND_CHECKSUM: &str = "Tulrh.HpOagVyp3QZPTb4.DSCB4EFsbJTEC2M/r9FP6EsyGB/HDMO";

/// A well-formed bcrypt hash at `cost` that no account has: an unknown email's password is
/// verified against it, so that check takes the same path as a real one (the same host call and
/// queue, the same cost), and what it answers is thrown away.
pub fn decoy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${DECOY_SALT_AND_CHECKSUM}")
}

/// The cost a stored bcrypt hash was made at (`$2b$10$…` is 10); `None` when it does not read
/// as one.
pub fn hash_cost(hash: &str) -> Option<u32> {
    let mut fields = hash.split('$');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(""), Some("2a" | "2b" | "2x" | "2y"), Some(cost)) if cost.len() == 2 => cost.parse().ok(),
        _ => None,
    }
}

// Never print the clear text, even by accident in a debug log.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_bounds() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("exactly8").is_ok());
        assert!(Password::parse(&"x".repeat(72)).is_ok());
        assert!(Password::parse(&"x".repeat(73)).is_err());
        assert!(Password::unchecked("x".repeat(72)).could_have_been_set());
        assert!(!Password::unchecked("x".repeat(73)).could_have_been_set());
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in ["nul\u{0}inside", "tab\tinside", "line\nbreak!", "escape\u{1b}[0m", "c1\u{85}control"] {
            assert!(Password::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Password::parse("spaces are fine, ünïcode too").is_ok());
    }

    #[test]
    fn debug_output_hides_clear_text() {
        assert_eq!(format!("{:?}", Password::parse("correct horse").unwrap()), "Password(***)");
    }

    #[test]
    fn the_decoy_is_a_hash_at_the_asked_cost() {
        for cost in 4..=MAX_BCRYPT_COST {
            let decoy = decoy_hash(cost);
            assert_eq!(decoy.len(), 60, "bcrypt hashes are 60 characters");
            assert_eq!(hash_cost(&decoy), Some(cost));
        }
        assert_eq!(hash_cost("$2b$12$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u"), Some(12));
        assert_eq!(hash_cost("not a hash"), None);
        assert_eq!(hash_cost("$2b$1$x"), None);
    }

    #[test]
    fn bcrypt_cost_defaults_and_bounds() {
        assert_eq!(parse_bcrypt_cost(None), Ok(DEFAULT_BCRYPT_COST));
        assert_eq!(parse_bcrypt_cost(Some("12")), Ok(12));
        assert!(parse_bcrypt_cost(Some("3")).is_err());
        assert!(parse_bcrypt_cost(Some("15")).is_err());
        assert!(parse_bcrypt_cost(Some("ten")).is_err());
    }
}
