//! Traces (docs/operations.md, Traces): one span per request, continuing the
//! client's W3C `traceparent` or starting a trace, exported to an OpenTelemetry
//! collector over OTLP/HTTP (protobuf) by the SDK's batch processor on a thread of
//! its own. The request path only fills a span and hands it to a bounded queue;
//! when the queue is full the span is dropped, never waited for.

use super::metrics;
use super::otlp_http::BlockingOtlpClient;
use crate::config::TelemetryConfig;
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// How long spans wait in the queue before a batch is sent: a request shows up in
/// the collector within about this long.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Most spans waiting to be sent; past it a span is dropped.
const QUEUE_SPANS: usize = 8192;

/// How long shutting down waits for the last spans to be sent.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(3);

/// How often a collector that keeps failing is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The OTLP exporter, counting what it sends (`keygate_trace_spans_total`) and
/// logging a failing collector once a minute, not once a batch.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    warned: parking_lot::Mutex<Option<Instant>>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => metrics::TRACE_SPANS
                .with_label_values(&["exported"])
                .inc_by(spans),
            Err(e) => {
                metrics::TRACE_SPANS
                    .with_label_values(&["failed"])
                    .inc_by(spans);
                let mut warned = self.warned.lock();
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    *warned = Some(Instant::now());
                    tracing::warn!(error = %e, spans, "traces: the collector did not take a batch (logged once a minute)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TracingError(String);

/// The process's tracer: spans of requests, exported in the background.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

/// The OTLP/HTTP address of `endpoint`: as given when it names a path, else its
/// `/v1/traces` (as the OpenTelemetry SDKs do with a collector's base address).
pub fn traces_url(endpoint: &str) -> String {
    match endpoint.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.path(), "" | "/") && uri.query().is_none() => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_string(),
    }
}

impl Tracing {
    /// Starts the exporter for `config` (its thread, its queue); nothing is sent
    /// until a span ends.
    pub fn start(config: &TelemetryConfig) -> Result<Tracing, TracingError> {
        let timeout = config.timeout.get();
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_string()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(&config.otlp_endpoint))
            .with_timeout(timeout)
            .with_headers(headers)
            .with_http_client(BlockingOtlpClient::new(timeout))
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_EVERY)
            .with_max_queue_size(QUEUE_SPANS)
            .build();
        let exporter = CountingExporter {
            inner: exporter,
            warned: parking_lot::Mutex::new(None),
        };
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // The client's sampled flag is not trusted: any client could make every
            // request recorded. The trace id decides, as it does in every service
            // sampling at the same ratio.
            .with_sampler(Sampler::TraceIdRatioBased(config.sample_ratio))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("keygate");
        Ok(Tracing {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// The span of a request that arrived at `arrived` with `headers`: a child of
    /// the client's `traceparent` when it is valid, else the root of a new trace.
    /// Its times are wall-clock, like the access line's.
    pub fn begin(
        &self,
        method: &http::Method,
        headers: &HeaderMap,
        arrived: Instant,
    ) -> RequestSpan {
        let started_us =
            crate::clock::log_timestamp_us().saturating_sub(arrived.elapsed().as_micros() as u64);
        let parent = self
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder(method.as_str().to_string())
            .with_kind(SpanKind::Server)
            .with_start_time(UNIX_EPOCH + Duration::from_micros(started_us))
            .start_with_context(&self.tracer, &parent);
        let cx = span.span_context();
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        );
        RequestSpan {
            traceparent: HeaderValue::from_str(&traceparent)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            started_us,
            span,
        }
    }

    /// Sends what is queued and stops the exporter, waiting at most a few seconds
    /// (blocks: call it off the server's runtime).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_AT_EXIT) {
            tracing::debug!(error = %e, "traces: the last spans may not have been sent");
        }
    }
}

/// One request's span, from its arrival to its access line.
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    traceparent: HeaderValue,
    started_us: u64,
}

