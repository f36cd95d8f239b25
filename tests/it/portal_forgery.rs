//! Login CSRF through a planted cookie (attacked, third round): the portal's form
//! token was SHA-256 of the pre-sign-in cookie with no secret, so anyone able to
//! plant `kg_pre` (a sibling subdomain can) could forge a sign-in form and sign a
//! victim into the attacker's account. Now form tokens are an HMAC under a key
//! shared by every replica through the store, a POST a browser marks as coming from
//! another site is refused, and under TLS the cookies are `__Host-` cookies that no
//! other host can set (and that keygate keeps from the upstream).

use crate::common::services::PgDatabase;
use crate::common::{client, start_upstream, test_pki, Keygate};
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
tiers:
  free: { per_minute: 100 }
management: { registration: open }
portal: { enabled: true }
"#;

/// The form token of the page `body` (its hidden `csrf` input).
fn csrf_of(body: &str) -> String {
    crate::common::portal_visitor::form_token(body).expect("a form")
}

/// The token the portal used to derive from a cookie value, which anyone could
/// compute.
fn unkeyed_token(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"keygate portal form token\0");
    h.update(cookie.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A sign-in form posted to `base` with `cookie`, `csrf` and extra `headers`;
/// returns the status and the `Set-Cookie` values.
async fn post_sign_in(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    csrf: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = http
        .post(format!("{base}/portal/login"))
        .header("Cookie", cookie)
        .form(&[
            ("email", "mallory@example.com"),
            ("password", "mallory-password"),
            ("csrf", csrf),
        ]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (resp.status().as_u16(), cookies)
}

#[tokio::test]
async fn a_planted_pre_sign_in_cookie_cannot_sign_a_victim_into_another_account() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    kg.create_user("mallory@example.com", "mallory-password", false);
    let http = client();
    // The value the attacker plants in the victim's browser.
    let planted = "PlantedByASiblingSubdomain000000";
    let cookie = format!("kg_pre={planted}");

    // 1. A token computed offline for the planted value.
    let (status, cookies) =
        post_sign_in(&http, &kg.base, &cookie, &unkeyed_token(planted), &[]).await;
    assert_eq!(status, 403, "signed in with a forged token: {cookies}");
    assert!(!cookies.contains("kg_session=kg_ps_"), "{cookies}");

    // 2. The real token for the planted value (the attacker asks keygate for the
    // sign-in page with that cookie), posted by the victim's browser from the
    // attacker's page: the browser says where the form came from.
    let page = http
        .get(format!("{}/portal/login", kg.base))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_of(&page);
    for forged in [
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "https://evil.example.com"),
        ][..],
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "https://evil.example"),
        ],
        &[("Origin", "https://evil.example.com")],
        &[("Origin", "null")],
    ] {
        let (status, cookies) = post_sign_in(&http, &kg.base, &cookie, &token, forged).await;
        assert_eq!(status, 403, "{forged:?} signed the victim in: {cookies}");
        assert!(!cookies.contains("kg_session=kg_ps_"), "{cookies}");
    }

    // The portal's own form, posted by the browser from the portal's page, works.
    let host = kg.base.trim_start_matches("http://");
    let (status, cookies) = post_sign_in(
        &http,
        &kg.base,
        &cookie,
        &token,
        &[
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", &kg.base),
            ("Host", host),
        ],
    )
    .await;
    assert_eq!(status, 303, "{cookies}");
    assert!(cookies.contains("kg_session=kg_ps_"), "{cookies}");
}

#[tokio::test]
async fn under_tls_portal_cookies_are_host_only_and_never_reach_the_upstream() {
    let up = start_upstream().await;
    let pki = test_pki();
    let kg = Keygate::start_tls(
        up,
        POLICY,
        &pki.path().join("server.pem"),
        &pki.path().join("server.key"),
    );
    kg.create_user("mallory@example.com", "mallory-password", false);
    let (_, key) = kg.create_key(&[]);
    let ca = std::fs::read(pki.path().join("ca.pem")).unwrap();
    let https = kg.base.replace("http://", "https://");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let login = http
        .get(format!("{https}/portal/login"))
        .header("Cookie", "kg_pre=PlantedByASiblingSubdomain000000")
        .send()
        .await
        .unwrap();
    let set = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("__Host-kg_pre=") && set.contains("; Path=/;") && set.contains("; Secure"),
        "{set}"
    );
    assert!(!set.contains("Domain"), "{set}");
    let pre = set.split(';').next().unwrap().to_string();
    let token = csrf_of(&login.text().await.unwrap());
    // The planted, plain cookie is not the one the form is bound to.
    let (status, _) = post_sign_in(
        &http,
        &https,
        "kg_pre=PlantedByASiblingSubdomain000000",
        &token,
        &[],
    )
    .await;
    assert_eq!(status, 403);
    let (status, cookies) = post_sign_in(&http, &https, &pre, &token, &[]).await;
    assert_eq!(status, 303, "{cookies}");
    let session = cookies
        .lines()
        .find(|c| c.starts_with("__Host-kg_session="))
        .unwrap_or_else(|| panic!("{cookies}"))
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // Path=/ sends the session with every request to the host: keygate keeps it
    // (and the pre-sign-in cookie) from the upstream, and other cookies pass.
    let echoed: serde_json::Value = http
        .get(format!("{https}/anything"))
        .header("X-API-Key", &key)
        .header("Cookie", format!("theme=dark; {session}; {pre}; cart=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        echoed["headers"]["cookie"],
        serde_json::json!(["theme=dark; cart=1"]),
        "{echoed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_form_token_key_through_the_store() {
    let up = start_upstream().await;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let a = Keygate::start_with_store(&format!("http://{up}"), &store, POLICY);
    let b = Keygate::start_with_store(&format!("http://{up}"), &store, POLICY);
    a.create_user("mallory@example.com", "mallory-password", false);
    let http = client();
    let login = http
        .get(format!("{}/portal/login", a.base))
        .send()
        .await
        .unwrap();
    let pre = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = csrf_of(&login.text().await.unwrap());
    let (status, cookies) = post_sign_in(&http, &b.base, &pre, &token, &[]).await;
    assert_eq!(status, 303, "a form from A posted to B: {cookies}");
}

/// Behind an ingress that terminates TLS, keygate sees plain HTTP:
/// `portal.secure_cookies` gives the browser the same `__Host-` cookies.
#[tokio::test]
async fn secure_cookies_can_be_asked_for_when_tls_ends_in_front_of_keygate() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &POLICY.replace(
            "portal: { enabled: true }",
            "portal: { enabled: true, secure_cookies: true }",
        ),
    );
    let login = client()
        .get(format!("{}/portal/login", kg.base))
        .send()
        .await
        .unwrap();
    let set = login.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("__Host-kg_pre=") && set.contains("; Path=/;") && set.contains("; Secure"),
        "{set}"
    );
}
