//! Random (version 4) UUIDs in their canonical text form.

/// Builds a version 4 UUID from 16 random bytes.
pub fn from_random_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Returns the canonical lower-case form if `text` is a UUID, else `None`.
pub fn parse(text: &str) -> Option<String> {
    let valid = text.len() == 36
        && text.char_indices().all(
            |(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() }
            },
        );
    valid.then(|| text.to_ascii_lowercase())
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
    }
}