/// What a request's span says of it when it ends: never a credential.
pub struct SpanEnd<'a> {
    /// The route's name (`management`, `portal` for keygate's own).
    pub route: &'a str,
    /// The metrics' outcome (`allowed`, `rate_limited`, …).
    pub outcome: &'a str,
    /// Why it was refused (`-` when it was not).
    pub reason: &'a str,
    /// The status written (0: none).
    pub status: u16,
    /// The key's id, for a key.
    pub key_id: Option<&'a str>,
    /// The key's account, when it has one.
    pub account_id: Option<&'a str>,
    /// The caller's tier, once known.
    pub tier: Option<&'a str>,
    /// `api_key` or `jwt`, once known.
    pub auth_method: Option<&'static str>,
    /// The request id, as in the access line.
    pub request_id: &'a str,
    /// `1.1` or `2`.
    pub protocol_version: &'static str,
    /// How long keygate held it.
    pub elapsed: Duration,
}

impl RequestSpan {
    /// The `traceparent` the upstream gets: this trace, with keygate's span as the
    /// parent and keygate's sampling decision.
    pub fn traceparent(&self) -> &HeaderValue {
        &self.traceparent
    }

    /// Ends the span with what `end` says, and queues it for export if it is
    /// sampled (an unsampled span costs nothing more).
    pub fn finish(mut self, method: &http::Method, end: &SpanEnd<'_>) {
        let end_time = UNIX_EPOCH + Duration::from_micros(self.started_us) + end.elapsed;
        if !self.span.is_recording() {
            return;
        }
        self.span
            .update_name(format!("{} {}", method.as_str(), end.route));
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new(
            "http.request.method",
            method.as_str().to_string(),
        ));
        attributes.push(KeyValue::new("keygate.route", end.route.to_string()));
        attributes.push(KeyValue::new("keygate.outcome", end.outcome.to_string()));
        if end.reason != "-" {
            attributes.push(KeyValue::new("keygate.reason", end.reason.to_string()));
        }
        if end.status != 0 {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(end.status),
            ));
        }
        attributes.push(KeyValue::new(
            "keygate.request_id",
            end.request_id.to_string(),
        ));
        attributes.push(KeyValue::new(
            "network.protocol.version",
            end.protocol_version,
        ));
        let optional = [
            ("keygate.key_id", end.key_id),
            ("keygate.account_id", end.account_id),
            ("keygate.tier", end.tier),
            ("keygate.auth_method", end.auth_method),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                attributes.push(KeyValue::new(name, v.to_string()));
            }
        }
        self.span.set_attributes(attributes);
        // A server span is an error when the server failed (5xx, or no answer), not
        // when it refused the client.
        if end.status >= 500 || end.status == 0 {
            self.span.set_status(Status::error(end.outcome.to_string()));
        }
        self.span.end_with_timestamp(end_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(ratio: f64) -> Tracing {
        let config: TelemetryConfig = serde_yaml::from_str(&format!(
            "{{ otlp_endpoint: \"http://127.0.0.1:9\", sample_ratio: {ratio}, timeout: 1s }}"
        ))
        .unwrap();
        Tracing::start(&config).unwrap()
    }

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
        h
    }

    #[test]
    fn a_collectors_base_address_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.example.com/api/traces"),
            "https://otlp.example.com/api/traces"
        );
    }

    #[test]
    fn the_upstreams_parent_is_keygates_span_in_the_clients_trace() {
        let t = tracing(1.0);
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let span = t.begin(&http::Method::GET, &headers(client), Instant::now());
        let up = span.traceparent().to_str().unwrap().to_string();
        assert!(
            up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{up}"
        );
        assert!(!up.contains("00f067aa0ba902b7"));
        // Recorded at ratio 1.0 though the client's flag said not to.
        assert!(up.ends_with("-01"), "{up}");
        drop(span);
        let none = tracing(0.0);
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = none.begin(&http::Method::GET, &headers(client), Instant::now());
        assert!(span.traceparent().to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn a_malformed_traceparent_starts_a_trace() {
        let t = tracing(1.0);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let span = t.begin(&http::Method::GET, &headers(bad), Instant::now());
            let up = span.traceparent().to_str().unwrap().to_string();
            assert!(
                !up.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{bad} -> {up}"
            );
            assert!(
                !up.contains("-00000000000000000000000000000000-"),
                "{bad} -> {up}"
            );
            assert_eq!(up.len(), 55, "{up}");
        }
    }
}
