//! The portal (docs/portal.md), black-box: pages, sessions, form tokens,
//! escaping, other users' keys, throttled sign-in, secrets in exactly one response
//! and in no log — over HTTP with a hand-kept cookie jar — and the whole journey of
//! a new user in a real browser (`tests/browser/portal_flow.py`, Debian's
//! Chromium through selenium).

use crate::common::portal_visitor::{between, Visitor};
use crate::common::{client, start_upstream, Keygate};
use std::path::PathBuf;

/// Tiers, routes and the portal, with sign-up open.
const POLICY: &str = r##"
tiers:
  free: { per_minute: 100, per_day: 1000, max_keys: 5 }
default_tier: free
routes:
  - { path: /health, auth: none }
  - { path: /api/search, methods: [POST], scopes: [search], cost: 1 }
  - { path: /api/admin, scopes: [admin_area] }
management: { registration: open, user_scopes: [search, analytics] }
portal:
  enabled: true
  title: "Acme API"
  branding: { name: "Acme Search API", logo: conf/brand/acme-logo.svg, accent: "#0f766e" }
"##;

#[tokio::test]
async fn pages_carry_the_security_headers_and_the_names_the_contract_promises() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut v = Visitor::new(&kg);
    let login = v.get("/login").await;
    assert_eq!(login.status, 200);
    assert_eq!(
        login.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(login.header("x-content-type-options"), "nosniff");
    assert_eq!(login.header("referrer-policy"), "no-referrer");
    assert!(login.header("content-type").starts_with("text/html"));
    for needle in [
        "name=\"email\"",
        "name=\"password\"",
        ">Sign in</button>",
        "Acme Search API",
    ] {
        assert!(login.body.contains(needle), "{needle}: {}", login.body);
    }
    // No inline script or style anywhere: the CSP would block it.
    assert!(!login.body.contains("style=") && !login.body.contains("<script>"));
    let pre = login.header("set-cookie");
    assert!(pre.contains("kg_pre=") && pre.contains("HttpOnly") && pre.contains("SameSite=Strict"));
    assert!(
        pre.contains("Path=/portal") && !pre.contains("Secure"),
        "{pre}"
    );
    let signup = v.get("/signup").await;
    for needle in [
        "name=\"email\"",
        "name=\"name\"",
        "name=\"password\"",
        ">Create account</button>",
    ] {
        assert!(signup.body.contains(needle), "{needle}");
    }
    // Signed out, a signed-in page sends the browser to sign in.
    let keys = Visitor::new(&kg).get("/keys").await;
    assert_eq!(
        (keys.status, keys.header("location").as_str()),
        (303, "/portal/login")
    );

    v.sign_up("ann@example.com").await;
    let set = v.get("/keys").await;
    for needle in [
        "name=\"name\"",
        "<select name=\"environment\"",
        "type=\"checkbox\" name=\"scopes\" value=\"search\"",
        "type=\"checkbox\" name=\"scopes\" value=\"analytics\"",
        ">Create key</button>",
        ">Sign out</button>",
    ] {
        assert!(set.body.contains(needle), "{needle}: {}", set.body);
    }
    let (id, _) = v.create_key("first").await;
    let listed = v.get("/keys").await;
    let wrong_method = v.post(&format!("/keys/{id}"), &[]).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), "GET");
    assert!(
        listed.body.contains(">Revoke</button>") && listed.body.contains(">Regenerate</button>")
    );
    // The portal's own files, under the same CSP.
    let css = v.get("/static/portal.css").await;
    assert!(css.status == 200 && css.header("content-type").starts_with("text/css"));
    let js = v.get("/static/portal.js").await;
    assert!(js.header("content-type").starts_with("text/javascript"));
    // Unknown pages are the portal's own 404, never the upstream's.
    let missing = v.get("/nope").await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-type").starts_with("text/html"));
}

