//! A fresh token key pair as JSON, for benchmark runs: auth signs with `signing_key`; users
//! (and the native baseline) verify with `public_key`. With `--sign SIGNING_KEY --sub USER_ID`,
//! instead an access token for that user (role `user`, valid for an hour), signed the way auth
//! signs them, so a bench scenario can call users without running auth.

use clap::Parser;
use skiff::capability::crypto::token::{Claims, Issuer, Role};

#[derive(Parser)]
struct Args {
    /// Sign a token with this signing key (base64) instead of making a key pair.
    #[arg(long, requires = "sub")]
    sign: Option<String>,
    /// The user id the token is for.
    #[arg(long)]
    sub: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(signing_key), Some(sub)) = (args.sign, args.sub) {
        let issuer = Issuer::from_base64(&signing_key).map_err(anyhow::Error::msg)?;
        let now = chrono::Utc::now().timestamp();
        // 15 minutes, auth's access-token lifetime: hosts refuse a longer one (--token-max-lifetime-secs).
        let claims = Claims { sub, role: Role::User, iat: now, exp: now + 900, jti: uuid::Uuid::new_v4().to_string() };
        println!("{}", serde_json::json!({"access_token": issuer.sign(&claims)}));
        return Ok(());
    }
    let (signing_key, public_key) = skiff::launch::generate_token_keys()?;
    println!("{}", serde_json::json!({"signing_key": signing_key, "public_key": public_key}));
    Ok(())
}
