//! Config parsing: YAML, durations, `${VAR}` substitution and the whole compile
//! (the config's own checks and every part parsed, as `keygate check` runs them). Never a
//! panic; a config that parses is valid (a second parse of the same text agrees).
#![no_main]

use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("8080".into()),
        "SECRET" => Some("s3cr3t-value".into()),
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${PORT}".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let compile = || {
        keygate::config::draft(text, lookup).and_then(|draft| {
            keygate::app::compile::compile(
                draft,
                std::sync::Arc::new(keygate::clock::SystemClock),
                keygate::app::compile::Issuer::FromConfig,
            )
        })
    };
    let first = compile();
    let second = compile();
    assert_eq!(first.is_ok(), second.is_ok(), "parsing is deterministic");
    if let Err(e) = first {
        let _ = e.to_string();
    }
    if let Some(rest) = text.strip_prefix("duration:") {
        if let Ok(d) = keygate::domain::duration::parse_duration(rest) {
            let printed = keygate::domain::duration::Dur(d).to_string();
            assert_eq!(
                keygate::domain::duration::parse_duration(&printed),
                Ok(d),
                "a duration prints back to itself"
            );
        }
    }
});
