//! An optional phone number on the profile.

/// Digits with an optional leading `+` and spaces, dashes or parentheses between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let phone = raw.trim();
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let allowed = phone
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')') || (c == '+' && i == 0));
        if !allowed || !(5..=20).contains(&digits) {
            return Err("must be a phone number: 5 to 20 digits, optionally starting with '+'".into());
        }
        Ok(Self(phone.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Phone;

    #[test]
    fn accepts_common_notations() {
        for good in ["+44 20 7946 0958", "(555) 123-4567", "12345"] {
            assert!(Phone::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn refuses_letters_and_misplaced_plus() {
        for bad in ["call me", "12+345678", "1234", ""] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }
}
