//! Any bytes as a bearer token: verification must refuse garbage without panicking, and must
//! never accept a token it did not see signed.
#![no_main]

// The host's token module on its own: it uses nothing of the host but these dependencies, and
// building the whole host (wasmtime, sqlx) under the fuzzer's instrumentation would take far
// longer than the fuzzing itself.
#[path = "../../host/src/capability/crypto/token.rs"]
#[allow(dead_code)]
mod token;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use token::{Verifier, public_key_of};

const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| Verifier::from_base64(&public_key_of(SEED).expect("seed")).expect("key"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        // Random input cannot carry a valid Ed25519 signature by this key.
        assert!(verifier().verify(token, 1_800_000_000).is_err());
    }
});
