//! A password in clear text exists only here, between parsing and hashing.

use std::fmt;

/// A candidate password: 8 to 72 bytes (bcrypt reads no further than 72, so longer ones are
/// refused rather than silently cut).
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
        Ok(Self(raw.to_owned()))
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
    }

    #[test]
    fn debug_output_hides_clear_text() {
        assert_eq!(format!("{:?}", Password::parse("correct horse").unwrap()), "Password(***)");
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
