//! API-key formats, classification and key-hash parsing: never a panic. A key
//! classified as issued has the issued shape; any template that parses issues keys
//! that it classifies as issued again; a parsed hash prints back the same.
#![no_main]

use keygate::auth::api_key::KeyShape;
use keygate::auth::key_format::KeyFormat;
use keygate::auth::key_format::DEFAULT_FORMAT;
use keygate::domain::KeyHash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = ["sk_".to_string(), "legacy-".to_string()];
    let Ok(default) = KeyFormat::parse(DEFAULT_FORMAT, "kg", &accepted) else {
        panic!("the default format parses");
    };
    if let KeyShape::Issued(env) = default.classify(text) {
        let prefix = format!("kg_sk_{}_", env.as_str());
        assert!(text.starts_with(&prefix), "issued shape without its prefix");
    }
    // The input as a template: refused with reasons, or a format whose own keys
    // pass its own check.
    match KeyFormat::parse(text, "kg", &[]) {
        Ok(format) => {
            let key = format.generate(keygate::domain::Environment::Test).into_plaintext();
            assert!(
                matches!(format.classify(&key), KeyShape::Issued(_)),
                "{text:?} issued {key:?}, which it does not accept"
            );
        }
        Err(problems) => assert!(!problems.is_empty(), "refused without a reason"),
    }
    let hash = KeyHash::of(text);
    assert_eq!(KeyHash::parse(&hash.to_hex()), Some(hash));
    if let Some(parsed) = KeyHash::parse(text) {
        assert!(parsed.to_hex().eq_ignore_ascii_case(text.trim()));
    }
});
