//! An OTLP collector stand-in for tests (feature `testing`): listens on a loopback port, takes
//! trace exports over http/protobuf (`POST /v1/traces`) or gRPC (the TraceService), and keeps
//! what it received with the request's headers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::{
    Span, span::SpanKind, status::StatusCode as SpanStatus,
};
use prost::Message;

/// One export request as the collector received it.
#[derive(Debug, Clone)]
pub struct Export {
    pub headers: HeaderMap,
    pub request: ExportTraceServiceRequest,
}

#[derive(Debug, Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

impl Received {
    fn push(&self, headers: HeaderMap, request: ExportTraceServiceRequest) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Export { headers, request });
    }
}

/// A running collector; stops when dropped.
pub struct Collector {
    url: String,
    received: Received,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Collector {
    /// OTLP/HTTP with protobuf bodies; [`Collector::url`] has no path, so the exporter adds
    /// `/v1/traces`.
    pub async fn http() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Received::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export_http))
            .with_state(received.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            received,
            server,
        })
    }

    /// OTLP/gRPC.
    pub async fn grpc() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Received::default();
        let service = TraceServiceServer::new(received.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Self {
            url,
            received,
            server,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every export received so far, oldest first.
    pub fn exports(&self) -> Vec<Export> {
        self.received
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.exports()
            .into_iter()
            .flat_map(|e| e.request.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }

    /// Waits up to `within` for a span that has `request_id` as `heimdall.request_id`.
    pub async fn span_of(&self, request_id: &str, within: Duration) -> Option<Span> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self.spans().into_iter().find(|s| {
                matches!(attribute(s, "heimdall.request_id"), Some(AnyValue::StringValue(id)) if id == request_id)
            });
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of a span's attribute `key`.
pub fn attribute<'s>(span: &'s Span, key: &str) -> Option<&'s AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The value of a resource attribute `key` in an export.
pub fn resource_attribute<'e>(export: &'e Export, key: &str) -> Option<&'e AnyValue> {
    export
        .request
        .resource_spans
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

async fn export_http(
    State(received): State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/x-protobuf")
    {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.push(headers, request);
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[async_trait::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        self.push(headers, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
