//! The format of issued keys (`api_keys.format`, docs/configuration.md, API keys): a
//! template of literal text and the placeholders `{prefix}`, `{env}`, `{random:N}` and
//! `{checksum}`.
//!
//! The default, `{prefix}_sk_{env}_{random:32}{checksum}`, is keygate's own format
//! (`kg_sk_live_…`). A presented key is matched against the template without any
//! allocation: literal text, `live`/`test`, N base62 characters, and the 6-character
//! checksum (base62 CRC-32 of everything before it). A key that fits the shape with a
//! wrong checksum is refused before any lookup — unless it starts with one of
//! `accept_prefixes`, which always means a lookup by hash.

use super::api_key::{checksum, KeyShape, NewKey, CHECKSUM_LEN, MAX_KEY_LEN};
use crate::domain::id::random_base62;
use crate::domain::Environment;
#[cfg(test)]
use crate::domain::KeyHash;

/// The format keys had before `api_keys.format` existed; still the default.
pub const DEFAULT_FORMAT: &str = "{prefix}_sk_{env}_{random:32}{checksum}";

/// Fewest random characters a format may have: 22 base62 characters are 131 bits.
pub const MIN_RANDOM: usize = 22;

/// Most random characters a format may have.
pub const MAX_RANDOM: usize = 128;

/// A new key in keygate's default format (`{prefix}_sk_{env}_…`), for tests and
/// tools; the services issue through the configured [`KeyFormat`].
pub fn generate(prefix: &str, env: Environment) -> NewKey {
    KeyFormat::parse(DEFAULT_FORMAT, prefix, &[])
        .unwrap_or_default()
        .generate(env)
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Text that every key carries as is (`{prefix}` is folded into it).
    Literal(Box<str>),
    /// `live` or `test`.
    Env,
    /// This many base62 characters from the OS random source.
    Random(usize),
    /// [`CHECKSUM_LEN`] base62 characters of CRC-32 over everything before it.
    Checksum,
}

/// The key format in force: the issuing template and the prefixes of imported keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    parts: Box<[Part]>,
    /// Length of every key the template makes, `{env}` counted as 4.
    len: usize,
    accept_prefixes: Box<[Box<str>]>,
}

/// A problem with a format template, for `keygate check` (path `api_keys.format`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatProblem(pub String);

impl Default for KeyFormat {
    /// keygate's own format with the default prefix `kg` and no accepted prefixes.
    fn default() -> Self {
        Self::parse(DEFAULT_FORMAT, "kg", &[]).unwrap_or_else(|_| KeyFormat {
            parts: Box::new([]),
            len: 0,
            accept_prefixes: Box::new([]),
        })
    }
}

impl KeyFormat {
    /// The format `api_keys:` asks for: `format` (or [`DEFAULT_FORMAT`]) with its
    /// prefix and accepted prefixes. The one parse of the setting; every problem is
    /// returned, none is papered over with a default.
    pub fn from_config(a: &crate::config::ApiKeysConfig) -> Result<Self, Vec<FormatProblem>> {
        Self::parse(
            a.format.as_deref().unwrap_or(DEFAULT_FORMAT),
            &a.prefix,
            &a.accept_prefixes,
        )
    }
}

fn url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

