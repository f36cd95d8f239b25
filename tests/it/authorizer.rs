//! The authorizer (docs/authorizer.md), black-box: forward-auth questions as
//! nginx, Traefik, Caddy and Envoy's HTTP service ask them, and Envoy's ext_authz
//! `Check` asked by a grpcio client built from Envoy's official protos
//! (`tests/grpc/ext_authz.py`). Every contract decision, the upstream's header
//! changes, the client's headers; descriptions believed only from trusted peers.

use crate::common::jwt_support::python;
use crate::common::{free_port, json_through, metric_sum, start_upstream, Keygate};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const POLICY: &str = r#"
tiers:
  free: { per_minute: 4 }
default_tier: free
api_keys:
  sources: ["header:x-api-key", "bearer", "query:api_key"]
routes:
  - { name: health, path: /health, auth: none }
  - { name: search, path: /api/search, scopes: [search], cost: 1 }
  - { name: api, path: /api/* }
"#;

/// A keygate with an authorizer on its own port, trusting `trusted`.
fn start(trusted: &str) -> (Keygate, u16) {
    let port = free_port();
    let rt = tokio::runtime::Handle::current();
    let up = tokio::task::block_in_place(|| rt.block_on(start_upstream()));
    let kg = Keygate::start(
        up,
        &format!(
            "{POLICY}authorizer: {{ listen: \"127.0.0.1:{port}\", trust_forwarded_from: [{trusted}] }}\n"
        ),
    );
    wait_listening(port);
    (kg, port)
}

fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the authorizer never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the forward-auth door at `port` about `method path` with `headers`.
async fn ask(port: u16, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/auth"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_with_the_identity_and_refuses_with_the_contracts_answer() {
    let (kg, port) = start("127.0.0.1/32");
    let (key_id, key) = kg.create_key(&["--scopes", "search", "--credits", "1"]);
    let traefik = |uri: &'static str| {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", uri),
            ("X-Forwarded-Host", "api.example.com"),
            ("X-Forwarded-For", "198.51.100.7"),
        ]
    };

    // Allowed: 200, no body, the identity for the upstream, the limits for the client.
    let mut h = traefik("/api/things");
    h.push(("X-API-Key", &key));
    h.push(("X-Auth-Tier", "enterprise")); // spoofed by the client
    let ok = ask(port, &h).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "x-auth-key-id").as_deref(),
        Some(key_id.as_str())
    );
    assert_eq!(header(&ok, "x-auth-tier").as_deref(), Some("free"));
    assert_eq!(header(&ok, "x-auth-method").as_deref(), Some("api_key"));
    assert_eq!(header(&ok, "x-ratelimit-limit").as_deref(), Some("4"));
    assert_eq!(header(&ok, "x-ratelimit-remaining").as_deref(), Some("3"));
    assert!(header(&ok, "x-request-id").is_some());
    let removed = header(&ok, "x-envoy-auth-headers-to-remove").unwrap();
    assert!(removed.contains("x-api-key"), "{removed}");
    assert!(ok.bytes().await.unwrap().is_empty());

    // No credential: 401 with the contract's body and WWW-Authenticate.
    let none = ask(port, &traefik("/api/things")).await;
    assert_eq!(none.status(), 401);
    assert!(header(&none, "www-authenticate").is_some());
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");

    // A route's scope and its cost: the first search debits the one credit...
    let mut h = traefik("/api/search");
    h.push(("X-API-Key", &key));
    assert_eq!(ask(port, &h).await.status(), 200);
    // ...the second has none left: 402.
    let broke = ask(port, &h).await;
    assert_eq!(broke.status(), 402);
    let body: Value = broke.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_credits", "{body}");

    // The fifth request in the minute (the refused search counted): 429 with
    // Retry-After and the limits.
    let mut h = traefik("/api/things");
    h.push(("X-API-Key", &key));
    assert_eq!(ask(port, &h).await.status(), 200);
    let limited = ask(port, &h).await;
    assert_eq!(limited.status(), 429);
    assert!(header(&limited, "retry-after").is_some());
    assert_eq!(
        header(&limited, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_exceeded");

    // nginx asks for the body in a header too (it drops an auth answer's body).
    let nginx = ask(
        port,
        &[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/api/things"),
            ("X-Keygate-Body-As-Header", "1"),
        ],
    )
    .await;
    assert_eq!(nginx.status(), 401);
    let in_header: Value =
        serde_json::from_str(&header(&nginx, "x-keygate-body").unwrap()).unwrap();
    let in_body: Value = nginx.json().await.unwrap();
    assert_eq!(in_header, in_body);

    // An open route needs nothing.
    assert_eq!(ask(port, &traefik("/health")).await.status(), 200);

    // Decided like a proxied request: counted under its route, used by its key.
    let metrics = kg.metrics().await;
    let counted = metrics.lines().any(|l| {
        l.starts_with("keygate_requests_total{")
            && l.contains("route=\"search\"")
            && l.contains("outcome=\"no_credits\"")
            && metric_sum(l, "keygate_requests_total") >= 1.0
    });
    assert!(counted, "{metrics}");
    let access = kg.logs();
    assert!(access.contains("/api/search"), "no access line: {access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_is_believed_only_from_a_trusted_peer_and_only_when_it_agrees() {
    let (kg, port) = start("127.0.0.1/32");
    let (_, key) = kg.create_key(&[]);
    // The proxy named one target, the client sent another: refused, not guessed.
    let spoofed = ask(
        port,
        &[
            ("X-Forwarded-Uri", "/api/things"),
            ("X-Original-URI", "/health"),
            ("X-API-Key", &key),
        ],
    )
    .await;
    assert_eq!(spoofed.status(), 400);
    let body: Value = spoofed.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("disagree"));

    // An authorizer that trusts nobody here judges the call itself: the open
    // route a client names in X-Forwarded-Uri does not open the API.
    let (_strict_kg, strict) = start("10.255.255.1/32");
    let named_open = ask(strict, &[("X-Forwarded-Uri", "/health")]).await;
    assert_eq!(
        named_open.status(),
        401,
        "X-Forwarded-Uri believed from anyone"
    );
    // Nor is its X-Forwarded-For: the failed attempts count against the peer.
    drop(kg);
}

/// Runs the ext_authz client on `job`.
fn ext_authz(job: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/ext_authz.py");
    json_through(Command::new(python()).arg(script), &job)
}

fn find<'a>(options: &'a Value, name: &str) -> Option<&'a str> {
    options
        .as_array()?
        .iter()
        .find(|o| {
            o["key"]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case(name))
        })
        .and_then(|o| o["value"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_over_grpc_gets_every_decision() {
    let (kg, port) = start("127.0.0.1/32");
    let (key_id, key) = kg.create_key(&["--scopes", "search", "--credits", "1"]);
    let target = format!("127.0.0.1:{port}");
    let with_key = json!({"x-api-key": key, "x-auth-org": "spoofed", "accept": "*/*"});
    let out = ext_authz(json!({
        "target": target,
        "health": true,
        "checks": [
            {"path": "/api/things?page=2", "headers": with_key},
            {"path": "/api/things", "headers": {}},
            {"path": format!("/api/things?api_key={key}&page=2"), "headers": {}},
            {"path": "/api/search", "method": "GET", "headers": with_key},
            {"path": "/api/search", "method": "GET", "headers": with_key},
            {"path": "/api/things", "headers": with_key},
            {"path": "/api/things", "headers": {"content-type": "application/grpc"}},
        ]
    }));
    assert_eq!(out["health"], "SERVING");
    let checks = out["checks"].as_array().unwrap();

    // Allowed: OK, the identity set upstream, the credential and the spoofed
    // identity removed, the limits for the client.
    let ok = &checks[0];
    assert_eq!(ok["code"], 0, "{ok}");
    let set = &ok["ok"]["headers"];
    assert_eq!(find(set, "x-auth-key-id"), Some(key_id.as_str()));
    assert_eq!(find(set, "x-auth-tier"), Some("free"));
    assert_eq!(set[0]["append_action"], 2, "overwrite, never append: {set}");
    let removed = ok["ok"]["headers_to_remove"].as_array().unwrap();
    assert!(removed.iter().any(|h| h == "x-api-key"), "{removed:?}");
    assert!(removed.iter().any(|h| h == "x-auth-org"), "{removed:?}");
    assert!(!removed.iter().any(|h| h == "accept"));
    let client = &ok["ok"]["response_headers_to_add"];
    assert_eq!(find(client, "x-ratelimit-limit"), Some("4"));

    // No credential: UNAUTHENTICATED, a 401 for the client with the body.
    let none = &checks[1];
    assert_eq!(none["code"], 16, "{none}");
    assert_eq!(none["denied"]["status"], 401);
    let body: Value = serde_json::from_str(none["denied"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(find(&none["denied"]["headers"], "www-authenticate").is_some());

    // A key in the query: allowed, and the parameter removed before the upstream.
    let query = &checks[2];
    assert_eq!(query["code"], 0, "{query}");
    assert_eq!(
        query["ok"]["query_parameters_to_remove"],
        json!(["api_key"])
    );

    // The search costs the one credit, the next has none: RESOURCE_EXHAUSTED, 402.
    assert_eq!(checks[3]["code"], 0, "{}", checks[3]);
    assert_eq!(checks[4]["denied"]["status"], 402, "{}", checks[4]);
    // Over the limit (4 a minute; the refused search counted too).
    let limited = &checks[5];
    assert_eq!(limited["code"], 8, "{limited}");
    assert_eq!(limited["denied"]["status"], 429);
    assert!(find(&limited["denied"]["headers"], "retry-after").is_some());
    assert_eq!(
        find(&limited["denied"]["headers"], "x-ratelimit-remaining"),
        Some("0")
    );
    // A gRPC call refused: its gRPC status for Envoy's answer to the client.
    let grpc = &checks[6];
    assert_eq!(
        find(&grpc["denied"]["headers"], "grpc-status"),
        Some("16"),
        "{grpc}"
    );
    drop(kg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_from_an_untrusted_peer_is_refused() {
    let (_kg, port) = start("10.255.255.1/32");
    let out = ext_authz(json!({
        "target": format!("127.0.0.1:{port}"),
        "checks": [{"path": "/health", "headers": {}}]
    }));
    // PERMISSION_DENIED: the call itself, not an answer about the request.
    assert_eq!(out["checks"][0]["rpc_error"], 7, "{out}");
}

/// Revokes key `id` with `kg`'s CLI.
fn revoke(kg: &Keygate, id: &str) {
    let out = kg.cli(&["keys", "revoke", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `key`, just revoked, to be refused through the proxy on `port`: it
/// must be within a second.
async fn refused_within_a_second(port: u16, path: &str, key: &str) {
    let revoked_at = std::time::Instant::now();
    loop {
        let status = through(port, path, &[("X-API-Key", key)]).await.status();
        if status == 401 {
            return;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "a revoked key still let through after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client request through a proxy on `port`.
async fn through(port: u16, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

/// Checks a refusal as a client behind a proxy gets it: keygate's status, its JSON
/// body with `error`, and the headers named.
async fn refused(resp: reqwest::Response, status: u16, error: &str, headers: &[&str]) -> Value {
    assert_eq!(resp.status(), status, "{:?}", resp.headers());
    for name in headers {
        assert!(
            resp.headers().contains_key(*name),
            "no {name}: {:?}",
            resp.headers()
        );
    }
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    body
}

/// Which proxy stands in front, for what each can and cannot pass on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Front {
    Nginx,
    Traefik,
    Caddy,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_protects_an_upstream_with_keygate_deciding() {
    protects_an_upstream(Front::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_protects_an_upstream_with_keygate_deciding() {
    protects_an_upstream(Front::Traefik).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_protects_an_upstream_with_keygate_deciding() {
    protects_an_upstream(Front::Caddy).await;
}

/// A real proxy, started from its shipped config, in front of the echo upstream
/// with keygate deciding: pass, identity upstream, key stripped, spoofed identity
/// and descriptions refused, every refusal whole, revocation within a second.
async fn protects_an_upstream(front: Front) {
    let up = start_upstream().await;
    let authorizer = free_port();
    let kg = Keygate::start(
        up,
        &format!("{POLICY}authorizer: {{ listen: \"127.0.0.1:{authorizer}\" }}\n"),
    );
    wait_listening(authorizer);
    let proxy = match front {
        Front::Nginx => crate::common::proxies::nginx(up.port(), authorizer),
        Front::Traefik => crate::common::proxies::traefik(up.port(), authorizer),
        Front::Caddy => crate::common::proxies::caddy(up.port(), authorizer),
    };
    let (key_id, key) = kg.create_key(&["--scopes", "search", "--credits", "1"]);

    // Allowed: the upstream answers, knowing who called, never seeing the key or
    // the client's claim to a tier; the client learns its limits.
    let ok = through(
        proxy.port,
        "/api/things?page=2",
        &[
            ("X-API-Key", &key),
            ("X-Auth-Tier", "enterprise"),
            ("X-Auth-Org", "evil"),
        ],
    )
    .await;
    assert_eq!(ok.status(), 200);
    if front != Front::Traefik {
        // Traefik's forwardAuth cannot add the authorizer's headers to an allowed
        // request's answer (its refusals carry them: below).
        assert_eq!(header(&ok, "x-ratelimit-limit").as_deref(), Some("4"));
        assert_eq!(header(&ok, "x-ratelimit-remaining").as_deref(), Some("3"));
    }
    let echo: Value = ok.json().await.unwrap();
    let seen = &echo["headers"];
    assert_eq!(seen["x-auth-key-id"][0], key_id.as_str(), "{echo}");
    assert_eq!(seen["x-auth-tier"][0], "free");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key reached the upstream: {echo}"
    );
    assert!(
        seen.get("x-auth-org").is_none(),
        "a spoofed identity reached the upstream"
    );
    assert_eq!(echo["path"], "/api/things");

    // Every refusal, whole: status, JSON body, headers.
    refused(
        through(proxy.port, "/api/things", &[]).await,
        401,
        "unauthorized",
        &["www-authenticate", "x-request-id"],
    )
    .await;
    assert_eq!(
        through(proxy.port, "/api/search", &[("X-API-Key", &key)])
            .await
            .status(),
        200
    );
    refused(
        through(proxy.port, "/api/search", &[("X-API-Key", &key)]).await,
        402,
        "insufficient_credits",
        &[],
    )
    .await;
    assert_eq!(
        through(proxy.port, "/api/things", &[("X-API-Key", &key)])
            .await
            .status(),
        200
    );
    let resp = through(proxy.port, "/api/things", &[("X-API-Key", &key)]).await;
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("4"));
    let limited = refused(resp, 429, "rate_limit_exceeded", &["retry-after"]).await;
    assert!(limited["retry_after"].as_u64().is_some());
    // Open routes stay open.
    assert_eq!(through(proxy.port, "/health", &[]).await.status(), 200);

    // A client naming another target in the headers keygate reads is not believed:
    // nginx sets them all (the key is asked for, as for the real target); Traefik
    // and Caddy set the X-Forwarded-* ones and pass the client's X-Original-URI
    // on, which keygate refuses as a description that disagrees with itself.
    let (status, error) = match front {
        Front::Nginx => (401, "unauthorized"),
        Front::Traefik | Front::Caddy => (400, "invalid_request"),
    };
    refused(
        through(
            proxy.port,
            "/api/things",
            &[
                ("X-Forwarded-Uri", "/health"),
                ("X-Original-URI", "/health"),
                ("X-Forwarded-Method", "GET"),
            ],
        )
        .await,
        status,
        error,
        &[],
    )
    .await;
    // Naming only the header the proxy sets itself is overwritten by the proxy.
    refused(
        through(proxy.port, "/api/things", &[("X-Forwarded-Uri", "/health")]).await,
        401,
        "unauthorized",
        &[],
    )
    .await;

    // Revoked: refused through the proxy within a second.
    let (other_id, other) = kg.create_key(&[]);
    assert_eq!(
        through(proxy.port, "/api/things", &[("X-API-Key", &other)])
            .await
            .status(),
        200
    );
    revoke(&kg, &other_id);
    refused_within_a_second(proxy.port, "/api/things", &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_replica_is_refused_by_another_replicas_authorizer_within_a_second() {
    let Some(db) = crate::common::services::PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let url = format!("http://{up}");
    let store = format!(
        "store:\n  kind: postgres\n  url: \"{}\"\n  timeout: 2s\n",
        db.url
    );
    let policy = "cache: { ttl: 5m }\ntiers:\n  free: { per_minute: 1000 }\ndefault_tier: free\n";
    let a = Keygate::start_with_store(&url, &store, policy);
    let authorizer = free_port();
    let b = Keygate::start_with_store(
        &url,
        &store,
        &format!("{policy}authorizer: {{ listen: \"127.0.0.1:{authorizer}\" }}\n"),
    );
    wait_listening(authorizer);
    let nginx = crate::common::proxies::nginx(up.port(), authorizer);
    let (through_nginx_id, through_nginx) = a.create_key(&[]);
    let (through_grpc_id, through_grpc) = a.create_key(&[]);
    let target = format!("127.0.0.1:{authorizer}");
    let check = |key: &str, until_denied: Option<f64>| {
        let mut c = json!({"path": "/things", "headers": {"x-api-key": key}});
        if let Some(s) = until_denied {
            c["until_denied"] = json!(s);
        }
        c
    };
    // B's authorizer knows (and caches) both keys.
    assert_eq!(
        through(nginx.port, "/things", &[("X-API-Key", &through_nginx)])
            .await
            .status(),
        200
    );
    let warm = ext_authz(json!({"target": target, "checks": [check(&through_grpc, None)]}));
    assert_eq!(warm["checks"][0]["code"], 0, "{warm}");

    // Revoked at A: B's authorizer refuses it, through nginx, within a second.
    revoke(&a, &through_nginx_id);
    refused_within_a_second(nginx.port, "/things", &through_nginx).await;
    // And through Envoy's protocol: the client asks from the moment of revocation.
    let job = json!({"target": target, "checks": [check(&through_grpc, Some(3.0))]});
    let asked = std::thread::spawn(move || ext_authz(job));
    tokio::time::sleep(Duration::from_millis(300)).await;
    revoke(&a, &through_grpc_id);
    let out = tokio::task::spawn_blocking(move || asked.join().unwrap())
        .await
        .unwrap();
    let last = &out["checks"][0];
    assert_eq!(last["code"], 16, "{out}");
    assert_eq!(last["denied"]["status"], 401);
    // From the client's first question (300 ms before the revocation) to the
    // refusal: under 1.3 s means within a second of the revocation.
    assert!(last["waited"].as_f64().unwrap() < 1.3, "{out}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_http_service_asks_with_the_original_request_itself() {
    let (kg, port) = start("127.0.0.1/32");
    let (key_id, key) = kg.create_key(&[]);
    // Envoy's http_service sends the original method, path and headers (with no
    // path_prefix), and reads x-envoy-auth-headers-to-remove from the answer.
    let envoy = |path: &str| {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-proto", "http")
            .header("x-envoy-expected-rq-timeout-ms", "250")
            .header("x-request-id", "envoy-rid-1")
            .header("content-length", "0")
    };
    let ok = envoy("/api/things?page=2")
        .header("x-api-key", &key)
        .header("x-auth-org", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "x-auth-key-id").as_deref(),
        Some(key_id.as_str())
    );
    assert_eq!(header(&ok, "x-request-id").as_deref(), Some("envoy-rid-1"));
    let removed = header(&ok, "x-envoy-auth-headers-to-remove").unwrap();
    assert!(
        removed.contains("x-api-key") && removed.contains("x-auth-org"),
        "{removed}"
    );
    let refused = envoy("/api/things").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(header(&refused, "www-authenticate").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
}
