//! A name or surname as a person would write it.

/// Non-empty after trimming, at most 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

const MAX_CHARS: usize = 100;

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.chars().count() > MAX_CHARS {
            return Err(format!("must be at most {MAX_CHARS} characters"));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::PersonName;

    #[test]
    fn trims_and_keeps_unicode() {
        assert_eq!(PersonName::parse("  Zoë ").unwrap().as_str(), "Zoë");
    }

    #[test]
    fn refuses_empty_long_and_control() {
        assert!(PersonName::parse("  ").is_err());
        assert!(PersonName::parse(&"é".repeat(101)).is_err());
        assert!(PersonName::parse(&"é".repeat(100)).is_ok());
        assert!(PersonName::parse("a\u{0}b").is_err());
    }
}
