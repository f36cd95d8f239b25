//! JWT segmentation, header and claims parsing through the real verifier. The first
//! byte picks the mode: verify the input as a token as it is, or sign the input's
//! header and claims JSON with the configured HS256 secret first, so that claims
//! parsing (scopes, subject, tier, exp types) runs on arbitrary JSON too.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::auth::jwt::JwtVerifier;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SECRET: &str = "fuzzing-secret-fuzzing-secret-32b";

fn verifier() -> &'static (tokio::runtime::Runtime, JwtVerifier) {
    static V: OnceLock<(tokio::runtime::Runtime, JwtVerifier)> = OnceLock::new();
    V.get_or_init(|| {
        let yaml = format!(
            "upstream: {{ url: \"http://127.0.0.1:1\" }}\n\
             jwt:\n  enabled: true\n  algorithms: [HS256, RS256]\n  leeway: 30s\n  \
             keys:\n    - {{ kid: k1, alg: HS256, secret: \"{SECRET}\" }}\n  \
             claims: {{ subject: sub, scopes: scope, tier: tier, org: org }}\n\
             tiers: {{ free: {{ per_minute: 60 }} }}\ndefault_tier: free\n"
        );
        let config = keygate::config::parse(&yaml).expect("fuzz config is valid");
        let verifier = JwtVerifier::new(&config.jwt, 1024, None, std::sync::Arc::new(keygate::clock::SystemClock)).expect("verifier builds");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (rt, verifier)
    })
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("HS256 signs anything");
    format!("{signing_input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        // header JSON and claims JSON separated by the first 0 byte.
        let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let (header, claims) = rest.split_at(split);
        sign(header, claims.get(1..).unwrap_or_default())
    };
    let (rt, v) = verifier();
    let _ = rt.block_on(v.verify(&token));
});
