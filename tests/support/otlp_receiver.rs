//! A test OTLP/gRPC trace receiver: the collector's `TraceService` (opentelemetry-proto types,
//! tonic server) on 127.0.0.1:0, keeping every span it is sent so tests can await and inspect
//! them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::watch;

use crate::harness::PATIENCE;

/// One received span, with ids as lowercase hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP `SpanKind`: 2 server, 3 client.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
}

pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;

/// A running receiver.
pub struct OtlpReceiver {
    addr: SocketAddr,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    spans: watch::Receiver<Vec<ReceivedSpan>>,
    task: tokio::task::JoinHandle<()>,
}

struct Collector {
    spans: watch::Sender<Vec<ReceivedSpan>>,
    /// Spans received; with `keep: false` only this is updated (a sink for load tests).
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    keep: bool,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if !self.keep {
            let n: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.count
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            return Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }));
        }
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        self.spans.send_modify(|all| all.extend(received));
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// A receiver that only counts spans ([`OtlpReceiver::received`]): a sink for load tests.
    pub async fn start_sink() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, spans) = watch::channel(Vec::new());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let service = TraceServiceServer::new(Collector {
            spans: tx,
            count: count.clone(),
            keep,
        });
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            addr,
            count,
            spans,
            task,
        }
    }

    /// Spans received by a sink.
    pub fn received(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `http://127.0.0.1:PORT`, for `telemetry.tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Wait (bounded) until at least `n` spans arrived; returns all so far.
    pub async fn wait_for_spans(&self, n: usize) -> Vec<ReceivedSpan> {
        let mut spans = self.spans.clone();
        let wait = spans.wait_for(|all| all.len() >= n);
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(Ok(all)) => all.clone(),
            _ => panic!(
                "expected {n} spans, received: {:#?}",
                self.spans.borrow().clone()
            ),
        }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.borrow().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
