//! A queued job carries the trace of the request that made it: the delivery attempt (and the
//! emit it makes) are spans of the caller's trace, seen by a real OTLP/gRPC receiver.

mod notifications_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use notifications_support::{KEY, Process, eventually, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_delivery_continues_the_trace_of_the_event() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let server = Process::start(free_port(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]).await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(format!("{}/api/events", server.url))
        .bearer_auth(KEY)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({ "type": "user.registered", "userId": "otto" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let (deliver, emit) = eventually(Duration::from_secs(20), "the delivery spans", async || {
        let spans = collector.0.lock().unwrap().clone();
        let in_trace = |name: &str| spans.iter().find(|s| hex(&s.trace_id) == trace && s.name == name).cloned();
        Some((in_trace("deliver browser")?, in_trace("emit newNotification")?))
    })
    .await;
    assert_eq!(deliver.kind, SpanKind::Consumer as i32);
    assert_eq!(emit.parent_span_id, deliver.span_id, "the emit happens inside the delivery");
}
