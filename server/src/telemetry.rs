//! Logging and distributed tracing.
//!
//! - **Logs**: JSON (or text) lines on stdout, and optionally daily-rotated JSON files under
//!   `LOG_DIR` kept 14 days. A JSON line has `timestamp`, `level`, `target`, `message`, the
//!   event's fields, the current `span`, and `trace_id` / `span_id` of the span it was logged
//!   in, so a log line leads to its trace and back.
//! - **Spans**: every HTTP API request ([`trace_http`]), Socket.IO handshake and event (in
//!   `socket`), emit (the instrumented emitter) and bus message between nodes (`delivery::bus`)
//!   is a `tracing` span, turned into an OpenTelemetry span. They are exported over OTLP
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, with `OTEL_SERVICE_NAME` and a parent-based
//!   ratio sampler (`OTEL_TRACES_SAMPLER_ARG`).
//! - **Context propagation** (W3C Trace Context): `traceparent` is accepted on HTTP requests
//!   and on the Socket.IO handshake (header, or `auth.traceparent` for browsers, which cannot
//!   set WebSocket headers), and travels between nodes inside bus messages.
//!
//! # Carrying a trace through a queued job
//!
//! Store [`current_traceparent`] in the job when it is enqueued (inside the span of the
//! request that caused it), and in the worker open the job's span with that parent:
//!
//! ```ignore
//! let job = Job { traceparent: telemetry::current_traceparent(), .. };
//! // worker:
//! let span = tracing::info_span!("job", otel.name = "job webhook", otel.kind = "consumer");
//! telemetry::set_remote_parent(&span, job.traceparent.as_deref());
//! deliver(job).instrument(span).await;
//! ```
//!
//! Only spans of this crate (`switchyard_server`) become OpenTelemetry spans: dependency
//! spans would add noise, and the exporter's own HTTP/2 client must never trace itself.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Instrument, Span, Subscriber, field};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter, fmt as tfmt};

use crate::config::{LogConfig, LogFormat, OtlpProtocol, TracingConfig};

/// Days of log files kept under `LOG_DIR` (the seed's retention).
const LOG_RETENTION_DAYS: usize = 14;

/// Keeps file logging and span export alive; flushes both when dropped (end of `main`).
pub struct TelemetryGuard {
    _file: Option<WorkerGuard>,
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Exports what is still batched; a collector that is gone costs at most its timeout.
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing spans failed: {e}");
        }
    }
}

/// Installs the global subscriber: log layers, and the OpenTelemetry layer (always, so log
/// lines carry trace ids; spans are exported only with an endpoint). Must run inside the
/// Tokio runtime, which the gRPC exporter uses.
pub fn init(log: &LogConfig, tracing: &TracingConfig) -> anyhow::Result<TelemetryGuard> {
    let provider = tracer_provider(tracing)?;
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("switchyard-server"))
        .with_filter(filter::Targets::new().with_target("switchyard_server", tracing::Level::INFO));

    let stdout = match log.log_format {
        LogFormat::Json => json_layer().boxed(),
        LogFormat::Text => tfmt::layer().boxed(),
    };
    let (file, guard) = match &log.log_dir {
        Some(dir) => {
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("switchyard")
                .filename_suffix("log")
                .max_log_files(LOG_RETENTION_DAYS)
                .build(dir)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(json_layer().with_writer(writer).with_filter(log_filter(&log.log_level))), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(stdout.with_filter(log_filter(&log.log_level)))
        .with(file)
        .try_init()?;
    if let Some(endpoint) = &tracing.otlp_endpoint {
        tracing::info!(endpoint, ratio = tracing.sample_ratio, "exporting spans over OTLP");
    }
    Ok(TelemetryGuard { _file: guard, provider })
}

/// `LOG_LEVEL` as a filter (`info` if it does not parse; config validation refuses that first).
fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn json_layer<S>() -> tfmt::Layer<S, JsonFields, WithTraceIds<Format<Json>>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let format = tfmt::format().json().flatten_event(true).with_current_span(true).with_span_list(false);
    tfmt::layer().json().event_format(WithTraceIds(format))
}