#[tokio::test]
async fn a_post_without_its_form_token_is_403_and_changes_nothing() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut v = Visitor::new(&kg);
    // Sign-in and sign-up forms need theirs too.
    v.get("/signup").await;
    let no_token = v
        .post_raw(
            "/signup",
            &[("email", "eve@example.com"), ("password", "long enough pw")],
        )
        .await;
    assert_eq!(no_token.status, 403);
    assert!(no_token.header("content-type").starts_with("text/html"));
    let p = v.get("/login").await;
    assert_eq!(p.status, 200);
    let login = v
        .post_raw("/login", &[("email", "eve@example.com"), ("password", "x")])
        .await;
    assert_eq!(login.status, 403);

    v.sign_up("ann@example.com").await;
    let (id, _) = v.create_key("kept").await;
    for form in [
        vec![("name", "forged")],
        vec![("name", "forged"), ("csrf", "")],
        vec![
            ("name", "forged"),
            ("csrf", "00000000000000000000000000000000"),
        ],
    ] {
        let p = v.post_raw("/keys", &form).await;
        assert_eq!(p.status, 403, "{form:?}");
    }
    // A token of another cookie (another visitor's) is refused too.
    let mut other = Visitor::new(&kg);
    other.get("/login").await;
    let foreign = other.csrf.clone();
    let p = v
        .post_raw(&format!("/keys/{id}/revoke"), &[("csrf", &foreign)])
        .await;
    assert_eq!(p.status, 403);
    let p = v.post_raw("/logout", &[]).await;
    assert_eq!(p.status, 403, "a forged sign-out is refused");
    let keys = v.get("/keys").await;
    assert_eq!(keys.status, 200, "still signed in");
    assert!(!keys.body.contains("forged"));
    assert_eq!(keys.body.matches("badge active").count(), 1, "still active");
    // And the same forms with their token work.
    let p = v.post(&format!("/keys/{id}/revoke"), &[]).await;
    assert_eq!(p.status, 303);
    assert!(v.get("/keys").await.body.contains("badge revoked"));
}

#[tokio::test]
async fn every_value_is_escaped_and_the_key_appears_in_exactly_one_response() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut v = Visitor::new(&kg);
    let password = "long enough pw";
    v.sign_up("ann@example.com").await;
    let (id, secret) = v.create_key("<script>alert(1)</script>").await;
    let keys = v.get("/keys").await;
    assert!(keys.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!keys.body.contains("<script>alert"));
    // Use the key, then look at every page it shows on.
    let used = client()
        .get(kg.url("/hello"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200);
    let detail = v.get(&format!("/keys/{id}")).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("&lt;script&gt;"));
    assert!(!detail.body.contains("<script>alert"));
    for page in [&keys, &detail, &v.get("/keys").await] {
        assert!(
            !page.body.contains(&secret),
            "the secret is shown only once"
        );
        assert!(
            page.body.contains(&secret[secret.len() - 4..]),
            "but its last four are"
        );
    }
    let session = v.cookies["kg_session"].clone();
    let logs = kg.logs();
    for secret_thing in [secret.as_str(), password, session.as_str()] {
        assert!(!logs.contains(secret_thing), "{secret_thing} in the logs");
    }
}

#[tokio::test]
async fn another_users_key_is_404_and_stays_untouched() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut ann = Visitor::new(&kg);
    ann.sign_up("ann@example.com").await;
    let (id, secret) = ann.create_key("ann's").await;
    let mut bob = Visitor::new(&kg);
    bob.sign_up("bob@example.com").await;
    assert!(!bob.get("/keys").await.body.contains("ann&#39;s"));
    for path in [
        format!("/keys/{id}"),
        format!("/keys/{id}/revoke"),
        format!("/keys/{id}/regenerate"),
    ] {
        assert_eq!(bob.get(&path).await.status, 404, "{path}");
    }
    bob.get("/keys").await;
    assert_eq!(
        bob.post(&format!("/keys/{id}/revoke"), &[]).await.status,
        404
    );
    assert_eq!(
        bob.post(&format!("/keys/{id}/regenerate"), &[])
            .await
            .status,
        404
    );
    assert_eq!(bob.get("/overview").await.status, 404, "admins only");
    let still = client()
        .get(kg.url("/hello"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "ann's key still works");
}

