//! The portal in-process, on the manual clock: a session ends at `session_ttl`.

use super::*;
use crate::app::testkit::Services;
use http::HeaderMap;

async fn visit(
    s: &Services,
    method: Method,
    path: &str,
    cookie: &str,
    body: &str,
) -> PortalResponse {
    let mut headers = HeaderMap::new();
    if !cookie.is_empty() {
        headers.insert(http::header::COOKIE, cookie.parse().unwrap());
    }
    let req = LocalRequest {
        method: &method,
        path,
        query: None,
        headers: &headers,
        body: body.as_bytes(),
        client_ip: Some("10.0.0.9".parse().unwrap()),
        request_id: None,
    };
    s.portal().handle(&s.rt().portal_context(), &req).await
}

fn set_cookie(r: &PortalResponse, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(h, _)| *h == "Set-Cookie")
        .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty())
}

/// The form token a page carries (its hidden `csrf` input).
fn csrf_of(r: &PortalResponse) -> String {
    let html = String::from_utf8_lossy(&r.body);
    let at = html.find("name=\"csrf\" value=\"").expect("a form") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn location(r: &PortalResponse) -> &str {
    r.headers
        .iter()
        .find(|(h, _)| *h == "Location")
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn a_session_ends_at_session_ttl_on_the_clock() {
    let s = Services::new();
    s.add_user("fay@example.com", "fay-password").await;
    let login = visit(&s, Method::GET, "/login", "", "").await;
    let pre = set_cookie(&login, session::PRE_COOKIE).unwrap();
    let token = csrf_of(&login);
    let body = format!("email=fay%40example.com&password=fay-password&csrf={token}");
    let signed_in = visit(&s, Method::POST, "/login", &format!("kg_pre={pre}"), &body).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let session = set_cookie(&signed_in, session::SESSION_COOKIE).unwrap();
    let cookie = format!("kg_session={session}");
    assert_eq!(
        visit(&s, Method::GET, "/keys", &cookie, "").await.status,
        200
    );
    // portal.session_ttl is 1h in the test config.
    s.clock.advance_ms(3_600_000 - 1);
    assert_eq!(
        visit(&s, Method::GET, "/keys", &cookie, "").await.status,
        200
    );
    s.clock.advance_ms(1);
    let expired = visit(&s, Method::GET, "/keys", &cookie, "").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&expired), "/portal/login");
}

#[tokio::test]
async fn sign_in_failures_turn_to_429_until_the_minute_turns() {
    let s = Services::new();
    s.add_user("gil@example.com", "gil-password").await;
    let login = visit(&s, Method::GET, "/login", "", "").await;
    let pre = set_cookie(&login, session::PRE_COOKIE).unwrap();
    let cookie = format!("kg_pre={pre}");
    let token = csrf_of(&login);
    let form = |password: &str| format!("email=gil%40example.com&password={password}&csrf={token}");
    for _ in 0..10 {
        let r = visit(&s, Method::POST, "/login", &cookie, &form("wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.failed_authentication);
    }
    let r = visit(&s, Method::POST, "/login", &cookie, &form("gil-password")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    s.clock.advance_ms(60_000);
    let r = visit(&s, Method::POST, "/login", &cookie, &form("gil-password")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[test]
fn every_page_answers_and_allow_is_derived_from_the_routes() {
    assert_eq!(router::shadowed(ROUTES), Vec::<String>::new());
    for (method, path, allow) in [
        (Method::PUT, "/login", "GET, POST"),
        (Method::GET, "/logout", "POST"),
        (Method::POST, "/keys/key_1", "GET"),
        (Method::DELETE, "/keys/key_1/revoke", "GET, POST"),
        (Method::POST, "/static/portal.css", "GET"),
    ] {
        assert_eq!(
            router::route(ROUTES, &method, path),
            Routed::WrongMethod(allow.into()),
            "{method} {path}"
        );
    }
    assert_eq!(
        router::route(ROUTES, &Method::GET, "/static/other.css"),
        Routed::NotFound
    );
}

#[tokio::test]
async fn every_page_names_the_portals_own_icon() {
    let s = Services::new();
    let page = visit(&s, Method::GET, "/login", "", "").await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains(
            r#"<link rel="icon" type="image/svg+xml" href="/portal/static/favicon.svg">"#
        ),
        "{html}"
    );
    let icon = visit(&s, Method::GET, "/static/favicon.svg", "", "").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert!(icon
        .headers
        .iter()
        .any(|(h, v)| *h == "Content-Type" && v == "image/svg+xml"));
    assert!(String::from_utf8_lossy(&icon.body).starts_with("<svg"));
}

#[tokio::test]
async fn a_page_after_an_action_says_what_it_did_in_words_of_its_own() {
    let s = Services::new();
    let said = |query: Option<&'static str>| {
        let s = &s;
        async move {
            let headers = HeaderMap::new();
            let req = LocalRequest {
                method: &Method::GET,
                path: "/login",
                query,
                headers: &headers,
                body: b"",
                client_ip: Some("10.0.0.9".parse().unwrap()),
                request_id: None,
            };
            let r = s.portal().handle(&s.rt().portal_context(), &req).await;
            String::from_utf8_lossy(&r.body).into_owned()
        }
    };
    assert!(said(Some("done=signed-out"))
        .await
        .contains(r#"<p class="notice" role="status">You are signed out.</p>"#));
    for (done, words) in [
        ("done=password-set", "Your new password is set"),
        ("done=plan", "Plan changed"),
        ("done=credits", "Credits added"),
        ("done=suspended", "Account suspended"),
        ("done=resumed", "Account resumed"),
    ] {
        assert!(said(Some(done)).await.contains(words), "{done}");
    }
    for other in [None, Some("done=<script>"), Some("done=anything")] {
        let html = said(other).await;
        assert!(!html.contains("class=\"notice\""), "{other:?}: {html}");
        assert!(!html.contains("<script>alert"));
    }
}

#[test]
fn a_new_keys_first_call_is_written_as_the_api_takes_keys() {
    use super::pages::SendKey;
    let sources = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        SendKey::of(&sources(&["header:x-api-key", "bearer"]))
            .curl("https://api.example.com", "k1"),
        "curl -i -H 'x-api-key: k1' https://api.example.com/"
    );
    assert_eq!(
        SendKey::of(&sources(&["bearer"])).curl("http://127.0.0.1:8080", "k1"),
        "curl -i -H 'Authorization: Bearer k1' http://127.0.0.1:8080/"
    );
    assert_eq!(
        SendKey::of(&sources(&["query:api_key"])).curl("http://h", "k1"),
        "curl -i 'http://h/?api_key=k1'"
    );
    let host = |h: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, h.parse().unwrap());
        origin_of(&headers, false)
    };
    assert_eq!(
        host("api.example.com:8080"),
        Some("http://api.example.com:8080".into())
    );
    assert_eq!(host("[::1]:8080"), Some("http://[::1]:8080".into()));
    // A Host that is not a plain host gets no example at all.
    assert_eq!(host("evil.com/'; rm -rf"), None);
    assert_eq!(host("a b"), None);
}
