use super::*;
use crate::domain::duration::Dur;

const MINIMAL: &str =
    "upstream: { url: http://127.0.0.1:3000 }\ntiers: { free: { per_minute: 30 } }\n";

fn problems(text: &str) -> Vec<String> {
    match parse_with_env(text, |n| (n == "SET").then(|| "value".to_string())) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn a_minimal_config_gets_the_contract_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8080");
    assert_eq!(c.server.admin_listen, "127.0.0.1:9090");
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.cache.ttl, Dur::secs(30));
    assert_eq!(c.cache.negative_ttl, Dur::secs(5));
    assert_eq!(c.api_keys.sources, vec!["header:x-api-key", "bearer"]);
    assert_eq!(c.api_keys.prefix, "kg");
    assert_eq!(c.rate_limit.ip.per_minute, 600);
    assert_eq!(c.rate_limit.ip.failed_auth_per_minute, 30);
    assert_eq!(c.forward.headers.subject.as_deref(), Some("X-Auth-Subject"));
    assert_eq!(c.management.prefix, "/v1");
    assert_eq!(c.default_tier, "free");
    assert!(c.forward.strip_credentials);
}

#[test]
fn an_unknown_field_is_reported_at_its_own_path() {
    let p = problems("upstream: { url: http://x:1 }\ntiers: { free: { per_minuet: 30 } }\n");
    assert!(
        p.iter()
            .any(|p| p.starts_with("tiers.free.per_minuet: unknown field")),
        "{p:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "\
server: { listen: nowhere, colour: blue }
upstream: { url: ftp://x }
tiers:
  free: { per_minuet: 30 }
  pro: { per_minute: -1 }
routes:
  - { path: /a, auth: maybe }
  - { path: /b, scope: [x] }
bogus: 1
";
    let p = problems(text);
    for expected in [
        "server.colour: unknown field",
        "tiers.free.per_minuet: unknown field",
        "tiers.pro.per_minute",
        "routes[0].auth",
        "routes[1].scope: unknown field",
        "bogus: unknown field",
    ] {
        assert!(
            p.iter().any(|l| l.starts_with(expected)),
            "missing {expected} in {p:?}"
        );
    }
}

#[test]
fn semantic_problems_are_all_listed_with_paths() {
    let text = "\
server: { listen: 'nope', threads: 0 }
upstream: { url: 'ftp://x', connect_timeout: 0s }
tiers: { free: {} }
default_tier: gold
routes: [ { path: api, methods: [FETCH], auth: none, scopes: [a] } ]
jwt: { algorithms: [none] }
api_keys: { sources: [cookie], prefix: 'KG!' }
rate_limit: { backend: redis }
management: { prefix: 'v1/' }
";
    let p = problems(text);
    for expected in [
        "server.listen:",
        "server.threads:",
        "upstream.url:",
        "upstream.connect_timeout:",
        "tiers.free:",
        "default_tier:",
        "routes[0].path:",
        "routes[0].methods[0]:",
        "routes[0].scopes:",
        "jwt.algorithms[0]: `none` can never be enabled",
        "api_keys.prefix:",
        "rate_limit.redis_url:",
        "management.prefix:",
    ] {
        assert!(
            p.iter().any(|l| l.starts_with(expected)),
            "missing {expected} in {p:#?}"
        );
    }
}

#[test]
fn durations_and_env_variables_are_substituted() {
    let c = parse_with_env(
        "upstream: { url: '${URL}', read_timeout: 500ms }\ntiers: { free: { per_day: 5, block: 1m } }\n",
        |n| (n == "URL").then(|| "http://10.0.0.1:81".into()),
    )
    .unwrap();
    assert_eq!(c.upstream.url, "http://10.0.0.1:81");
    assert_eq!(c.upstream.read_timeout.get().as_millis(), 500);
    assert_eq!(c.tiers["free"].block, Dur::secs(60));
    let p = problems("upstream: { url: '${MISSING}' }\ntiers: { free: { per_day: 5 } }\n");
    assert!(p[0].contains("MISSING"), "{p:?}");
}

#[test]
fn bad_duration_and_missing_sections_are_named() {
    let p = problems("cache: { ttl: 30 }\n");
    assert!(
        p.iter().any(|l| l.starts_with("upstream: missing")),
        "{p:?}"
    );
    assert!(p.iter().any(|l| l.starts_with("tiers: missing")), "{p:?}");
    assert!(
        p.iter()
            .any(|l| l.starts_with("cache.ttl") && l.contains("missing unit")),
        "{p:?}"
    );
}

#[test]
fn non_mapping_and_broken_yaml_are_clear_errors() {
    assert!(problems("- a\n- b\n")[0].contains("mapping"));
    assert!(problems("a: [\n")[0].contains("invalid YAML"));
}

#[test]
fn the_portal_is_off_by_default_and_checked_when_on() {
    let c = parse(MINIMAL).unwrap();
    assert!(!c.portal.enabled);
    assert_eq!(c.portal.prefix, "/portal");
    assert_eq!(c.portal.title, "keygate");
    assert_eq!(c.portal.session_ttl, Dur::secs(12 * 3600));
    assert_eq!(c.portal.tier, None);
    let p = problems(&format!(
        "{MINIMAL}store: {{ kind: file, file: keys.yaml }}\n\
         portal: {{ enabled: true, prefix: /v1/portal, tier: gold, session_ttl: 500ms, title: \"\" }}\n"
    ));
    for expected in [
        "portal.prefix: `/v1/portal` overlaps management.prefix `/v1`",
        "portal.tier: `gold` is not a configured tier",
        "portal.session_ttl: must be between 1s and 90d",
        "portal.title: must be 1-100 characters",
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(expected)),
            "{expected}: {p:?}"
        );
    }
    assert!(
        problems(&format!("{MINIMAL}portal: {{ prefix: portal/ }}\n"))
            .iter()
            .any(|p| p.starts_with("portal.prefix: must look like /portal"))
    );
    assert!(problems(&format!("{MINIMAL}portal: {{ enabled: true }}\n")).is_empty());
}