impl KeyFormat {
    /// Parses `template`, with `{prefix}` standing for `prefix`; keys starting with one
    /// of `accept_prefixes` are looked up by hash whatever their shape. Every problem
    /// is returned, not only the first.
    pub fn parse(
        template: &str,
        prefix: &str,
        accept_prefixes: &[String],
    ) -> Result<Self, Vec<FormatProblem>> {
        let mut problems = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        let flush = |literal: &mut String, parts: &mut Vec<Part>| {
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(literal).into()));
            }
        };
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let Some(end) = rest.find('}') else {
                        problems.push(FormatProblem(format!(
                            "`{rest}` opens a placeholder that is never closed"
                        )));
                        break;
                    };
                    let name = &rest[1..end];
                    rest = &rest[end + 1..];
                    match name.split_once(':') {
                        None if name == "prefix" => literal.push_str(prefix),
                        None if name == "env" => {
                            flush(&mut literal, &mut parts);
                            parts.push(Part::Env);
                        }
                        None if name == "checksum" => {
                            flush(&mut literal, &mut parts);
                            parts.push(Part::Checksum);
                        }
                        Some(("random", n)) => match n.parse::<usize>() {
                            Ok(n) if (MIN_RANDOM..=MAX_RANDOM).contains(&n) => {
                                flush(&mut literal, &mut parts);
                                parts.push(Part::Random(n));
                            }
                            Ok(n) if n < MIN_RANDOM => problems.push(FormatProblem(format!(
                                "{{random:{n}}} is too short: at least {MIN_RANDOM} characters (128 bits) are needed"
                            ))),
                            _ => problems.push(FormatProblem(format!(
                                "{{random:{n}}}: N must be a number from {MIN_RANDOM} to {MAX_RANDOM}"
                            ))),
                        },
                        _ => problems.push(FormatProblem(format!(
                            "unknown placeholder `{{{name}}}` (use {{prefix}}, {{env}}, {{random:N}} or {{checksum}})"
                        ))),
                    }
                }
                '}' => {
                    problems.push(FormatProblem("`}` without a `{` before it".to_string()));
                    rest = &rest[1..];
                }
                c => {
                    if !c.is_ascii() || !url_safe(c as u8) {
                        problems.push(FormatProblem(format!(
                            "`{c}` is not URL-safe: literal text may hold letters, digits, `-`, `_`, `.` and `~`"
                        )));
                    }
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        flush(&mut literal, &mut parts);
        let count = |f: fn(&Part) -> bool| parts.iter().filter(|p| f(p)).count();
        let randoms = count(|p| matches!(p, Part::Random(_)));
        if randoms != 1 && !problems.iter().any(|p| p.0.contains("{random:")) {
            problems.push(FormatProblem(format!(
                "needs exactly one {{random:N}}, found {randoms}"
            )));
        }
        if count(|p| matches!(p, Part::Env)) > 1 {
            problems.push(FormatProblem("{env} may appear at most once".into()));
        }
        let sums = count(|p| matches!(p, Part::Checksum));
        if sums > 1 || (sums == 1 && parts.last() != Some(&Part::Checksum)) {
            problems.push(FormatProblem(
                "{checksum} may appear once, at the very end".into(),
            ));
        }
        let len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                Part::Env => 4,
                Part::Random(n) => *n,
                Part::Checksum => CHECKSUM_LEN,
            })
            .sum();
        if len > MAX_KEY_LEN {
            problems.push(FormatProblem(format!(
                "makes keys of {len} characters; at most {MAX_KEY_LEN} are accepted"
            )));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(KeyFormat {
            parts: parts.into(),
            len,
            accept_prefixes: accept_prefixes.iter().map(|p| p.as_str().into()).collect(),
        })
    }

    /// The prefixes of keys always looked up by hash (`api_keys.accept_prefixes`).
    pub fn accept_prefixes(&self) -> &[Box<str>] {
        &self.accept_prefixes
    }

    /// What `key` looks like, decided without any lookup. A key starting with an
    /// accepted prefix is [`KeyShape::Imported`] even when it also fits the template.
    pub fn classify(&self, key: &str) -> KeyShape {
        let bytes = key.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
            return KeyShape::Malformed;
        }
        if self
            .accept_prefixes
            .iter()
            .any(|p| bytes.len() > p.len() && bytes.starts_with(p.as_bytes()))
        {
            return if bytes.iter().all(u8::is_ascii_graphic) {
                KeyShape::Imported
            } else {
                KeyShape::Malformed
            };
        }
        // The template checks every byte itself (literal text, `live`/`test`, base62).
        match self.matches(bytes) {
            Some(env) => KeyShape::Issued(env),
            None => KeyShape::Malformed,
        }
    }

    /// The environment of `key` if it fits the template, checksum included.
    fn matches(&self, key: &[u8]) -> Option<Environment> {
        if key.len() != self.len {
            return None;
        }
        let mut at = 0;
        let mut env = Environment::Live;
        for part in self.parts.iter() {
            let rest = &key[at..];
            match part {
                Part::Literal(text) => {
                    if !rest.starts_with(text.as_bytes()) {
                        return None;
                    }
                    at += text.len();
                }
                Part::Env => {
                    env = match rest.get(..4)? {
                        b"live" => Environment::Live,
                        b"test" => Environment::Test,
                        _ => return None,
                    };
                    at += 4;
                }
                Part::Random(n) => {
                    if !rest.get(..*n)?.iter().all(u8::is_ascii_alphanumeric) {
                        return None;
                    }
                    at += n;
                }
                Part::Checksum => {
                    if rest != checksum(&key[..at]) {
                        return None;
                    }
                    at += CHECKSUM_LEN;
                }
            }
        }
        (at == key.len()).then_some(env)
    }

    /// A new key in this format for `env`, from the OS random source. Its visible
    /// prefix is everything before the random part (`ak_live_`).
    pub fn generate(&self, env: Environment) -> NewKey {
        let mut key = String::with_capacity(self.len);
        let mut visible = None;
        for part in self.parts.iter() {
            match part {
                Part::Literal(text) => key.push_str(text),
                Part::Env => key.push_str(env.as_str()),
                Part::Random(n) => {
                    visible.get_or_insert_with(|| key.clone());
                    key.push_str(&random_base62(*n));
                }
                Part::Checksum => {
                    let sum = checksum(key.as_bytes());
                    key.push_str(std::str::from_utf8(&sum).unwrap_or("000000"));
                }
            }
        }
        NewKey::new(key, visible.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed's documented format (docs/configuration.md, API keys), with what its
    /// keys look like.
    const SEEDS: [(&str, &str, usize); 4] = [
        (DEFAULT_FORMAT, "kg_sk_live_", 11 + 32 + 6),
        ("altx_sk_{random:32}{checksum}", "altx_sk_", 8 + 32 + 6),
        ("ak_{env}_{random:26}{checksum}", "ak_live_", 8 + 32),
        (
            "altus4_sk_{env}_{random:32}{checksum}",
            "altus4_sk_live_",
            15 + 32 + 6,
        ),
    ];

    fn format(template: &str) -> KeyFormat {
        KeyFormat::parse(template, "kg", &[]).unwrap()
    }

    #[test]
    fn every_seed_format_is_issued_parsed_and_checksummed() {
        for (template, visible, len) in SEEDS {
            let f = format(template);
            let key = f.generate(Environment::Live);
            assert!(
                key.plaintext.starts_with(visible),
                "{template}: {}",
                key.prefix
            );
            assert_eq!(key.prefix, visible, "{template}");
            assert_eq!(key.plaintext.len(), len, "{template}");
            assert_eq!(key.hash, KeyHash::of(&key.plaintext));
            assert_eq!(
                f.classify(&key.plaintext),
                KeyShape::Issued(Environment::Live),
                "{template}"
            );
            // One changed character anywhere in the random part or the checksum.
            for i in visible.len()..key.plaintext.len() {
                let mut bytes = key.plaintext.clone().into_bytes();
                bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
                let mangled = String::from_utf8(bytes).unwrap();
                assert_eq!(
                    f.classify(&mangled),
                    KeyShape::Malformed,
                    "{template} at {i}"
                );
            }
            // Too short, too long, another prefix.
            let k = &key.plaintext;
            for bad in [
                &k[..k.len() - 1],
                &format!("{k}a"),
                &format!("x{}", &k[1..]),
            ] {
                assert_eq!(f.classify(bad), KeyShape::Malformed, "{template}: {bad}");
            }
        }
    }

    #[test]
    fn the_default_format_reproduces_the_keys_issued_before_it() {
        let f = KeyFormat::parse(DEFAULT_FORMAT, "acme", &[]).unwrap();
        let key = f.generate(Environment::Test);
        assert!(key.plaintext.starts_with("acme_sk_test_"));
        assert_eq!(
            f.classify(&key.plaintext),
            KeyShape::Issued(Environment::Test)
        );
        assert_eq!(
            KeyFormat::default().classify(&key.plaintext),
            KeyShape::Malformed
        );
        // A key minted by the code before templates existed (Python's copy of it in
        // benches/scale.sh computes the same checksum) still fits.
        let body = "kg_sk_live_0123456789abcdefghijABCDEFGHIJxy";
        let old = format!(
            "{body}{}",
            std::str::from_utf8(&checksum(body.as_bytes())).unwrap()
        );
        assert_eq!(
            KeyFormat::default().classify(&old),
            KeyShape::Issued(Environment::Live)
        );
    }

    #[test]
    fn env_is_taken_from_the_key_or_is_live() {
        let f = format("ak_{env}_{random:26}{checksum}");
        let t = f.generate(Environment::Test);
        assert!(t.plaintext.starts_with("ak_test_"));
        assert_eq!(
            f.classify(&t.plaintext),
            KeyShape::Issued(Environment::Test)
        );
        let g = format("altx_sk_{random:32}{checksum}");
        assert_eq!(
            g.classify(&g.generate(Environment::Test).plaintext),
            KeyShape::Issued(Environment::Live)
        );
    }

    #[test]
    fn an_accepted_prefix_always_means_a_lookup_by_hash() {
        let f = KeyFormat::parse(
            "ak_{env}_{random:26}{checksum}",
            "kg",
            &["ak_live_".to_string()],
        )
        .unwrap();
        // An old checksum-less key of the same shape, and a new one: both by hash.
        let old = format!("ak_live_{}", "a".repeat(32));
        assert_eq!(f.classify(&old), KeyShape::Imported);
        let new = f.generate(Environment::Live).into_plaintext();
        assert_eq!(f.classify(&new), KeyShape::Imported);
        assert_eq!(
            f.classify("ak_live_"),
            KeyShape::Malformed,
            "nothing after it"
        );
        // Dropping the prefix refuses invented keys again before any lookup.
        assert_eq!(
            format("ak_{env}_{random:26}{checksum}").classify(&old),
            KeyShape::Malformed
        );
    }

    #[test]
    fn a_format_without_checksum_admits_any_key_of_its_shape() {
        let f = format("legacy_{random:24}");
        assert_eq!(
            f.classify(&format!("legacy_{}", "Z".repeat(24))),
            KeyShape::Issued(Environment::Live)
        );
        assert_eq!(
            f.classify(&format!("legacy_{}-", "Z".repeat(23))),
            KeyShape::Malformed
        );
    }

    #[test]
    fn bad_templates_report_every_problem() {
        let problems = |t: &str| -> Vec<String> {
            KeyFormat::parse(t, "kg", &[])
                .unwrap_err()
                .into_iter()
                .map(|p| p.0)
                .collect()
        };
        let all = problems("a b_{env}{env}_{random:8}{checksum}x{nope}");
        assert!(
            all.iter().any(|p| p.contains("` ` is not URL-safe")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|p| p.contains("{env} may appear at most once")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|p| p.contains("{random:8} is too short")),
            "{all:?}"
        );
        assert!(all.iter().any(|p| p.contains("at the very end")), "{all:?}");
        assert!(
            all.iter()
                .any(|p| p.contains("unknown placeholder `{nope}`")),
            "{all:?}"
        );
        assert_eq!(
            problems("kg_{checksum}"),
            ["needs exactly one {random:N}, found 0"]
        );
        assert_eq!(
            problems("{random:22}{random:22}"),
            ["needs exactly one {random:N}, found 2"]
        );
        assert!(problems("kg_{random:x}")[0].contains("N must be a number"));
        assert!(problems("kg_{random:32")[0].contains("never closed"));
        assert!(problems("kg}_{random:32}")[0].contains("without a `{`"));
        assert!(problems("kg_ä{random:32}")[0].contains("not URL-safe"));
        assert!(problems(&format!("{}{{random:128}}", "a".repeat(200)))[0].contains("at most 256"));
        assert!(
            KeyFormat::parse("{random:22}", "kg", &[]).is_ok(),
            "22 is enough"
        );
    }

    /// Keygate's own format: generated keys, the checksum, what is refused before
    /// any lookup.
    mod default_format {
        use super::super::*;
        use crate::domain::KeyHash;

        fn classify(key: &str, prefix: &str, accept: &[String]) -> KeyShape {
            KeyFormat::parse(DEFAULT_FORMAT, prefix, accept)
                .unwrap()
                .classify(key)
        }

        #[test]
        fn generated_keys_have_the_documented_shape_and_verify() {
            let k = generate("kg", Environment::Live);
            assert!(k.plaintext.starts_with("kg_sk_live_"));
            assert_eq!(k.plaintext.len(), "kg_sk_live_".len() + 32 + CHECKSUM_LEN);
            assert_eq!(
                classify(&k.plaintext, "kg", &[]),
                KeyShape::Issued(Environment::Live)
            );
            assert_eq!(k.hash, KeyHash::of(&k.plaintext));
            let t = generate("acme", Environment::Test);
            assert_eq!(
                classify(&t.plaintext, "acme", &[]),
                KeyShape::Issued(Environment::Test)
            );
            assert_eq!(classify(&t.plaintext, "kg", &[]), KeyShape::Malformed);
        }

        #[test]
        fn a_single_changed_character_breaks_the_checksum() {
            let k = generate("kg", Environment::Live).into_plaintext();
            let mut bytes = k.clone().into_bytes();
            let i = "kg_sk_live_".len() + 3;
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(classify(&tampered, "kg", &[]), KeyShape::Malformed);
        }

        #[test]
        fn malformed_inputs_are_refused_before_lookup() {
            let long = "kg_sk_live_".to_string() + &"a".repeat(9000);
            for bad in [
                "",
                "kg_sk_live_short",
                "kg_sk_prod_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
                &long,
                "kg_sk_live_ä",
                "has space",
            ] {
                assert_eq!(classify(bad, "kg", &[]), KeyShape::Malformed, "{bad}");
            }
        }

        #[test]
        fn accepted_prefixes_admit_imported_keys() {
            let accept = vec!["ak_live_".to_string()];
            assert_eq!(
                classify("ak_live_whatever123", "kg", &accept),
                KeyShape::Imported
            );
            assert_eq!(classify("ak_live_", "kg", &accept), KeyShape::Malformed);
            assert_eq!(
                classify("zz_live_whatever123", "kg", &accept),
                KeyShape::Malformed
            );
        }
    }
}