fn tracer_provider(config: &TracingConfig) -> anyhow::Result<SdkTracerProvider> {
    let instance =
        std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "local".to_owned());
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", format!("{instance}/{}", std::process::id())),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &config.otlp_endpoint else {
        // Nothing leaves the process: ids for log lines, and a sampled parent's decision kept
        // for whatever runs downstream.
        return Ok(builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))).build());
    };
    let exporter = match config.otlp_protocol {
        OtlpProtocol::Grpc => {
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?
        }
        OtlpProtocol::HttpProtobuf => {
            // The spec's generic endpoint is the collector's base URL; traces go to /v1/traces.
            let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
                endpoint.clone()
            } else {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .build()?
        }
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    Ok(builder.with_sampler(sampler).with_batch_exporter(exporter).build())
}

/// A JSON event format that appends `trace_id` and `span_id` of the innermost traced span.
pub struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.event_scope().and_then(|scope| scope.into_iter().find_map(|span| span_ids(&span.id())));
        // The inner format wrote one JSON object and a newline; add two members before `}`.
        match (ids, line.trim_end().strip_suffix('}')) {
            (Some(sc), Some(object)) => {
                writeln!(writer, "{object},\"trace_id\":\"{}\",\"span_id\":\"{}\"}}", sc.trace_id(), sc.span_id())
            }
            _ => writer.write_str(&line),
        }
    }
}

/// The OpenTelemetry ids of a span, when the OpenTelemetry layer tracks it.
fn span_ids(id: &tracing::span::Id) -> Option<SpanContext> {
    // The global dispatcher is the one formatting this event (no scoped dispatchers here).
    tracing::dispatcher::get_default(|dispatch| tracing_opentelemetry::get_otel_context(id, dispatch))
        .map(|cx| cx.span().span_context().clone())
        .filter(SpanContext::is_valid)
}

struct HeaderCarrier<'a>(&'a HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The W3C trace-context headers.
pub static TRACEPARENT: axum::http::HeaderName = axum::http::HeaderName::from_static("traceparent");
/// See [`TRACEPARENT`].
pub static TRACESTATE: axum::http::HeaderName = axum::http::HeaderName::from_static("tracestate");

/// The remote parent in `traceparent` / `tracestate` headers (empty when absent or malformed).
pub fn context_from_headers(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderCarrier(headers))
}

/// The remote parent a `traceparent` value names (empty when malformed).
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of `traceparent`, if it is a valid one. Call before entering `span`.
pub fn set_remote_parent(span: &Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.map(context_from_traceparent)
        && parent.span().span_context().is_valid()
    {
        let _ = span.set_parent(parent);
    }
}

struct MapCarrier(HashMap<String, String>);

impl Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The `traceparent` of the current span, to carry with work that continues elsewhere (a
/// queued job, a bus message); `None` outside a traced span.
pub fn current_traceparent() -> Option<String> {
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = MapCarrier(HashMap::new());
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.0.remove("traceparent")
}

/// Axum middleware: a server span per HTTP API request (`/api/...`, `/dev/...`), continuing
/// the caller's `traceparent`. Engine.IO requests never reach it (their routes are merged in
/// after this layer); probes, scrapes and the web app's files are left out as noise.
pub async fn trace_http(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !(path.starts_with("/api/") || path.starts_with("/dev/")) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %name,
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or_default(),
        http.response.status_code = field::Empty,
        otel.status_code = field::Empty,
    );
    let parent = context_from_headers(request.headers());
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::debug!(status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request")
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_into_a_remote_parent() {
        let cx = context_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert!(!context_from_traceparent("garbage").span().span_context().is_valid());
    }
}