#[test]
fn http2_settings_default_off_and_protocols_must_fit_their_urls() {
    let c = parse(MINIMAL).unwrap();
    assert!(!c.server.h2c);
    assert_eq!(c.server.h2_max_concurrent_streams, 100);
    assert_eq!(c.upstream.protocol, UpstreamProtocol::H1);
    assert_eq!(c.upstream.sandbox_protocol, None);
    let ok = "server: { h2c: true }\nupstream: { url: 'https://api.internal', protocol: h2, \
              sandbox_url: 'http://sandbox:50051', sandbox_protocol: h2c }\n\
              tiers: { free: { per_minute: 30 } }\n";
    assert_eq!(problems(ok), Vec::<String>::new());
    let bad = "upstream: { url: 'http://api', protocol: h2, sandbox_url: 'http://sb' }\n\
               server: { h2_max_concurrent_streams: 0 }\ntiers: { free: { per_minute: 30 } }\n";
    let p = problems(bad);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains("server.h2_max_concurrent_streams"), "{p:?}");
    assert!(
        p.iter()
            .any(|l| l.starts_with("upstream.protocol:")
                && l.contains("use an https:// URL, or `h2c`")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("upstream.protocol:") && l.contains("for upstream.sandbox_url")),
        "{p:?}"
    );
    let p = problems(
        "upstream: { url: 'https://api', protocol: h2c }\ntiers: { free: { per_minute: 30 } }\n",
    );
    assert!(p[0].contains("`h2c` is cleartext HTTP/2"), "{p:?}");
    let p = problems(
        "upstream: { url: 'http://api', protocol: http3 }\ntiers: { free: { per_minute: 30 } }\n",
    );
    assert!(p[0].starts_with("upstream.protocol"), "{p:?}");
    assert!(p[0].contains("h2c"), "the choices are named: {p:?}");
}

#[test]
fn a_missing_variable_does_not_hide_the_other_problems() {
    let p = problems(
        "upstream: { url: \"${UNSET_UPSTREAM}\" }\ntiers: { free: { per_minuet: 1 } }\nserver: { colour: red }\n",
    );
    // The variable, the two other mistakes, and what the empty value makes of the URL.
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].contains("`UNSET_UPSTREAM` is not set"), "{p:?}");
    assert!(
        p.iter().any(|p| p.starts_with("tiers.free.per_minuet")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.starts_with("server.colour")), "{p:?}");
    assert!(p.iter().any(|p| p.starts_with("upstream.url")), "{p:?}");
}
