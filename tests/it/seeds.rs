//! The four API documents keygate was designed from (`../shared/seeds/`), replayed
//! request by request, in order, as a customer following each one would, against
//! keygate running its shipped example (`conf/examples/seeds/`). Every answer is
//! held to the example the document itself shows, read from the document: its
//! field names, nesting and types, and its values where they are fixed texts.

use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// The text of one of the four documents.
fn document(name: &str) -> String {
    let path = std::path::Path::new("../shared/seeds").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the API documents are at {}: {e}", path.display()))
}

/// Every JSON object the document shows, in order.
fn examples(doc: &str) -> Vec<Value> {
    let bytes = doc.as_bytes();
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(open) = doc[start..].find('{').map(|i| i + start) {
        // The matching brace, outside strings.
        let (mut depth, mut in_string, mut escaped, mut end) = (0, false, false, None);
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match (in_string, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') => in_string = false,
                (false, _, b'"') => in_string = true,
                (false, _, b'{') => depth += 1,
                (false, _, b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end.and_then(|e| serde_json::from_str::<Value>(&doc[open..=e]).ok()) {
            Some(v) => {
                found.push(v);
                start = end.unwrap_or(open) + 1;
            }
            None => start = open + 1,
        }
    }
    found
}

/// The document's first example holding the field path `path` (`data.tokens`).
fn documented(doc: &str, path: &str) -> Value {
    examples(doc)
        .into_iter()
        .find(|v| field(v, path).is_some())
        .unwrap_or_else(|| panic!("the document shows no example with {path}"))
}

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, name| v.get(name))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Holds `got` to the shape of `doc`: every field the document shows is there,
/// with the same type, nested alike (an array's items by its first); with
/// `exact`, no other field either.
fn assert_shape(got: &Value, doc: &Value, exact: bool, at: &str) {
    assert_eq!(kind(got), kind(doc), "{at}: {got} is not shaped like {doc}");
    match (got, doc) {
        (Value::Object(g), Value::Object(d)) => {
            for (name, dv) in d {
                let gv = g
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}.{name} is missing from {got}"));
                assert_shape(gv, dv, exact, &format!("{at}.{name}"));
            }
            if exact {
                let extra: Vec<&String> = g.keys().filter(|k| !d.contains_key(*k)).collect();
                assert!(
                    extra.is_empty(),
                    "{at}: fields the document does not show: {extra:?}"
                );
            }
        }
        (Value::Array(g), Value::Array(d)) => {
            if let (Some(gv), Some(dv)) = (g.first(), d.first()) {
                assert_shape(gv, dv, exact, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

/// A running example and the directory its signing key is made in.
struct Example {
    kg: Keygate,
    _keys: tempfile::TempDir,
}

impl std::ops::Deref for Example {
    type Target = Keygate;
    fn deref(&self) -> &Keygate {
        &self.kg
    }
}

/// Starts keygate on the shipped example `conf/examples/seeds/{name}.yaml` as it
/// is, but for the test's listeners, upstream and store, no per-IP request limit
/// (the test is one client), and its signing key made (`generate_missing`) in a
/// directory of the test's own.
fn start_example(name: &str, up: SocketAddr) -> Example {
    let keys = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(format!("conf/examples/seeds/{name}.yaml")).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let map = doc.as_mapping_mut().unwrap();
    for section in ["server", "upstream", "store"] {
        map.remove(section);
    }
    if let Some(issue) = map
        .get_mut("jwt")
        .and_then(|j| j.get_mut("issue"))
        .and_then(|i| i.as_mapping_mut())
    {
        assert_eq!(
            issue.get("generate_missing"),
            Some(&true.into()),
            "{name}: starts anywhere"
        );
        let file = keys.path().join("data/issuer.pem");
        issue.insert("private_key_file".into(), file.display().to_string().into());
    }
    let limits = map
        .entry("rate_limit".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    limits.as_mapping_mut().unwrap().insert(
        "ip".into(),
        serde_yaml::from_str("{ per_minute: 0 }").unwrap(),
    );
    Example {
        kg: Keygate::start(up, &serde_yaml::to_string(&doc).unwrap()),
        _keys: keys,
    }
}

async fn send(
    kg: &Keygate,
    method: reqwest::Method,
    path: &str,
    auth: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().request(method, kg.url(path));
    for (name, value) in auth {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    };
    (status, headers, v)
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {token}"))]
}

fn pairs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[tokio::test]
async fn alfaone_every_documented_error_is_answered_word_for_word() {
    let doc = document("alfaone-api-key-authentication.txt");
    let errors: Vec<Value> = examples(&doc)
        .into_iter()
        .filter(|v| v.get("error").is_some())
        .collect();
    let said = |text: &str| {
        errors
            .iter()
            .find(|v| v["error"].as_str().is_some_and(|e| e.starts_with(text)))
            .cloned()
            .unwrap_or_else(|| panic!("the document shows no error {text}"))
    };
    let up = start_upstream().await;
    let kg = start_example("alfaone", up);
    let (id, key) = kg.create_key(&[
        "--tier",
        "standard",
        "--account",
        "org_acme",
        "--org",
        "org_acme",
    ]);
    assert!(
        key.starts_with("ak_live_") && key.len() == "ak_live_".len() + 32,
        "{key}"
    );
    let get = reqwest::Method::GET;
    let path = "/api/v1/assessments";

    // "Include your API key in the x-api-key header with every request".
    let (status, headers, _) = send(&kg, get.clone(), path, &[("x-api-key", &key)], None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-limit"], "100");

    let (status, headers, body) = send(&kg, get.clone(), path, &[], None).await;
    assert_eq!((status, body), (401, said("API key is required")));
    assert!(
        headers.contains_key("www-authenticate"),
        "headers stay the contract's"
    );

    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    let (status, _, body) = send(&kg, get.clone(), path, &[("x-api-key", &wrong)], None).await;
    assert_eq!((status, body), (401, said("Invalid API key")));

    let (_, expiring) = kg.create_key(&[
        "--tier",
        "standard",
        "--account",
        "org_acme",
        "--expires-in",
        "1s",
    ]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = send(&kg, get.clone(), path, &[("x-api-key", &expiring)], None).await;
    assert_eq!((status, body), (401, said("API key has expired")));

    let (revoked_id, revoked) = kg.create_key(&["--tier", "standard", "--account", "org_acme"]);
    assert!(kg.cli(&["keys", "revoke", &revoked_id]).status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _, body) =
            send(&kg, get.clone(), path, &[("x-api-key", &revoked)], None).await;
        if status == 401 {
            assert_eq!(body, said("API key has been revoked"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Standard: 100 requests a minute for the organization, then the documented 429.
    let mut refused = None;
    for _ in 0..250 {
        let (status, headers, body) =
            send(&kg, get.clone(), path, &[("x-api-key", &key)], None).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
    }
    let (headers, body) = refused.expect("a 429 within the minute");
    assert_eq!(body, said("Rate limit exceeded"));
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["x-ratelimit-remaining"], "0");

    // keygate's own refusals elsewhere speak the same dialect.
    let (status, _, body) = send(&kg, get.clone(), "/v1/keys", &[], None).await;
    assert_eq!((status, body), (401, said("API key is required")));
    let (status, _, body) = send(
        &kg,
        get,
        &format!("/v1/keys/{id}x"),
        &[("x-api-key", &key)],
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body, json!({"error": "Missing scope: keys:manage"}));
}

#[tokio::test]
async fn alttextai_verify_credits_and_a_metered_call_as_documented() {
    let doc = document("alttextai-api-authentication.txt");
    let verified = documented(&doc, "credits_remaining");
    let credits = documented(&doc, "credits");
    let up = start_upstream().await;
    let kg = start_example("alttextai", up);
    let (user, _) = kg.create_user("ada@example.com", "ada-password-1", false);
    let (_, key) = kg.create_key(&["--tier", "free", "--owner", &user]);
    let auth = bearer(&key);
    let auth = pairs(&auth);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // curl -X POST https://autoalt.app/api/v1/verify-api-key -H "Authorization: Bearer …"
    let (status, _, body) = send(&kg, post.clone(), "/api/v1/verify-api-key", &auth, None).await;
    assert_eq!(status, 200, "{body}");
    assert_shape(&body, &verified, true, "verify");
    assert_eq!(body["valid"], true);
    assert_eq!(body["user_id"], user.as_str());
    assert_eq!(body["credits_remaining"], 100);

    // curl https://autoalt.app/api/v1/credits -H "Authorization: Bearer …"
    let (status, _, body) = send(&kg, get.clone(), "/api/v1/credits", &auth, None).await;
    assert_eq!(status, 200, "{body}");
    assert_shape(&body, &credits, true, "credits");
    assert_eq!(body, json!({"credits": 100, "user_id": user}));

    // "Each image processing request consumes 1 credit from your account."
    let image = json!({"image": "base64_encoded_image_data"});
    let (status, _, _) = send(&kg, post.clone(), "/api/v1/generate", &auth, Some(image)).await;
    assert_eq!(status, 200);
    let (_, _, body) = send(&kg, get.clone(), "/api/v1/credits", &auth, None).await;
    assert_eq!(body["credits"], 99);

    // One balance per account, whichever key; another customer's is their own.
    let (_, second) = kg.create_key(&["--tier", "free", "--owner", &user]);
    let second = bearer(&second);
    let (_, _, body) = send(
        &kg,
        post.clone(),
        "/api/v1/verify-api-key",
        &pairs(&second),
        None,
    )
    .await;
    assert_eq!(body["credits_remaining"], 99);
    let (other, _) = kg.create_user("bob@example.com", "bob-password-1", false);
    let (_, theirs) = kg.create_key(&["--tier", "free", "--owner", &other]);
    let theirs = bearer(&theirs);
    let (_, _, body) = send(&kg, get.clone(), "/api/v1/credits", &pairs(&theirs), None).await;
    assert_eq!(body, json!({"credits": 100, "user_id": other}));

    // A key made with no user (the CLI without --owner) still names a customer.
    let (_, lone) = kg.create_key(&["--tier", "free"]);
    let lone = bearer(&lone);
    let (status, _, body) = send(
        &kg,
        post.clone(),
        "/api/v1/verify-api-key",
        &pairs(&lone),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_shape(&body, &verified, true, "verify, no user");
    let (_, _, body) = send(&kg, get.clone(), "/api/v1/credits", &pairs(&lone), None).await;
    assert_shape(&body, &credits, true, "credits, no user");
    assert_eq!(body["credits"], 100);

    // Without a key, the contract's refusal (AltTextAI documents none of its own).
    let (status, _, body) = send(&kg, post, "/api/v1/verify-api-key", &[], None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized");
    let (status, _, body) = send(&kg, get, "/api/v1/verify-api-key", &auth, None).await;
    assert_eq!(
        status, 200,
        "GET is not the documented method: it goes to the API"
    );
    assert!(body.get("credits_remaining").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altrixy_token_call_refresh_and_429_as_documented() {
    let doc = document("altrixy-authentication.txt");
    let token_answer = documented(&doc, "token_type");
    let too_many = documented(&doc, "retry_after");
    let up = start_upstream().await;
    let kg = start_example("altrixy", up);
    kg.create_user("you@example.com", "your_password", false);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // curl -X POST https://api.altrixy.com/v1/auth/token -d '{"email", "password"}'
    let login = json!({"email": "you@example.com", "password": "your_password"});
    let (status, _, tokens) = send(&kg, post.clone(), "/v1/auth/token", &[], Some(login)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_shape(&tokens, &token_answer, false, "token");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["token_type"], "Bearer");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.starts_with("altx_rt_"), "{refresh}");

    // curl -H "Authorization: Bearer eyJ…" https://api.altrixy.com/v1/portfolios
    let access = bearer(tokens["access_token"].as_str().unwrap());
    let (status, headers, _) =
        send(&kg, get.clone(), "/v1/portfolios", &pairs(&access), None).await;
    assert_eq!(status, 200, "Altrixy's own /v1 paths reach Altrixy");
    assert!(headers.contains_key("x-ratelimit-limit"));
    assert!(headers.contains_key("x-ratelimit-reset"));

    // curl -X POST https://api.altrixy.com/v1/auth/refresh -d '{"refresh_token": "altx_rt_…"}'
    let body = json!({ "refresh_token": refresh });
    let (status, _, again) = send(
        &kg,
        post.clone(),
        "/v1/auth/refresh",
        &[],
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_shape(&again, &token_answer, false, "refresh");
    let next = again["refresh_token"].as_str().unwrap();
    assert!(next.starts_with("altx_rt_") && next != refresh);
    // "Each refresh token can only be used once."
    let (status, _, spent) = send(&kg, post, "/v1/auth/refresh", &[], Some(body)).await;
    assert_eq!(status, 401, "{spent}");
    assert_eq!(spent["error"], "invalid_token");

    // An API key in X-API-Key; Free allows 10 a second: the 11th gets the documented 429.
    let (_, key) = kg.create_key(&["--tier", "free"]);
    start_of_next_second().await;
    let with_key = [("x-api-key", key.as_str())];
    let replies = futures::future::join_all(
        (0..11).map(|_| send(&kg, get.clone(), "/v1/portfolios", &with_key, None)),
    )
    .await;
    let refused: Vec<&(u16, reqwest::header::HeaderMap, Value)> =
        replies.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(refused.len(), 1, "10 a second");
    let (_, headers, body) = refused[0];
    assert_shape(body, &too_many, false, "429");
    assert_eq!(body["error"], "rate_limit_exceeded");
    let retry = body["retry_after"].as_u64().unwrap();
    assert_eq!(
        body["message"],
        format!(
            "Rate limit exceeded. Try again in {retry} second{}.",
            if retry == 1 { "" } else { "s" }
        )
    );
    assert_eq!(headers["retry-after"], retry.to_string().as_str());
    assert!(headers.contains_key("x-ratelimit-remaining"));
}

#[tokio::test]
async fn altus4_register_login_setup_create_list_and_usage_as_documented() {
    let doc = document("altus4-api-key-authentication.md");
    let up = start_upstream().await;
    let kg = start_example("altus4", up);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let envelope = |v: &Value| {
        assert_eq!(v["success"], true, "{v}");
        let meta = &v["meta"];
        assert!(
            meta["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{v}"
        );
        assert!(
            meta["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{v}"
        );
    };

    // 1. Register.
    let who =
        json!({"email": "user@example.com", "password": "SecurePassword123!", "name": "John Doe"});
    let (status, _, registered) =
        send(&kg, post.clone(), "/api/auth/register", &[], Some(who)).await;
    assert!(status == 200 || status == 201, "{status} {registered}");
    assert_shape(
        &registered,
        &documented(&doc, "data.createdAt"),
        true,
        "register",
    );
    envelope(&registered);
    assert_eq!(registered["data"]["name"], "John Doe");

    // 2. Login: a bootstrap JWT.
    let login = json!({"email": "user@example.com", "password": "SecurePassword123!"});
    let (status, _, logged_in) = send(&kg, post.clone(), "/api/auth/login", &[], Some(login)).await;
    assert_eq!(status, 200, "{logged_in}");
    assert_shape(&logged_in, &documented(&doc, "data.tokens"), false, "login");
    envelope(&logged_in);
    assert_eq!(logged_in["data"]["tokens"]["expiresIn"], 604800);
    assert_eq!(logged_in["data"]["user"]["id"], registered["data"]["id"]);
    let jwt = bearer(logged_in["data"]["tokens"]["accessToken"].as_str().unwrap());

    // 3. The first key, from the JWT; once.
    let (status, _, setup) = send(
        &kg,
        post.clone(),
        "/api/management/setup",
        &pairs(&jwt),
        None,
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {setup}");
    let doc_setup = examples(&doc)
        .into_iter()
        .find(|v| field(v, "data.apiKey.key").is_some() && field(v, "data.apiKey.tier").is_some())
        .unwrap();
    assert_shape(&setup, &doc_setup, false, "setup");
    envelope(&setup);
    let first = setup["data"]["apiKey"]["key"].as_str().unwrap().to_string();
    assert!(first.starts_with("altus4_sk_live_"), "{first}");
    assert_eq!(setup["data"]["apiKey"]["name"], "My First API Key");
    assert_eq!(setup["data"]["apiKey"]["tier"], "free");
    let (status, _, twice) = send(
        &kg,
        post.clone(),
        "/api/management/setup",
        &pairs(&jwt),
        None,
    )
    .await;
    assert_eq!(status, 409, "{twice}");
    assert_eq!(twice["success"], false);
    assert_eq!(twice["error"]["code"], "conflict");

    // 4. Create a key with the first key; the customer is on Pro (their plan).
    let account = json(
        client()
            .get(kg.url("/v1/account"))
            .header("authorization", format!("Bearer {first}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let account_id = account["id"].as_str().unwrap().to_string();
    assert!(kg
        .cli(&["accounts", "set-plan", &account_id, "pro"])
        .status
        .success());
    let with_key = bearer(&first);
    let new_key = json!({"name": "Production API Key", "tier": "pro",
                         "permissions": ["search", "analytics", "database:write"], "environment": "live"});
    let (status, _, created) = send(
        &kg,
        post.clone(),
        "/api/keys",
        &pairs(&with_key),
        Some(new_key),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {created}");
    let doc_created = documented(&doc, "data.apiKey.rateLimit");
    assert_shape(&created, &doc_created, false, "create");
    envelope(&created);
    let made = &created["data"]["apiKey"];
    assert_eq!(
        made["permissions"],
        json!(["search", "analytics", "database:write"])
    );
    assert_eq!(
        made["rateLimit"],
        json!({"requestsPerHour": 10000, "burstLimit": 100})
    );
    let key_id = made["id"].as_str().unwrap().to_string();
    let production = made["key"].as_str().unwrap().to_string();

    // The new key works with Authorization: Bearer, and is counted.
    for _ in 0..3 {
        let (status, _, _) = send(
            &kg,
            post.clone(),
            "/api/search",
            &pairs(&bearer(&production)),
            Some(json!({"query": "database optimization"})),
        )
        .await;
        assert_eq!(status, 200);
    }
    // 5. List. Usage (and so `lastUsed`) is recorded in the logging phase, just
    // after the answer: on a loaded machine the list may come first.
    // The production key is the one used (management calls are not usage).
    let production_of = |listed: &Value| {
        listed["data"]["apiKeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key_id.as_str())
            .cloned()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut listed = loop {
        let (status, _, listed) =
            send(&kg, get.clone(), "/api/keys", &pairs(&with_key), None).await;
        assert_eq!(status, 200, "{listed}");
        let used = production_of(&listed)["lastUsed"].is_string();
        if used || std::time::Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    envelope(&listed);
    assert_eq!(listed["data"]["total"], 2);
    listed["data"]["apiKeys"] = json!([production_of(&listed)]);
    assert_shape(&listed, &documented(&doc, "data.apiKeys"), false, "list");

    // 6. Usage.
    let (status, _, usage) = send(
        &kg,
        get.clone(),
        &format!("/api/keys/{key_id}/usage?period=day"),
        &pairs(&with_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{usage}");
    let doc_usage = documented(&doc, "data.usage");
    assert_shape(&usage, &doc_usage, false, "usage");
    assert_eq!(usage["data"]["usage"]["totalRequests"], 3);
    assert_eq!(usage["data"]["usage"]["period"], "day");

    // Update, regenerate, revoke, as documented.
    let update = json!({"name": "Updated Production Key", "permissions": ["search", "analytics"]});
    let (status, _, updated) = send(
        &kg,
        reqwest::Method::PUT,
        &format!("/api/keys/{key_id}"),
        &pairs(&with_key),
        Some(update),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["data"]["apiKey"]["permissions"],
        json!(["search", "analytics"])
    );
    // The document's update adds `admin`: an operator's to grant, refused in the dialect.
    let grab = json!({"permissions": ["search", "admin"]});
    let (status, _, refused) = send(
        &kg,
        reqwest::Method::PUT,
        &format!("/api/keys/{key_id}"),
        &pairs(&with_key),
        Some(grab),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["success"], false);
    assert_eq!(refused["error"]["code"], "forbidden");

    let (status, _, regenerated) = send(
        &kg,
        post,
        &format!("/api/keys/{key_id}/regenerate"),
        &pairs(&with_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{regenerated}");
    assert_shape(
        &regenerated,
        &documented(&doc, "data.warning"),
        false,
        "regenerate",
    );
    let (status, _, _) = send(
        &kg,
        get.clone(),
        "/api/search",
        &pairs(&bearer(&production)),
        None,
    )
    .await;
    assert_eq!(status, 401, "the old secret is invalid at once");

    let (status, _, revoked) = send(
        &kg,
        reqwest::Method::DELETE,
        &format!("/api/keys/{key_id}"),
        &pairs(&with_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_shape(
        &revoked,
        &documented(&doc, "data.revokedAt"),
        false,
        "revoke",
    );
    assert_eq!(revoked["data"]["message"], "API key revoked successfully");

    // Another customer sees none of it.
    let other = json!({"email": "eve@example.com", "password": "EvePassword123!", "name": "Eve"});
    send(
        &kg,
        reqwest::Method::POST,
        "/api/auth/register",
        &[],
        Some(other),
    )
    .await;
    let login = json!({"email": "eve@example.com", "password": "EvePassword123!"});
    let (_, _, eve) = send(
        &kg,
        reqwest::Method::POST,
        "/api/auth/login",
        &[],
        Some(login),
    )
    .await;
    let eve_jwt = bearer(eve["data"]["tokens"]["accessToken"].as_str().unwrap());
    let (_, _, eve_setup) = send(
        &kg,
        reqwest::Method::POST,
        "/api/management/setup",
        &pairs(&eve_jwt),
        None,
    )
    .await;
    let eve_key = bearer(eve_setup["data"]["apiKey"]["key"].as_str().unwrap());
    let (_, _, eve_list) = send(&kg, get.clone(), "/api/keys", &pairs(&eve_key), None).await;
    assert_eq!(eve_list["data"]["total"], 1, "{eve_list}");
    let (status, _, theirs) = send(
        &kg,
        get,
        &format!("/api/keys/{key_id}/usage"),
        &pairs(&eve_key),
        None,
    )
    .await;
    assert_eq!(status, 404, "{theirs}");
    assert_eq!(theirs["success"], false);
}