/// A customer's forms on the admins' account pages change nothing: 404, like the
/// pages themselves, for their own account and for another's.
#[tokio::test]
async fn a_customer_cannot_change_any_account_from_the_portal() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, ACCOUNT_POLICY);
    let mut ann = Visitor::new(&kg);
    ann.sign_up("ann@example.com").await;
    let (_, secret) = ann.create_key("ann's").await;
    assert_eq!(ann.get("/account").await.status, 200);
    let out = kg.cli(&["accounts", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let account: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    let id = account["id"].as_str().unwrap();
    for (path, fields) in [
        (format!("/accounts/{id}/plan"), vec![("plan", "pro")]),
        (format!("/accounts/{id}/credits"), vec![("add", "1000")]),
        (
            format!("/accounts/{id}/status"),
            vec![("status", "suspended")],
        ),
    ] {
        ann.get("/account").await;
        assert_eq!(ann.post(&path, &fields).await.status, 404, "{path}");
    }
    assert_eq!(ann.get("/accounts").await.status, 404);
    assert_eq!(ann.get(&format!("/accounts/{id}")).await.status, 404);
    let shown = kg.cli(&["accounts", "show", id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        (&shown["plan"], &shown["status"], &shown["credits"]),
        (
            &serde_json::json!("free"),
            &serde_json::json!("active"),
            &serde_json::json!(50)
        )
    );
    let r = client()
        .get(kg.url("/paid"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_admin_sees_every_key_with_its_owner_and_the_overview() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut ann = Visitor::new(&kg);
    ann.sign_up("ann@example.com").await;
    let (_, secret) = ann.create_key("ann's search").await;
    for _ in 0..3 {
        client()
            .get(kg.url("/hello"))
            .header("X-API-Key", &secret)
            .send()
            .await
            .unwrap();
    }
    kg.create_user("root@example.com", "admin password", true);
    let mut admin = Visitor::new(&kg);
    let p = admin.sign_in("root@example.com", "admin password").await;
    assert_eq!(p.status, 303);
    let keys = admin.get("/keys").await;
    assert!(keys.body.contains("ann&#39;s search") || keys.body.contains("ann's search"));
    assert!(keys.body.contains("ann@example.com"), "owners are shown");
    let filtered = admin.get("/keys?owner=nobody").await;
    assert!(!filtered.body.contains("ann@example.com"));
    let overview = admin.get("/overview").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Busiest keys"));
    assert!(overview.body.contains("ann&#39;s search") || overview.body.contains("ann's search"));
    assert!(overview.body.contains("Refusals by reason"));
}

#[tokio::test]
async fn sign_in_failures_are_throttled_like_the_token_endpoint() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut v = Visitor::new(&kg);
    v.sign_up("ann@example.com").await;
    let mut eve = Visitor::new(&kg);
    eve.get("/login").await;
    // Ten failures a minute per email, then 429. The minute is the clock's, so a
    // run that straddles its end gets ten more (the exact count is tested on the
    // manual clock in src/portal/tests.rs): a 429 comes after 10 to 20 failures.
    let mut failures = 0;
    loop {
        let p = eve
            .post(
                "/login",
                &[("email", "ann@example.com"), ("password", "guess guess")],
            )
            .await;
        if p.status == 429 {
            assert!(p.header("retry-after").parse::<u64>().unwrap() >= 1);
            assert!(p.header("content-type").starts_with("text/html"));
            break;
        }
        assert_eq!(p.status, 401, "{}", p.body);
        assert!(p.body.contains("Invalid email or password"));
        failures += 1;
        assert!(failures <= 20, "no 429 after {failures} failures");
    }
    assert!(failures >= 10, "429 after only {failures} failures");
    // The right password is refused too while the email is throttled.
    let p = eve
        .post(
            "/login",
            &[("email", "ann@example.com"), ("password", "long enough pw")],
        )
        .await;
    assert_eq!(p.status, 429);
}

#[tokio::test]
async fn a_sign_out_ends_the_session_on_every_replica_and_sign_in_rotates_it() {
    let up = start_upstream().await;
    let a = Keygate::start(up, POLICY);
    // A second replica on the same store file.
    let db = a.dir.path().join("keys.db");
    let b = Keygate::start_with_store(
        &format!("http://{up}"),
        &format!("store:\n  kind: sqlite\n  path: \"{}\"\n", db.display()),
        POLICY,
    );
    let mut v = Visitor::new(&a);
    v.sign_up("ann@example.com").await;
    let first = v.cookies["kg_session"].clone();
    // Signing in again gives a new session token.
    v.get("/login").await; // signed in: redirected, no form
    let mut again = Visitor::new(&a);
    let p = again.sign_in("ann@example.com", "long enough pw").await;
    assert_eq!(p.status, 303);
    let second = again.cookies["kg_session"].clone();
    assert_ne!(first, second);
    let set = p.header("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/portal")
    );
    assert!(set.contains("Max-Age=43200"), "session_ttl 12h: {set}");

    let mut on_b = Visitor::new(&b);
    on_b.cookies = v.cookies.clone();
    assert_eq!(
        on_b.get("/keys").await.status,
        200,
        "replica b knows the session"
    );
    assert_eq!(on_b.post("/logout", &[]).await.status, 303);
    let after = v.get("/keys").await;
    assert_eq!(after.status, 303, "ended on replica a too");
    // The other sign-in is a different session, still alive.
    assert_eq!(again.get("/keys").await.status, 200);
}

#[tokio::test]
async fn the_session_cookie_is_secure_under_tls() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (crt, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
    let kg = Keygate::start_tls(up, POLICY, &crt, &key);
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = https
        .get(format!(
            "{}/portal/login",
            kg.base.replace("http://", "https://")
        ))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn closed_registration_offers_no_sign_up() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &POLICY.replace("registration: open", "registration: closed"),
    );
    let mut v = Visitor::new(&kg);
    let login = v.get("/login").await;
    assert!(!login.body.contains("/portal/signup"));
    assert_eq!(v.get("/signup").await.status, 404);
    assert_eq!(v.post("/signup", &[("email", "a@b.co")]).await.status, 404);
}

/// The browser test's Python, Chromium and chromedriver; `None` (skipped, loudly)
/// when one is missing, except under `CI=true`, where that is a failure.
fn browser_kit() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let python = crate::common::jwt_support::python();
    let chromium = std::env::var_os("KEYGATE_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let driver = std::env::var_os("KEYGATE_TEST_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    let selenium = std::process::Command::new(&python)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<String> = [
        (!chromium.exists()).then(|| format!("{} (apt-get install chromium)", chromium.display())),
        (!driver.exists())
            .then(|| format!("{} (apt-get install chromium-driver)", driver.display())),
        (!selenium).then(|| "selenium (bash scripts/test-python.sh)".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return Some((python, chromium, driver));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser test is required in CI; missing: {}",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED: the portal browser test needs {}",
        missing.join(", ")
    );
    None
}

/// Plans shared by an account's keys, with pooled credits.
const ACCOUNT_POLICY: &str = r##"
tiers:
  free: { per_minute: 100, max_keys: 5, pool: account, credits: { refill: 50, every: month } }
  pro: { per_minute: 1000, max_keys: 25, pool: account, credits: { refill: 1000, every: month } }
default_tier: free
routes:
  - { path: /paid, cost: 1 }
management: { registration: open, user_scopes: [search] }
portal:
  enabled: true
  title: "Acme API"
  branding: { name: "Acme Cloud", logo: conf/brand/acme-logo.svg, accent: "#7c3aed" }
rate_limit: { ip: { per_minute: 0 } }
"##;

/// The customer's account page and the admins' account pages, in a real browser:
/// pooled usage with each key's share, a plan change, credits added, a suspension.
#[tokio::test]
async fn a_customer_watches_their_account_and_an_admin_changes_it_in_a_real_browser() {
    let Some((python, chromium, driver)) = browser_kit() else {
        return;
    };
    let up = start_upstream().await;
    let kg = Keygate::start(up, ACCOUNT_POLICY);
    kg.create_user("root@example.com", "the admin's password", true);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-account-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/accounts_flow.py");
    let (base, dir) = (kg.base.clone(), shots.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(base)
            .arg(dir)
            .arg("root@example.com")
            .arg("the admin's password")
            .env("KEYGATE_TEST_CHROMIUM", chromium)
            .env("KEYGATE_TEST_CHROMEDRIVER", driver)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{printed}");
    assert!(
        out.status.success(),
        "browser test failed:\n{printed}\nkeygate:\n{}",
        kg.logs()
    );
    for shot in ["portal-account.png", "portal-account-admin.png"] {
        let len = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}

#[tokio::test]
async fn a_new_user_signs_up_gets_a_key_uses_it_and_watches_it_in_a_real_browser() {
    let Some((python, chromium, driver)) = browser_kit() else {
        return;
    };
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    // Screenshots go to target/ (kept out of git) for a person to look at.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/portal_flow.py");
    let (base, dir) = (kg.base.clone(), shots.clone());
    // The upstream runs on this runtime: the browser's wait must not block it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(base)
            .arg(dir)
            .env("KEYGATE_TEST_CHROMIUM", chromium)
            .env("KEYGATE_TEST_CHROMEDRIVER", driver)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{printed}");
    assert!(
        out.status.success(),
        "browser test failed:\n{printed}\nkeygate:\n{}",
        kg.logs()
    );
    for shot in ["portal-keys.png", "portal-key-detail.png"] {
        let len = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    println!("screenshots: {}", shots.display());
}

#[tokio::test]
async fn on_postgresql_replicas_share_users_keys_and_sessions() {
    let Some(db) = crate::common::services::PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let store = format!("store:\n  kind: postgres\n  url: \"{}\"\n", db.url);
    let upstream = format!("http://{up}");
    let a = Keygate::start_with_store(&upstream, &store, POLICY);
    let b = Keygate::start_with_store(&upstream, &store, POLICY);
    let mut v = Visitor::new(&a);
    v.sign_up("pat@example.com").await;
    let (id, secret) = v.create_key("on postgres").await;
    let used = client()
        .get(b.url("/hello"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200, "replica b knows the key");
    let mut on_b = Visitor::new(&b);
    on_b.cookies = v.cookies.clone();
    let detail = on_b.get(&format!("/keys/{id}")).await;
    assert_eq!(detail.status, 200, "replica b knows the session");
    assert!(detail.body.contains("on postgres"));
    assert_eq!(on_b.post("/logout", &[]).await.status, 303);
    assert_eq!(v.get("/keys").await.status, 303, "signed out on a too");
}

/// The key page states the limits the key is held to: the monthly quota among the
/// windows, that they slide, and the credit refill (docs/configuration.md, Limits and credits).
#[tokio::test]
async fn the_key_page_shows_sliding_windows_the_monthly_quota_and_the_refill() {
    let up = start_upstream().await;
    let policy = POLICY.replace(
        "free: { per_minute: 100, per_day: 1000, max_keys: 5 }",
        "free: { per_minute: 100, per_month: 20000, max_keys: 5, algorithm: sliding, credits: { refill: 300, every: month } }",
    );
    let kg = Keygate::start(up, &policy);
    let mut v = Visitor::new(&kg);
    v.sign_up("ann@example.com").await;
    let (id, _) = v.create_key("monthly").await;
    let page = v.get(&format!("/keys/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sliding windows"), "{}", page.body);
    assert!(
        page.body.contains("<td>month</td><td>20000</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("back to 300 every month"),
        "{}",
        page.body
    );
    let credits = between(&page.body, "<dd class=\"credits\">", "</dd>");
    assert_eq!(credits, "300", "a key under a refill starts with it");
}

#[tokio::test]
async fn every_page_carries_the_apis_own_name_logo_and_colour() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut ann = Visitor::new(&kg);
    for path in ["/login", "/signup"] {
        let page = ann.get(path).await;
        assert!(page.body.contains(r#"<img class="logo" src="/portal/static/logo" alt="" height="28"><span>Acme Search API</span>"#), "{path}: {}", page.body);
        assert!(
            page.body
                .contains(r#"<link rel="stylesheet" href="/portal/static/brand.css">"#),
            "{path}"
        );
        assert_eq!(
            page.header("content-security-policy"),
            "default-src 'self'; frame-ancestors 'none'"
        );
    }
    ann.sign_up("ann@example.com").await;
    let keys = ann.get("/keys").await;
    assert!(
        keys.body.contains("<span>Acme Search API</span>"),
        "signed in too"
    );
    assert!(
        !keys.body.contains("Acme API"),
        "branding.name stands for the title"
    );
    let logo = client()
        .get(kg.url("/portal/static/logo"))
        .send()
        .await
        .unwrap();
    assert_eq!(logo.status(), 200);
    assert_eq!(logo.headers()["content-type"], "image/svg+xml");
    assert_eq!(
        logo.bytes().await.unwrap(),
        std::fs::read("conf/brand/acme-logo.svg").unwrap()
    );
    let css = client()
        .get(kg.url("/portal/static/brand.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let css = css.text().await.unwrap();
    assert!(
        css.contains("--accent: #0f766e; --on-accent: #ffffff;"),
        "{css}"
    );
    assert!(css.contains("prefers-color-scheme: dark"), "{css}");

    // A logo elsewhere: images from that origin only, and nothing served locally.
    let other = Keygate::start(
        up,
        r#"
tiers: { free: { per_minute: 10 } }
default_tier: free
management: { registration: open }
portal: { enabled: true, title: "Beta", branding: { name: "Beta Cloud", logo: "https://cdn.example.com/beta.svg" } }
"#,
    );
    let mut bea = Visitor::new(&other);
    let page = bea.get("/login").await;
    assert!(page
        .body
        .contains(r#"src="https://cdn.example.com/beta.svg""#));
    assert!(page.body.contains("<span>Beta Cloud</span>") && !page.body.contains("brand.css"));
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; img-src 'self' https://cdn.example.com; frame-ancestors 'none'"
    );
    for path in ["/portal/static/logo", "/portal/static/brand.css"] {
        let r = client().get(other.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    // Branding that cannot be served is refused by check, every problem at once.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "upstream: { url: \"http://127.0.0.1:3000\" }\ntiers: { free: { per_minute: 10 } }\ndefault_tier: free\nportal: { enabled: true, branding: { name: \"\", logo: \"https://cdn.example.com/x.svg; script-src *\", accent: \"blue\" } }\n",
    )
    .unwrap();
    let out = crate::common::check_config(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for path in [
        "portal.branding.name",
        "portal.branding.logo",
        "portal.branding.accent",
    ] {
        assert!(stderr.contains(path), "{path} in {stderr}");
    }
}
