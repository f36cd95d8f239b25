//! Traces (docs/operations.md, Traces), black-box against a real OTLP/HTTP
//! receiver that decodes what it gets with the official OpenTelemetry protobuf
//! definitions: one server span per request, in the client's trace when it sent a
//! `traceparent`, the upstream's parent; refusals traced too; no credential in
//! any span; the sample ratio obeyed whatever the client's flag says; the last
//! spans sent when keygate stops; nothing rewritten when traces are off.

use crate::common::receiver::{Received, Receiver};
use crate::common::{client, json, metric_sum, start_upstream, Keygate};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;

const POLICY: &str = r#"
tiers:
  free: { per_minute: 2 }
default_tier: free
routes:
  - { name: health, path: /health, auth: none }
  - { name: api, path: /api/* }
"#;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A `telemetry:` section exporting to `receiver` at `ratio`.
fn telemetry(receiver: &Receiver, ratio: &str) -> String {
    format!(
        "telemetry:\n  otlp_endpoint: \"{}\"\n  sample_ratio: {ratio}\n  headers: {{ x-collector-key: collector-secret-1 }}\n",
        receiver.url("")
    )
}

/// One exported span, with its resource's attributes.
#[derive(Debug)]
struct Exported {
    span: Span,
    resource: HashMap<String, String>,
}

impl Exported {
    fn attributes(&self) -> HashMap<String, String> {
        self.span
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect()
    }

    fn attribute(&self, name: &str) -> Option<String> {
        self.attributes().get(name).cloned()
    }

    fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span in what the receiver got, each export checked for its shape (a
/// protobuf POST to `/v1/traces` with the configured header).
fn spans(got: &[Received]) -> Vec<Exported> {
    let mut out = Vec::new();
    for r in got {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-collector-key"), Some("collector-secret-1"));
        let request = ExportTraceServiceRequest::decode(r.raw.as_slice())
            .expect("an OTLP ExportTraceServiceRequest");
        for rs in request.resource_spans {
            let resource: HashMap<String, String> = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| {
                    (
                        kv.key.clone(),
                        text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    out.push(Exported {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Waits until the receiver holds at least `n` spans; returns them all.
async fn wait_spans(receiver: &Receiver, n: usize) -> Vec<Exported> {
    let got = receiver
        .wait_until(Duration::from_secs(15), |got| spans(got).len() >= n)
        .await;
    spans(&got)
}

/// The `traceparent` the upstream got, from the echo's answer.
fn upstream_traceparent(echo: &serde_json::Value) -> Option<String> {
    echo["headers"]["traceparent"][0].as_str().map(String::from)
}

#[tokio::test]
async fn a_request_is_one_span_in_the_clients_trace_and_the_upstream_is_its_child() {
    let up = start_upstream().await;
    let receiver = Receiver::start().await;
    let kg = Keygate::start(up, &format!("{POLICY}{}", telemetry(&receiver, "1.0")));
    let (key_id, key) = kg.create_key(&[]);
    let http = client();

    let resp = http
        .get(kg.url("/api/things?page=2"))
        .header("X-API-Key", &key)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .header("X-Request-Id", "trace-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    let forwarded = upstream_traceparent(&echo).expect("the upstream got a traceparent");
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts.len(), 4, "{forwarded}");
    assert_eq!(parts[0], "00");
    assert_eq!(
        parts[1], CLIENT_TRACE,
        "the client's trace continues upstream"
    );
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "the upstream's parent is keygate's span"
    );
    assert_eq!(parts[3], "01", "sampled");
    assert_eq!(echo["headers"]["tracestate"][0], "vendor=opaque");

    let spans = wait_spans(&receiver, 1).await;
    let span = spans
        .iter()
        .find(|s| s.trace_id() == CLIENT_TRACE)
        .expect("a span in the client's trace");
    assert_eq!(hex::encode(&span.span.parent_span_id), CLIENT_SPAN);
    assert_eq!(hex::encode(&span.span.span_id), parts[2]);
    assert_eq!(span.span.kind, SpanKind::Server as i32);
    assert_eq!(span.span.name, "GET api");
    assert!(span.span.end_time_unix_nano > span.span.start_time_unix_nano);
    let now_ns = crate::common::since_epoch().as_nanos() as u64;
    assert!(
        now_ns - span.span.start_time_unix_nano < 60_000_000_000,
        "the span starts at the request's wall time"
    );
    let a = span.attributes();
    assert_eq!(a["keygate.route"], "api");
    assert_eq!(a["keygate.outcome"], "allowed");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["keygate.key_id"], key_id);
    assert_eq!(a["keygate.tier"], "free");
    assert_eq!(a["keygate.auth_method"], "api_key");
    assert_eq!(a["keygate.request_id"], "trace-test-1");
    assert!(!a.contains_key("keygate.reason"));
    assert_eq!(span.resource["service.name"], "keygate");
    let metrics = kg.metrics().await;
    assert!(metric_sum(&metrics, "keygate_trace_spans_total{result=\"exported\"}") >= 1.0);
    assert_eq!(
        metric_sum(&metrics, "keygate_trace_spans_total{result=\"failed\"}"),
        0.0
    );
    // No credential anywhere in what was exported.
    for r in receiver.received() {
        assert!(
            !r.raw.windows(key.len()).any(|w| w == key.as_bytes()),
            "the key was exported"
        );
    }
}

#[tokio::test]
async fn refusals_are_spans_too_and_a_request_without_traceparent_starts_a_trace() {
    let up = start_upstream().await;
    let receiver = Receiver::start().await;
    let kg = Keygate::start(up, &format!("{POLICY}{}", telemetry(&receiver, "1.0")));
    let (key_id, key) = kg.create_key(&[]);
    let http = client();
    let bad = format!("{key}x");

    // No credential, a bad one, then over the limit (2 a minute).
    let none = http.get(kg.url("/api/a")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = http
        .get(kg.url("/api/b"))
        .header("X-API-Key", &bad)
        .header("traceparent", "00-not-a-valid-parent-01")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for _ in 0..2 {
        assert_eq!(kg.get_key("/api/c", &key).await.status(), 200);
    }
    let limited = kg.get_key("/api/d", &key).await;
    assert_eq!(limited.status(), 429);
    let open = http.get(kg.url("/health")).send().await.unwrap();
    assert_eq!(open.status(), 200);

    let spans = wait_spans(&receiver, 6).await;
    assert_eq!(spans.len(), 6, "one span per request: {spans:#?}");
    let by_status = |status: &str| -> Vec<&Exported> {
        spans
            .iter()
            .filter(|s| s.attribute("http.response.status_code").as_deref() == Some(status))
            .collect()
    };
    let unauthorized = by_status("401");
    assert_eq!(unauthorized.len(), 2);
    for s in &unauthorized {
        assert_eq!(
            s.attribute("keygate.outcome").as_deref(),
            Some("unauthorized")
        );
        assert!(s.attribute("keygate.reason").is_some(), "{s:?}");
        assert!(s.attribute("keygate.key_id").is_none());
        // A refusal is the client's failure, not the server's.
        assert_ne!(s.span.status.as_ref().map_or(0, |st| st.code), 2);
    }
    let limited = by_status("429");
    assert_eq!(limited.len(), 1);
    assert_eq!(
        limited[0].attribute("keygate.outcome").as_deref(),
        Some("rate_limited")
    );
    assert_eq!(limited[0].attribute("keygate.key_id"), Some(key_id));
    let health: Vec<_> = spans
        .iter()
        .filter(|s| s.attribute("keygate.route").as_deref() == Some("health"))
        .collect();
    assert_eq!(health.len(), 1);
    assert!(health[0].attribute("keygate.auth_method").is_none());
    // Without a (valid) traceparent each request is the root of a trace of its own.
    let mut traces: Vec<String> = spans.iter().map(Exported::trace_id).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 6);
    for s in &spans {
        assert!(s.span.parent_span_id.is_empty(), "{s:?}");
        assert_ne!(s.trace_id(), "0".repeat(32));
    }
    for r in receiver.received() {
        assert!(!r.raw.windows(bad.len()).any(|w| w == bad.as_bytes()));
    }
}

#[tokio::test]
async fn the_sample_ratio_decides_whatever_the_client_flags_and_the_upstream_is_told() {
    let up = start_upstream().await;
    let receiver = Receiver::start().await;
    let kg = Keygate::start(up, &format!("{POLICY}{}", telemetry(&receiver, "0.0")));
    let http = client();
    for _ in 0..5 {
        let resp = http
            .get(kg.url("/health"))
            .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
            .send()
            .await
            .unwrap();
        let echo = json(resp).await;
        let forwarded = upstream_traceparent(&echo).expect("a traceparent upstream");
        // Still the client's trace, under keygate's (unrecorded) span, marked
        // not sampled: the upstream need not record it either.
        assert!(forwarded.starts_with(&format!("00-{CLIENT_TRACE}-")));
        assert!(!forwarded.contains(CLIENT_SPAN));
        assert!(forwarded.ends_with("-00"), "{forwarded}");
    }
    // Nothing is sent: give the exporter three of its one-second rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        spans(&receiver.received()).is_empty(),
        "sample_ratio 0 exports nothing"
    );
}

// Two threads: the receiver answers while this one waits for keygate to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_spans_are_sent_when_keygate_stops() {
    let up = start_upstream().await;
    let receiver = Receiver::start().await;
    let mut kg = Keygate::start(up, &format!("{POLICY}{}", telemetry(&receiver, "1.0")));
    let http = client();
    for _ in 0..3 {
        assert_eq!(
            http.get(kg.url("/health")).send().await.unwrap().status(),
            200
        );
    }
    // SIGTERM at once, before the exporter's one-second round.
    assert!(kg.terminate().success());
    let spans = spans(&receiver.received());
    assert_eq!(spans.len(), 3, "every span sent before exiting: {spans:#?}");
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_up_no_request() {
    let up = start_upstream().await;
    // It takes connections and never answers one.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let kg = Keygate::start(
        up,
        &format!("{POLICY}telemetry: {{ otlp_endpoint: \"http://{addr}\", timeout: 1s }}\n"),
    );
    let http = client();
    for round in 0..3 {
        for _ in 0..20 {
            let resp =
                tokio::time::timeout(Duration::from_secs(5), http.get(kg.url("/health")).send())
                    .await
                    .unwrap_or_else(|_| panic!("a request waited on the collector (round {round})"))
                    .unwrap();
            assert_eq!(resp.status(), 200);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The batches that timed out are counted, and the operator is told.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let failed = metric_sum(
            &kg.metrics().await,
            "keygate_trace_spans_total{result=\"failed\"}",
        );
        if failed >= 20.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "failed: {failed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(kg.logs().contains("the collector did not take a batch"));
    held.abort();
}

#[tokio::test]
async fn without_telemetry_the_clients_traceparent_reaches_the_upstream_untouched() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let sent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let resp = client()
        .get(kg.url("/health"))
        .header("traceparent", &sent)
        .send()
        .await
        .unwrap();
    let echo = json(resp).await;
    assert_eq!(upstream_traceparent(&echo), Some(sent));
}

#[test]
fn a_bad_telemetry_section_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.yaml");
    std::fs::write(
        &path,
        format!(
            "{}telemetry:\n  otlp_endpoint: \"collector:4318\"\n  sample_ratio: 1.5\n  service_name: \" \"\n  headers: {{ \"bad header\": x }}\n  timeout: 0s\n",
            crate::common::config_yaml("http://127.0.0.1:9", 0, 0, &dir.path().join("k.db"), POLICY)
        ),
    )
    .unwrap();
    let out = crate::common::check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "telemetry.otlp_endpoint",
        "telemetry.sample_ratio",
        "telemetry.service_name",
        "telemetry.headers.bad header",
        "telemetry.timeout",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
}
