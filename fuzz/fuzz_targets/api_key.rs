//! API-key format and checksum parsing, and key-hash parsing: never a panic; a key
//! classified as issued has the issued shape; a parsed hash prints back the same.
#![no_main]

use keygate::auth::api_key::{classify, KeyShape};
use keygate::domain::KeyHash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = ["sk_".to_string(), "legacy-".to_string()];
    if let KeyShape::Issued(env) = classify(text, "kg", &accepted) {
        let prefix = format!("kg_sk_{}_", env.as_str());
        assert!(text.starts_with(&prefix), "issued shape without its prefix");
    }
    let hash = KeyHash::of(text);
    assert_eq!(KeyHash::parse(&hash.to_hex()), Some(hash));
    if let Some(parsed) = KeyHash::parse(text) {
        assert!(parsed.to_hex().eq_ignore_ascii_case(text.trim()));
    }
});
