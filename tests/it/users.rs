//! Users, as an admin runs them (docs/configuration.md, Users): listed in pages,
//! disabled (every key refused at once, sessions and refresh tokens ended) and
//! enabled, deleted, sent a one-time password-reset link; and a user changing their
//! own password in the portal. Every door is also tried by someone who may not.

use crate::common::portal_visitor::Visitor;
use crate::common::*;
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "an-issuing-secret-of-at-least-32-bytes!!";

fn policy() -> String {
    format!(
        "jwt:\n  issue: {{ kid: keygate, alg: HS256, secret: \"{SECRET}\", access_ttl: 10m, refresh_ttl: 1d }}\n\
         management: {{ registration: open, user_scopes: [search] }}\n\
         portal: {{ enabled: true }}\n\
         rate_limit: {{ ip: {{ per_minute: 0, failed_auth_per_minute: 1000 }} }}\n\
         tiers:\n  free: {{ per_minute: 1000, pool: account }}\ndefault_tier: free\n"
    )
}

async fn refresh(kg: &Keygate, token: &str) -> u16 {
    kg.api(
        Method::POST,
        "/auth/refresh",
        Auth::Anonymous,
        Some(json!({ "refresh_token": token })),
    )
    .await
    .0
}

async fn tokens(kg: &Keygate, email: &str, password: &str) -> (u16, serde_json::Value) {
    kg.api(
        Method::POST,
        "/auth/token",
        Auth::Anonymous,
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

#[tokio::test]
async fn disabling_a_user_refuses_their_keys_and_ends_their_sessions_until_enabled() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy());
    let admin = kg.create_key(&["--scopes", "admin"]).1;
    let mut web = Visitor::new(&kg);
    web.sign_up("dora@example.com").await;
    let (_, key) = web.create_key("dora's").await;
    let (status, pair) = tokens(&kg, "dora@example.com", "long enough pw").await;
    assert_eq!(status, 200);
    let refresh_token = pair["refresh_token"].as_str().unwrap().to_string();
    let (_, page) = kg
        .api(
            Method::GET,
            "/users?email=dora@example.com",
            Auth::Key(&admin),
            None,
        )
        .await;
    let id = page["users"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(page["users"][0]["disabled"], false);

    let (status, user) = kg
        .api(
            Method::PUT,
            &format!("/users/{id}"),
            Auth::Key(&admin),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!((status, &user["disabled"]), (200, &json!(true)), "{user}");
    expect_error(kg.get_key("/a", &key).await, 403, "account_suspended").await;
    assert_eq!(
        web.get("/keys").await.status,
        303,
        "the portal session ended"
    );
    assert_eq!(refresh(&kg, &refresh_token).await, 401, "refresh refused");
    assert_eq!(
        tokens(&kg, "dora@example.com", "long enough pw").await.0,
        401
    );

    kg.api(
        Method::PUT,
        &format!("/users/{id}"),
        Auth::Key(&admin),
        Some(json!({ "disabled": false })),
    )
    .await;
    assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    assert_eq!(
        tokens(&kg, "dora@example.com", "long enough pw").await.0,
        200
    );
}

#[tokio::test]
async fn users_come_in_pages_and_a_deleted_users_keys_stop() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy());
    let admin = kg.create_key(&["--scopes", "admin"]).1;
    for who in ["u1", "u2", "u3"] {
        kg.create_user(&format!("{who}@example.com"), "long enough pw", false);
    }
    let mut seen = Vec::new();
    let mut path = "/users?limit=2".to_string();
    loop {
        let (status, page) = kg.api(Method::GET, &path, Auth::Key(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        for u in page["users"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["u1@example.com", "u2@example.com", "u3@example.com"]);

    let token = kg.login("u2@example.com", "long enough pw").await;
    let (_, made) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Bearer(&token),
            Some(json!({ "name": "u2's" })),
        )
        .await;
    let key = made["key"].as_str().unwrap().to_string();
    assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    let (_, page) = kg
        .api(
            Method::GET,
            "/users?email=U2@Example.com",
            Auth::Key(&admin),
            None,
        )
        .await;
    let id = page["users"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = kg
        .api(
            Method::DELETE,
            &format!("/users/{id}"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        kg.get_key("/a", &key).await.status(),
        401,
        "revoked with them"
    );
    assert_eq!(tokens(&kg, "u2@example.com", "long enough pw").await.0, 401);
    let (status, _) = kg
        .api(
            Method::DELETE,
            &format!("/users/{id}"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_reset_link_sets_a_password_once_and_ends_every_session() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy());
    let admin = kg.create_key(&["--scopes", "admin"]).1;
    let (id, _) = kg.create_user("eve@example.com", "the old password", false);
    let mut old_session = Visitor::new(&kg);
    old_session
        .sign_in("eve@example.com", "the old password")
        .await;
    assert_eq!(old_session.get("/keys").await.status, 200);

    let (status, link) = kg
        .api(
            Method::POST,
            &format!("/users/{id}/password-reset"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{link}");
    let url = link["reset_url"].as_str().unwrap();
    let path = url.strip_prefix("/portal").unwrap();
    assert!(link["expires_at"].is_string());

    let mut visitor = Visitor::new(&kg);
    assert_eq!(visitor.get(path).await.status, 200);
    let short = visitor.post(path, &[("password", "short")]).await;
    assert_eq!(
        short.status, 422,
        "a short password, and the link still works"
    );
    let done = visitor
        .post(path, &[("password", "the new password")])
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(done.header("location"), "/portal/login?done=password-set");
    let login = visitor.get("/login?done=password-set").await;
    assert!(
        login.body.contains("Your new password is set"),
        "the page says so"
    );
    assert_eq!(old_session.get("/keys").await.status, 303, "sessions ended");
    assert_eq!(
        tokens(&kg, "eve@example.com", "the old password").await.0,
        401
    );
    assert_eq!(
        tokens(&kg, "eve@example.com", "the new password").await.0,
        200
    );
    assert_eq!(visitor.get(path).await.status, 404, "a link works once");
    let again = visitor
        .post(path, &[("password", "a third password")])
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(
        tokens(&kg, "eve@example.com", "a third password").await.0,
        401
    );
    assert_eq!(
        Visitor::new(&kg).get("/reset/kg_pr_invented").await.status,
        404
    );
}

#[tokio::test]
async fn a_user_changes_their_password_in_the_portal() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy());
    let mut here = Visitor::new(&kg);
    here.sign_up("finn@example.com").await;
    let mut elsewhere = Visitor::new(&kg);
    elsewhere
        .sign_in("finn@example.com", "long enough pw")
        .await;
    assert_eq!(elsewhere.get("/keys").await.status, 200);
    here.get("/password").await;
    let wrong = here
        .post(
            "/password",
            &[
                ("current_password", "not it at all"),
                ("password", "brand new pw"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let ok = here
        .post(
            "/password",
            &[
                ("current_password", "long enough pw"),
                ("password", "brand new pw"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("Your password was changed"));
    assert_eq!(here.get("/keys").await.status, 200, "this session stays");
    assert_eq!(elsewhere.get("/keys").await.status, 303, "the other ended");
    assert_eq!(tokens(&kg, "finn@example.com", "brand new pw").await.0, 200);
    assert_eq!(
        tokens(&kg, "finn@example.com", "long enough pw").await.0,
        401
    );
}

/// None of the user doors opens for a user or a managing key: 403, nothing changed.
#[tokio::test]
async fn only_an_admin_administers_users() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy());
    let (victim, _) = kg.create_user("vic@example.com", "long enough pw", false);
    kg.create_user("mal@example.com", "long enough pw", false);
    let mal = kg.login("mal@example.com", "long enough pw").await;
    let manager = kg
        .create_key(&["--scopes", "keys:manage", "--owner", "mal"])
        .1;
    for auth in [Auth::Bearer(&mal), Auth::Key(&manager)] {
        for (method, path, body) in [
            (Method::GET, "/users".to_string(), None),
            (
                Method::PUT,
                format!("/users/{victim}"),
                Some(json!({ "disabled": true })),
            ),
            (Method::DELETE, format!("/users/{victim}"), None),
            (
                Method::POST,
                format!("/users/{victim}/password-reset"),
                None,
            ),
        ] {
            let (status, answer) = kg.api(method.clone(), &path, auth, body).await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
        }
    }
    assert_eq!(
        tokens(&kg, "vic@example.com", "long enough pw").await.0,
        200
    );
    // An admin cannot lock themselves out.
    let (root, _) = kg.create_user("root@example.com", "long enough pw", true);
    let token = kg.login("root@example.com", "long enough pw").await;
    let (status, _) = kg
        .api(
            Method::PUT,
            &format!("/users/{root}"),
            Auth::Bearer(&token),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(status, 409);
    // Bad input is a 422.
    let admin = kg.create_key(&["--scopes", "admin"]).1;
    for body in [
        json!({}),
        json!({ "disabled": "yes" }),
        json!({ "disabled": true, "x": 1 }),
    ] {
        let (status, _) = kg
            .api(
                Method::PUT,
                &format!("/users/{victim}"),
                Auth::Key(&admin),
                Some(body),
            )
            .await;
        assert_eq!(status, 422);
    }
}
