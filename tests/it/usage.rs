//! Usage that tells the truth (docs/portal.md, Usage), black-box: a customer's
//! requests, ending every way a request can, are counted to the request and
//! shown the same in the three places that show them — the management API's
//! usage answer, the customer's key page and the admins' overview — with the
//! paths called (ids folded), failures by reason, and latency to the µs.

use crate::common::portal_visitor::{between, Visitor};
use crate::common::{client, start_upstream, Keygate};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const POLICY: &str = r#"
tiers:
  free: { per_minute: 12, credits: { refill: 2, every: month } }
default_tier: free
routes:
  - { name: search-route, path: /api/search, methods: [POST], scopes: [search], cost: 1 }
  - { name: admin-route, path: /api/admin, scopes: [admin_area] }
management: { registration: open, user_scopes: [search] }
portal: { enabled: true, title: "Acme API" }
"#;

/// The texts of a table row's cells, tags removed (`<br>` read as a space).
fn cells(row: &str) -> Vec<String> {
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let cell = &cell[cell.find('>').unwrap() + 1..];
            let cell = &cell[..cell.find("</td>").unwrap()];
            let mut text = String::new();
            let mut in_tag = false;
            for c in cell.replace("<br>", " ").chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// A latency as the portal writes it (`412 µs`, `1.25 ms`, `2.0 s`), in ms.
fn latency_ms(text: &str) -> f64 {
    let (n, unit) = text.split_once(' ').unwrap_or_else(|| panic!("{text}"));
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("{text}"));
    match unit {
        "µs" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        u => panic!("unit {u} in {text}"),
    }
}

/// What a totals row of the portal shows: requests, successful, failed with its
/// reasons, and the average latency.
fn totals_row(page: &str, label: &str) -> Vec<String> {
    cells(&between(page, &format!("<th>{label}</th>"), "</tr>"))
}

#[tokio::test]
async fn usage_agrees_to_the_request_in_the_api_the_key_page_and_the_overview() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let mut ann = Visitor::new(&kg);
    ann.sign_up("ann@example.com").await;
    let (id, secret) = ann.create_key("ann's app").await;

    // Every way a request ends, and what the client saw of each.
    let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
    let send = |method: reqwest::Method, path: &str| {
        client()
            .request(method, kg.url(path))
            .header("X-API-Key", &secret)
            .send()
    };
    let mut calls: Vec<(reqwest::Method, String, u16)> = vec![
        (
            reqwest::Method::POST,
            "/api/search?q=a&api_key=leak".into(),
            200,
        ),
        (reqwest::Method::POST, "/api/search".into(), 200),
        (reqwest::Method::POST, "/api/search".into(), 402),
        (reqwest::Method::GET, "/items/1".into(), 200),
        (reqwest::Method::GET, "/items/22".into(), 200),
        (
            reqwest::Method::GET,
            "/items/0b6f2c1e-3f7a-4f3e-9f55-2b7c7f7e2a10".into(),
            200,
        ),
        (reqwest::Method::GET, "/status/500".into(), 500),
        (reqwest::Method::GET, "/status/404".into(), 404),
        (reqwest::Method::GET, "/api/admin".into(), 403),
    ];
    for (method, path, want) in &calls {
        let status = send(method.clone(), path).await.unwrap().status().as_u16();
        assert_eq!(status, *want, "{method} {path}");
        *seen.entry(status).or_default() += 1;
    }
    // Then the minute's window runs out.
    let mut limited = 0;
    for _ in 0..20 {
        let status = send(reqwest::Method::GET, "/items/9")
            .await
            .unwrap()
            .status()
            .as_u16();
        *seen.entry(status).or_default() += 1;
        calls.push((reqwest::Method::GET, "/items/9".into(), status));
        if status == 429 {
            limited += 1;
            if limited == 2 {
                break;
            }
        }
    }
    assert_eq!(limited, 2, "the window ran out: {seen:?}");
    let count = |s: u16| seen.get(&s).copied().unwrap_or(0);
    let total: u64 = seen.values().sum();
    let successful = count(200);
    let by_reason = json!({
        "rate_limited": count(429), "no_credits": count(402), "refused": count(403),
        "api_error": count(500) + count(404),
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the logging phase runs after the response

    // The management API.
    let (_, admin_key) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let resp = client()
        .get(kg.url(&format!("/v1/keys/{id}/usage?period=day")))
        .header("X-API-Key", &admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let usage: Value = resp.json().await.unwrap();
    assert_eq!(usage["total_requests"], total, "{usage}");
    assert_eq!(usage["successful_requests"], successful, "{usage}");
    assert_eq!(usage["failed_requests"], total - successful, "{usage}");
    assert_eq!(usage["failed_by_reason"], by_reason, "{usage}");
    let average = usage["average_response_ms"].as_f64().unwrap();
    assert!(average > 0.0, "measured to the µs, never 0: {usage}");
    let endpoints: BTreeMap<&str, &Value> = usage["top_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["endpoint"].as_str().unwrap(), &e["requests"]))
        .collect();
    let items = calls.iter().filter(|c| c.1.starts_with("/items/")).count();
    assert_eq!(
        endpoints,
        BTreeMap::from([
            ("/api/search", &json!(3)),
            ("/items/{id}", &json!(items)),
            ("/status/{id}", &json!(2)),
            ("/api/admin", &json!(1)),
        ]),
        "the paths called, ids folded, no query, no route name: {usage}"
    );

    // The customer's key page.
    let page = ann.get(&format!("/keys/{id}")).await;
    assert_eq!(page.status, 200);
    let row = totals_row(&page.body, "Last 24 hours");
    assert_eq!(row[0], total.to_string(), "{row:?}");
    assert_eq!(row[1], successful.to_string(), "{row:?}");
    let failed_words = format!(
        "{} {} rate limited, {} out of credits, {} refused by the gateway, {} errors from the API",
        total - successful,
        count(429),
        count(402),
        count(403),
        count(500) + count(404)
    );
    assert_eq!(row[2], failed_words, "{row:?}");
    let shown = latency_ms(&row[3]);
    assert!(
        (shown - average).abs() <= average * 0.01 + 0.001,
        "the page's {} is the API's {average} ms",
        row[3]
    );
    for path in ["/api/search", "/items/{id}", "/status/{id}", "/api/admin"] {
        assert!(
            page.body.contains(&format!("<code>{path}</code>")),
            "{path}"
        );
    }
    for hidden in ["search-route", "admin-route", "api_key=leak", ">default<"] {
        assert!(!page.body.contains(hidden), "{hidden} on the key page");
    }
    assert!(page.body.contains("(UTC)"), "times say their zone");

    // The admins' overview: ann's is the only key used.
    kg.create_user("root@example.com", "admin password", true);
    let mut admin = Visitor::new(&kg);
    let p = admin.sign_in("root@example.com", "admin password").await;
    assert_eq!(p.status, 303);
    let overview = admin.get("/overview").await;
    eprintln!("usage answer: {usage}\nkey page row: {row:?}");
    let orow = totals_row(&overview.body, "Last 24 hours");
    assert_eq!(orow, row, "the overview shows the key page's numbers");
    assert!(overview.body.contains("(UTC)"));
}
