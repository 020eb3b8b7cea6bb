//! Random (version 4) UUIDs in their canonical text form, through the `uuid` crate.

use uuid::{Builder, Uuid};

/// Builds a version 4 UUID from 16 random bytes.
pub fn from_random_bytes(bytes: [u8; 16]) -> String {
    Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
}

/// Returns the canonical lower-case form if `text` is a hyphenated UUID, else `None`.
pub fn parse(text: &str) -> Option<String> {
    // `Uuid::try_parse` also takes the simple, braced and URN forms; ids in paths are hyphenated.
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok().map(|id| id.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_version_and_variant() {
        let id = from_random_bytes([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(parse(&id), Some(id.clone()));
    }

    #[test]
    fn parse_refuses_non_uuids() {
        assert_eq!(
            parse("ABCDEF00-0000-4000-8000-000000000000").as_deref(),
            Some("abcdef00-0000-4000-8000-000000000000")
        );
        assert_eq!(parse("not-a-uuid"), None);
        assert_eq!(parse("abcdef00x0000-4000-8000-000000000000"), None);
        assert_eq!(parse("abcdef00-0000-4000-8000-00000000000g"), None);
        assert_eq!(parse("abcdef00000040008000000000000000"), None, "simple form");
        assert_eq!(parse("{abcdef00-0000-4000-8000-000000000000}"), None, "braced form");
    }
}
