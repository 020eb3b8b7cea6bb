//! An email address, normalised so that one visible address is one account: surrounding space,
//! case, Unicode composition and the domain's spelling make no second account, and characters
//! that cannot be seen are refused.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A syntactically plausible email address: trimmed, in Unicode NFC, the local part lower-cased,
/// the domain in its IDNA ASCII form (lower case, `xn--` labels for Unicode ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

const MAX_LEN: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email: String = raw.trim().to_lowercase().nfc().collect();
        if email.is_empty() {
            return Err("must not be empty".into());
        }
        if email.chars().any(is_invisible) {
            return Err("must not contain invisible, control or format characters".into());
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must contain '@'".into());
        };
        if mixes_latin_with_look_alikes(local) || domain.split('.').any(mixes_latin_with_look_alikes) {
            return Err("must not mix Latin letters with Greek or Cyrillic ones in one part".into());
        }
        let plausible = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.');
        if !plausible {
            return Err("is not a valid email address".into());
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| "has a domain that is not a valid name".to_owned())?;
        let email = format!("{local}@{domain}");
        if email.len() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that show nothing, or nothing of their own: white space, controls, format
/// characters (zero-width space and joiners, bidi marks, soft hyphen, byte-order mark),
/// private-use, surrogate and unassigned code points.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::Unassigned
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::SpaceSeparator
        )
        // Shown as nothing although not format characters: the combining grapheme joiner,
        // variation selectors, Hangul fillers.
        || matches!(c, '\u{034F}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// Whether `part` has Latin letters together with Greek or Cyrillic ones, the scripts whose
/// letters pass for Latin ones (`а` for `a`).
fn mixes_latin_with_look_alikes(part: &str) -> bool {
    let latin = part.chars().any(|c| c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c));
    let look_alike = part.chars().any(|c| {
        matches!(c, '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' | '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}')
    });
    latin && look_alike
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(Email::parse("  Ada@Example.ORG ").unwrap().as_str(), "ada@example.org");
    }

    #[test]
    fn one_visible_address_is_one_spelling() {
        // A decomposed accent (e + U+0301) is the composed é.
        assert_eq!(Email::parse("rene\u{301}@example.org").unwrap(), Email::parse("ren\u{e9}@example.org").unwrap());
        // The domain in any case or form is its IDNA ASCII form.
        assert_eq!(Email::parse("ada@B\u{fc}cher.DE").unwrap().as_str(), "ada@xn--bcher-kva.de");
        assert_eq!(Email::parse("ada@xn--bcher-kva.de").unwrap().as_str(), "ada@xn--bcher-kva.de");
        // Whole-script addresses stay possible.
        assert!(Email::parse("\u{430}\u{434}\u{430}@example.org").is_ok());
    }

    #[test]
    fn invisible_characters_and_look_alike_mixes_are_refused() {
        for bad in [
            "ad\u{200B}a@example.org",
            "ada\u{200D}@example.org",
            "ada@exa\u{200B}mple.org",
            "\u{FEFF}ada@example.org",
            "ada\u{AD}@example.org",
            "ada\u{202E}@example.org",
            "ada\u{34F}@example.org",
            "ada\u{FE0F}@example.org",
            "\u{430}da@example.org",
            "ada@ex\u{430}mple.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_what_cannot_be_an_address() {
        for bad in [
            "",
            "   ",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "a@b@c.org",
            "a da@x.org",
            "ada@.org",
            "ada@x.org.",
            "ada@exa mple.org",
            "ada@-x-.org\u{0}",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Email::parse(&format!("{}@x.org", "a".repeat(250))).is_err());
    }
}
