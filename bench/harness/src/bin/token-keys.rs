//! A fresh token key pair as JSON, for benchmark runs: auth signs with `signing_key`; users
//! (and the native baseline) verify with `public_key`.

fn main() -> anyhow::Result<()> {
    let (signing_key, public_key) = skiff::launch::generate_token_keys()?;
    println!("{}", serde_json::json!({"signing_key": signing_key, "public_key": public_key}));
    Ok(())
}
