//! The caller's trace in the logs: a request that carries a W3C `traceparent` (a mesh's
//! sidecar or an instrumented service sets it) is served inside a `request` span whose
//! `trace_id` and `span_id` are the caller's, so every line logged while serving it names
//! them (`DANMAKU_LOG_FORMAT=json`: under `span`), and the logs join the traces and metrics in
//! the team's backend. A request without one, or with a malformed one, gets no span.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;

/// Serves `request` inside its caller's trace, when it names one.
pub async fn traced(request: Request, next: Next) -> Response {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let caller = context.span().span_context().clone();
    if !caller.is_valid() {
        return next.run(request).await;
    }
    let span = tracing::info_span!(
        "request",
        trace_id = %caller.trace_id(),
        span_id = %caller.span_id(),
    );
    next.run(request).instrument(span).await
}
