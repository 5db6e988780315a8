//! OTLP export, received by an in-test collector over gRPC and over HTTP/protobuf: every
//! instrument of docs/protocol.md section 7 arrives with its unit, kind and resource
//! attributes, and the SLI histograms count real traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message as _;

use crate::helpers::*;

/// What the collector has seen: per metric name, its unit, kind, and a data count.
#[derive(Default, Clone)]
struct Seen {
    metrics: HashMap<String, (String, String, u64)>,
    resource: HashMap<String, String>,
}

type Store = Arc<Mutex<Seen>>;

fn record(store: &Store, request: ExportMetricsServiceRequest) {
    let mut seen = store.lock().unwrap();
    for rm in request.resource_metrics {
        if let Some(resource) = rm.resource {
            for kv in resource.attributes {
                if let Some(AnyValue::StringValue(v)) = kv.value.and_then(|v| v.value) {
                    seen.resource.insert(kv.key, v);
                }
            }
        }
        for sm in rm.scope_metrics {
            for metric in sm.metrics {
                let (kind, count) = match &metric.data {
                    Some(Data::Histogram(h)) => {
                        ("histogram", h.data_points.iter().map(|p| p.count).sum())
                    }
                    Some(Data::Sum(s)) if s.is_monotonic => ("counter", s.data_points.len() as u64),
                    Some(Data::Sum(s)) => ("updowncounter", s.data_points.len() as u64),
                    Some(Data::Gauge(g)) => ("gauge", g.data_points.len() as u64),
                    _ => ("other", 0),
                };
                // Counts seen so far: a cumulative export repeats earlier recordings (keep
                // the largest), a delta export carries only new ones (add them up).
                let delta = matches!(&metric.data, Some(Data::Histogram(h)) if h.aggregation_temporality == 1);
                let entry = seen
                    .metrics
                    .entry(metric.name.clone())
                    .or_insert_with(|| (metric.unit.clone(), kind.to_owned(), 0));
                *entry = (
                    metric.unit.clone(),
                    kind.to_owned(),
                    if delta {
                        entry.2 + count
                    } else {
                        entry.2.max(count)
                    },
                );
            }
        }
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        record(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts a collector speaking `protocol`; returns its endpoint and what it sees.
async fn collector(protocol: &str) -> (String, Store) {
    let store = Store::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match protocol {
        "grpc" => {
            let service = MetricsServiceServer::new(Grpc(store.clone()));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
        }
        _ => {
            let s = store.clone();
            let app = axum::Router::new().route(
                "/v1/metrics",
                axum::routing::post(move |body: Bytes| {
                    let s = s.clone();
                    async move {
                        record(&s, ExportMetricsServiceRequest::decode(body).unwrap());
                        ExportMetricsServiceResponse {
                            partial_success: None,
                        }
                        .encode_to_vec()
                    }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
    }
    (format!("http://{addr}"), store)
}

const INSTRUMENTS: [(&str, &str, &str); 12] = [
    ("danmaku.ws.init.duration", "s", "histogram"),
    ("danmaku.comment.delivery.duration", "s", "histogram"),
    ("danmaku.comment.fanout.duration", "s", "histogram"),
    ("danmaku.ws.connections", "{connection}", "updowncounter"),
    ("danmaku.streams.subscribed", "{stream}", "updowncounter"),
    ("danmaku.comments.published", "{comment}", "counter"),
    ("danmaku.comments.delivered", "{message}", "counter"),
    ("danmaku.comments.dropped", "{message}", "counter"),
    ("danmaku.comments.rejected", "{comment}", "counter"),
    ("danmaku.comments.held", "{comment}", "counter"),
    ("danmaku.readiness.state", "1", "gauge"),
    ("danmaku.process.cpu.utilization", "1", "gauge"),
];

async fn exports_every_instrument(protocol: &str) {
    let (endpoint, store) = collector(protocol).await;
    let (mut child, base) = spawn_binary(&[
        ("DANMAKU_SERVICE_TOKENS", SERVICE_TOKEN),
        ("DANMAKU_POD_NAME", "otlp-pod"),
        ("DANMAKU_SLOT", "green"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
    ])
    .await;

    // Real traffic: a viewer (init), comments through HTTP (delivery and fan-out).
    let (mut viewer, _) = tokio_tungstenite::connect_async(format!(
        "{}/v1/streams/otlp/ws",
        base.replace("http", "ws")
    ))
    .await
    .unwrap();
    // `init` first: comments posted before the connection has joined its stream arrive in
    // `init`, not as `comments` frames, and the count below would wait for them in vain.
    {
        use futures_util::StreamExt;
        let init = tokio::time::timeout(WAIT, viewer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(init.to_text().unwrap().starts_with(r#"{"type":"init""#));
    }
    let http = reqwest::Client::new();
    for i in 0..3 {
        let status = http
            .post(format!("{base}/v1/streams/otlp/comments"))
            .bearer_auth(SERVICE_TOKEN)
            .json(&serde_json::json!({"kind": "system", "text": format!("c{i}")}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let mut comments = 0;
    while comments < 3 {
        use futures_util::StreamExt;
        let message = tokio::time::timeout(WAIT, viewer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // Comments that arrive together may share a frame: count the comments.
        if let Ok(text) = message.to_text()
            && text.starts_with(r#"{"type":"comments""#)
        {
            let frame: serde_json::Value = serde_json::from_str(text).unwrap();
            comments += frame["comments"].as_array().unwrap().len();
        }
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = store.lock().unwrap().clone();
        let complete = INSTRUMENTS.iter().all(|(name, _, kind)| {
            seen.metrics
                .get(*name)
                .is_some_and(|(_, _, count)| *kind != "histogram" || *count >= 1)
        });
        if complete {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{protocol}: missing {:?}",
            INSTRUMENTS
                .iter()
                .filter(|(n, _, _)| !seen.metrics.contains_key(*n))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (name, unit, kind) in INSTRUMENTS {
        let (got_unit, got_kind, _) = &seen.metrics[name];
        assert_eq!(
            (got_unit.as_str(), got_kind.as_str()),
            (unit, kind),
            "{protocol}: {name}"
        );
    }
    assert_eq!(
        seen.resource.get("service.name").map(String::as_str),
        Some("danmaku")
    );
    assert_eq!(
        seen.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        seen.resource.get("service.instance.id").map(String::as_str),
        Some("otlp-pod")
    );
    assert_eq!(
        seen.resource.get("deployment.slot").map(String::as_str),
        Some("green")
    );
    let _ = child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_grpc_receives_every_instrument() {
    exports_every_instrument("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_http_protobuf_receives_every_instrument() {
    exports_every_instrument("http/protobuf").await;
}
