//! Refresh tokens: the long-lived half of a session, kept in auth's database so they can be
//! rotated and revoked (access tokens are short-lived and cannot be).
//!
//! A login starts a *family*; every refresh spends the presented token and issues the next one
//! in the same family. A token is a random secret of 256 bits under an id; the database keeps
//! only the secret's SHA-256, so a copy of the table opens no session. Presenting a token that
//! was already spent means two parties hold the family (a stolen copy, or the client's retry
//! of a refresh whose answer it never got): the whole family is revoked and both must log in
//! again (OAuth 2.0 Security BCP, refresh token rotation).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use service_kit::throttle::bounded_setting;
use sha2::{Digest, Sha256};

/// Default refresh token lifetime: 14 days without a refresh and the session ends.
pub const DEFAULT_REFRESH_TTL_SECS: u32 = 14 * 86_400;

/// A refresh token as the client holds it: `<id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: String,
    secret: String,
}

impl RefreshToken {
    /// A new token under `id` with 32 random bytes as its secret.
    pub fn new(id: String, secret: [u8; 32]) -> Self {
        Self { id, secret: URL_SAFE_NO_PAD.encode(secret) }
    }

    /// Reads what a client sent; `None` for anything that cannot be a token (so it is
    /// answered like an unknown one, without a database query).
    pub fn parse(text: &str) -> Option<Self> {
        let (id, secret) = text.split_once('.')?;
        let id_ok = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let secret_ok = URL_SAFE_NO_PAD.decode(secret).is_ok_and(|bytes| bytes.len() == 32);
        (id_ok && secret_ok).then(|| Self { id: id.to_owned(), secret: secret.to_owned() })
    }

    /// What the client is given.
    pub fn to_text(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// What the database keeps: the SHA-256 of the secret, base64url. The secret has 256 bits
    /// of entropy, so a fast hash is enough (no salt, no bcrypt).
    pub fn secret_hash(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.secret.as_bytes()))
    }
}

/// A refresh token's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefresh {
    pub family: String,
    pub user_id: String,
    pub secret_hash: String,
    /// When the family's login happened (micros): a password change after it ends the family.
    pub family_started_at: i64,
    pub expires_at: i64,
    /// Set when the token was spent on a refresh.
    pub used_at: Option<i64>,
    /// Set when its family was revoked.
    pub revoked_at: Option<i64>,
}

/// What a presented refresh token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// Unspent, unexpired, unrevoked: it may be exchanged.
    Live,
    /// No such token, or the secret does not match.
    Unknown,
    Expired,
    /// Its family has been revoked (logout, reuse, password change, user deleted).
    Revoked,
    /// Already spent: whoever presents it, the family must be revoked.
    Reused,
}

/// Judges `presented` against its row at `now` (micros).
pub fn judge(stored: Option<&StoredRefresh>, presented: &RefreshToken, now: i64) -> Presented {
    let Some(stored) = stored.filter(|stored| stored.secret_hash == presented.secret_hash()) else {
        return Presented::Unknown;
    };
    if stored.revoked_at.is_some() {
        Presented::Revoked
    } else if stored.used_at.is_some() {
        Presented::Reused
    } else if stored.expires_at <= now {
        Presented::Expired
    } else {
        Presented::Live
    }
}

/// Whether the user's password changed after the family's login (micros): such a family is
/// over, whoever holds it.
pub fn outlived_by_password_change(family_started_at: i64, password_changed_at: Option<i64>) -> bool {
    password_changed_at.is_some_and(|changed| changed > family_started_at)
}

/// Refresh token lifetime from the `refresh_token_ttl_secs` setting: 5 min to 90 days.
pub fn refresh_ttl(raw: Option<&str>) -> Result<i64, String> {
    bounded_setting("refresh_token_ttl_secs", raw, DEFAULT_REFRESH_TTL_SECS, 300, 90 * 86_400).map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b6f6a5e-8a0c-4a3e-9f1e-2d9b7c4e5f60";

    fn token() -> RefreshToken {
        RefreshToken::new(ID.into(), [7; 32])
    }

    fn stored(token: &RefreshToken) -> StoredRefresh {
        StoredRefresh {
            family: "f".into(),
            user_id: "u".into(),
            secret_hash: token.secret_hash(),
            family_started_at: 100,
            expires_at: 1_000,
            used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_token_reads_back_from_its_text() {
        let token = token();
        let text = token.to_text();
        assert!(text.starts_with(ID) && text.len() == 36 + 1 + 43, "{text}");
        assert_eq!(RefreshToken::parse(&text), Some(token));
        for garbage in ["", ".", "abc.def", &format!("{ID}.short"), ID, &format!("x{}", &text[1..])] {
            assert_eq!(RefreshToken::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn only_the_secrets_hash_is_kept() {
        let token = token();
        let hash = token.secret_hash();
        assert_ne!(hash, token.secret);
        assert_ne!(hash, RefreshToken::new(ID.into(), [8; 32]).secret_hash());
        assert_eq!(hash, RefreshToken::parse(&token.to_text()).unwrap().secret_hash());
    }

    #[test]
    fn a_token_is_live_until_spent_revoked_or_expired() {
        let token = token();
        let row = stored(&token);
        assert_eq!(judge(Some(&row), &token, 999), Presented::Live);
        assert_eq!(judge(Some(&row), &token, 1_000), Presented::Expired);
        assert_eq!(judge(None, &token, 500), Presented::Unknown);
        // The right id with another secret is unknown, not a reuse: guessing ids revokes nothing.
        let other_secret = RefreshToken::new(ID.into(), [9; 32]);
        assert_eq!(judge(Some(&row), &other_secret, 500), Presented::Unknown);
        let spent = StoredRefresh { used_at: Some(400), ..row.clone() };
        assert_eq!(judge(Some(&spent), &token, 500), Presented::Reused);
        // Revoked wins over spent and expired: nothing more to revoke.
        let revoked = StoredRefresh { revoked_at: Some(450), ..spent };
        assert_eq!(judge(Some(&revoked), &token, 5_000), Presented::Revoked);
    }

    #[test]
    fn a_password_change_after_the_login_ends_the_family() {
        assert!(!outlived_by_password_change(100, None));
        assert!(!outlived_by_password_change(100, Some(99)));
        assert!(!outlived_by_password_change(100, Some(100)));
        assert!(outlived_by_password_change(100, Some(101)));
    }

    #[test]
    fn refresh_ttl_bounds() {
        assert_eq!(refresh_ttl(None), Ok(i64::from(DEFAULT_REFRESH_TTL_SECS)));
        assert_eq!(refresh_ttl(Some("3600")), Ok(3600));
        assert!(refresh_ttl(Some("10")).is_err());
        assert!(refresh_ttl(Some("99999999")).is_err());
    }
}
