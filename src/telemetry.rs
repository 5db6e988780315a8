//! OpenTelemetry: one meter provider, every instrument of the contract's telemetry table
//! (section 7), exported over OTLP (the standard `OTEL_*` variables; `grpc` or
//! `http/protobuf`) and rendered as Prometheus text for `GET /metrics` from the same
//! instruments.
//!
//! The hot path stays cheap: counters are plain atomics in [`Metrics`] that observable
//! instruments read at collection time (no SDK call per delivery), and histograms are
//! recorded once per comment per instance or once per connection, never per socket write.
//! The readiness gauge asks [`Readiness`] at collection time, as `/readyz` does.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Export interval when `OTEL_METRIC_EXPORT_INTERVAL` is unset (the SDK's own default,
/// 60 s, is too sparse for 5-minute burn-rate windows).
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(10);

pub struct Telemetry {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

impl Telemetry {
    /// The meter provider with a Prometheus reader and, when an OTLP endpoint is
    /// configured, a periodic OTLP reader. Must run inside the Tokio runtime (gRPC).
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let resource = Resource::builder()
            .with_service_name("danmaku")
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", config.pod_name.clone()),
                KeyValue::new("deployment.slot", config.slot.as_str()),
            ])
            .build();
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus);
        if let Some(reader) = otlp_reader()? {
            builder = builder.with_reader(reader);
        }
        Ok(Self {
            provider: builder.build(),
            registry,
        })
    }

    pub fn meter(&self) -> Meter {
        self.provider.meter("danmaku")
    }

    /// Registers the observable instruments over `metrics` and `readiness`.
    pub fn observe(&self, metrics: Arc<Metrics>, readiness: Arc<Readiness>) {
        let meter = self.meter();
        observe_counts(&meter, &metrics);
        observe_comments(&meter, &metrics);
        observe_egress(&meter, &metrics);
        observe_readiness(&meter, readiness);
    }

    /// The Prometheus text exposition of every instrument.
    pub fn render_prometheus(&self) -> String {
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = prometheus::Encoder::encode(&encoder, &self.registry.gather(), &mut out)
        {
            tracing::warn!(%error, "could not render /metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Flushes and stops the exporters (off the async threads: the SDK blocks).
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The OTLP reader the `OTEL_*` variables ask for, if any.
fn otlp_reader() -> anyhow::Result<Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol = set("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?,
        "http/protobuf" => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?,
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL: '{other}' is not supported (grpc or http/protobuf)"
        ),
    };
    let interval = match set("OTEL_METRIC_EXPORT_INTERVAL") {
        None => DEFAULT_EXPORT_INTERVAL,
        Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
            anyhow::anyhow!("OTEL_METRIC_EXPORT_INTERVAL: '{ms}' is not milliseconds")
        })?),
    };
    Ok(Some(
        PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build(),
    ))
}

/// The counts that carry no label: connections, subscriptions, refused handshakes, rebuilt
/// subscriptions.
fn observe_counts(meter: &Meter, metrics: &Arc<Metrics>) {
    let m = metrics.clone();
    meter
        .i64_observable_up_down_counter("danmaku.ws.connections")
        .with_unit("{connection}")
        .with_description("Open WebSocket connections")
        .with_callback(move |o| o.observe(m.connections(), &[]))
        .build();
    let m = metrics.clone();
    meter
        .i64_observable_up_down_counter("danmaku.streams.subscribed")
        .with_unit("{stream}")
        .with_description("Streams this instance holds a broker subscription for")
        .with_callback(move |o| o.observe(m.streams_subscribed(), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.comments.delivered")
        .with_unit("{message}")
        .with_description("Comment deliveries written to sockets")
        .with_callback(move |o| o.observe(m.delivered_total(), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.ws.handshakes.refused")
        .with_unit("{handshake}")
        .with_description("WebSocket handshakes refused before the upgrade")
        .with_callback(move |o| o.observe(m.handshakes_refused(), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.broker.subscriptions.rebuilt")
        .with_unit("{subscription}")
        .with_description(
            "Broker subscriptions rebuilt after a probe went unanswered or a slot moved",
        )
        .with_callback(move |o| o.observe(m.subscriptions_rebuilt(), &[]))
        .build();
}

/// The comment counters, each by one label: published by `kind`, dropped and thinned by
/// `reason`, rejected by `code`, held for review by `outcome`.
fn observe_comments(meter: &Meter, metrics: &Arc<Metrics>) {
    type Read = fn(&Metrics) -> Vec<(&'static str, u64)>;
    let counters: [(&'static str, &'static str, &'static str, &'static str, Read); 5] = [
        (
            "danmaku.comments.published",
            "{comment}",
            "Comments accepted",
            "kind",
            |m| m.published_by_kind().collect(),
        ),
        (
            "danmaku.comments.dropped",
            "{message}",
            "Deliveries dropped, by reason",
            "reason",
            |m| m.dropped_by_reason().collect(),
        ),
        (
            "danmaku.comments.thinned",
            "{message}",
            "Comments a viewer was not sent and told of in skipped, by reason",
            "reason",
            |m| m.thinned_by_reason().collect(),
        ),
        (
            "danmaku.comments.rejected",
            "{comment}",
            "Client comments refused, by error code",
            "code",
            |m| m.rejected_by_code().collect(),
        ),
        (
            "danmaku.comments.held",
            "{comment}",
            "Comments held for review, and what became of them, by outcome",
            "outcome",
            |m| m.held_by_outcome().collect(),
        ),
    ];
    for (name, unit, description, label, read) in counters {
        let m = metrics.clone();
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| {
                for (value, n) in read(&m) {
                    o.observe(n, &[KeyValue::new(label, value)]);
                }
            })
            .build();
    }
}

/// What leaves by the WebSocket: bytes by socket kind, compressions made, client messages
/// refused while inflating.
fn observe_egress(meter: &Meter, metrics: &Arc<Metrics>) {
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.ws.written")
        .with_unit("By")
        .with_description("Bytes handed to sockets, by whether the socket negotiated compression")
        .with_callback(move |o| {
            for (kind, n) in m.egress.bytes_by_kind() {
                o.observe(n, &[KeyValue::new("compression", kind)]);
            }
        })
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.ws.frames.compressed")
        .with_unit("{frame}")
        .with_description("Frames compressed: once per frame, for every socket that shares it")
        .with_callback(move |o| o.observe(m.egress.frames_compressed(), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("danmaku.ws.inflate.refused")
        .with_unit("{message}")
        .with_description("Compressed client messages refused, by reason")
        .with_callback(move |o| {
            for (reason, n) in m.egress.inflate_refused_by_reason() {
                o.observe(n, &[KeyValue::new("reason", reason)]);
            }
        })
        .build();
}

/// Readiness, asked at collection time as `/readyz` asks it, and the CPU fraction it
/// compares.
fn observe_readiness(meter: &Meter, readiness: Arc<Readiness>) {
    let r = readiness.clone();
    meter
        .i64_observable_gauge("danmaku.readiness.state")
        .with_unit("1")
        .with_description("1 ready, 0 not ready (once per reason that holds)")
        .with_callback(move |o| {
            let reasons = r.reasons();
            if reasons.is_empty() {
                o.observe(1, &[]);
            }
            for reason in reasons {
                o.observe(0, &[KeyValue::new("reason", reason.as_str())]);
            }
        })
        .build();
    meter
        .f64_observable_gauge("danmaku.process.cpu.utilization")
        .with_unit("1")
        .with_description("The CPU fraction readiness compares with its threshold")
        .with_callback(move |o| o.observe(readiness.cpu_fraction(), &[]))
        .build();
}
