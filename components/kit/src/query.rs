//! Query strings (`application/x-www-form-urlencoded`), decoded with `percent-encoding`.

use percent_encoding::percent_decode_str;

use crate::problem::FieldError;

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. `None`
/// for a broken escape (`%zz`, `%4`) or bytes that are not UTF-8.
pub fn percent_decode(raw: &str) -> Option<String> {
    // percent-encoding passes broken escapes through as text; the services refuse them.
    let bytes = raw.as_bytes();
    let escapes_complete = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'%')
        .all(|(i, _)| bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if !escapes_complete {
        return None;
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().ok().map(|text| text.into_owned())
}

/// The decoded `key=value` pairs of a query string, in order. A key that does not decode is
/// kept as it was sent; a value that does not decode is `None`.
pub fn pairs(query: &str) -> Vec<(String, Option<String>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key).unwrap_or_else(|| key.to_owned()), percent_decode(value))
        })
        .collect()
}

/// Reads every parameter of `query` with `read(key, value, errors)`; a value that does not
/// decode is an error on its key. `Err` lists every problem, so the client can fix all at once.
pub fn read_params(
    query: &str,
    mut read: impl FnMut(&str, String, &mut Vec<FieldError>),
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (key, value) in pairs(query) {
        match value {
            Some(value) => read(&key, value, &mut errors),
            None => errors.push(FieldError::new(&key, "is not valid percent-encoded UTF-8")),
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_refuses_broken_escapes() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn an_escaped_plus_stays_a_plus() {
        assert_eq!(percent_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(percent_decode("100%25").as_deref(), Some("100%"));
    }

    #[test]
    fn pairs_keep_order_and_flag_bad_values() {
        let parsed = pairs("a=1&b=%zz&&c");
        assert_eq!(parsed, vec![("a".into(), Some("1".into())), ("b".into(), None), ("c".into(), Some(String::new()))]);
    }

    #[test]
    fn read_params_collects_every_problem() {
        let mut seen = Vec::new();
        let errors = read_params("a=1&b=%zz&c=x", |key, value, errors| {
            seen.push(format!("{key}={value}"));
            if key == "c" {
                errors.push(FieldError::new(key, "is not a known query parameter"));
            }
        })
        .unwrap_err();
        assert_eq!(seen, ["a=1", "c=x"]);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["b", "c"]);
        assert_eq!(errors[0].message, "is not valid percent-encoded UTF-8");
    }
}
