//! The Redis broker: standalone Redis ≥ 7 or a Redis Cluster, sharded Pub/Sub in both.
//! This module (with its children) is the only place that imports fred.
//!
//! - Publishing is one Lua script on the stream's slot ([`scripts::PUBLISH`]): history,
//!   counters, idempotency and `SPUBLISH` together.
//! - Subscriptions and everything that keeps them honest (resubscribe, backfill, probes,
//!   topology) live in [`inbound`].
//! - Connections: one command client and one subscriber client, each with one connection
//!   per Redis node, however many streams.

mod inbound;
mod keys;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use fred::prelude::*;
use fred::types::config::ClusterDiscoveryPolicy;
use fred::types::scripts::Script;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    BrokerError, EventSink, HistoryPage, HistoryQuery, IDEMPOTENCY_TTL, NewComment, Published,
    StreamStats,
};
use crate::config::RedisUrl;
use crate::domain::{Comment, CommentData, CommentId, CommentKind, StreamId, User, now_ms};
use crate::metrics::Metrics;
use keys::StreamKeys;

/// Per-stream keys that would otherwise live forever expire this long after the stream's
/// last comment or viewer report.
const STATE_TTL: Duration = Duration::from_secs(24 * 3600);
/// An instance's viewer report expires unless refreshed within this long.
const VIEWER_REPORT_TTL: Duration = Duration::from_secs(30);
/// How often local viewer counts are reported.
const VIEWER_REPORT_EVERY: Duration = Duration::from_secs(1);
/// Commands fail after this long instead of waiting forever for a dead node.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Commands queued while reconnecting, beyond which they fail at once (backpressure).
const MAX_QUEUED_COMMANDS: usize = 50_000;
/// fred's message channel (FIELD-NOTES trap 5: 32 by default). Overflow is counted and
/// backfilled from history.
const MESSAGE_BUFFER: usize = 16_384;

pub struct RedisBroker {
    client: Client,
    subscriber: Client,
    pod: String,
    history_len: usize,
    /// History grows to `history_len + trim_slack` before it is trimmed back.
    trim_slack: usize,
    /// This instance's viewers per stream, reported every second.
    local_viewers: DashMap<StreamId, i64>,
    /// The last report per stream: (sum across instances, our count in that sum).
    reported: DashMap<StreamId, (u64, i64)>,
    control: mpsc::UnboundedSender<inbound::Control>,
    live: Arc<AtomicBool>,
}

impl RedisBroker {
    pub async fn connect(
        url: &RedisUrl,
        pod: &str,
        history_len: usize,
        sink: EventSink,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let client = build_client(url)?;
        let subscriber = build_client(url)?;
        for c in [&client, &subscriber] {
            c.connect();
        }
        for c in [&client, &subscriber] {
            // Start even if Redis is not there yet: /readyz says `broker` until it is.
            if tokio::time::timeout(Duration::from_secs(5), c.wait_for_connect())
                .await
                .is_err()
            {
                tracing::warn!("Redis is not reachable yet; retrying in the background");
            }
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(false));
        let broker = Arc::new(Self {
            client: client.clone(),
            subscriber: subscriber.clone(),
            pod: pod.to_owned(),
            history_len,
            trim_slack: (history_len / 10).max(10),
            local_viewers: DashMap::new(),
            reported: DashMap::new(),
            control: control.clone(),
            live: live.clone(),
        });
        inbound::spawn(inbound::InboundTask::new(
            client,
            subscriber,
            sink,
            metrics,
            (control, control_rx),
            live,
            cancel.clone(),
        ));
        spawn_viewer_reporter(broker.clone(), cancel);
        Ok(broker)
    }

    pub(super) async fn publish(&self, new: NewComment) -> Result<Published, BrokerError> {
        let keys = StreamKeys::new(&new.stream);
        let body = serde_json::to_string(&CommentBody {
            stream_id: &new.stream,
            kind: new.kind,
            user: new.user.as_ref(),
            text: &new.text,
            data: new.data.as_ref(),
            ts: now_ms(),
        })
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let idem = new.idempotency_key.as_deref();
        let user = new.user.as_ref().map(|u| u.id.as_str());
        let script_keys = vec![
            keys.hist,
            keys.channel,
            keys.count,
            keys.trimmed,
            // Unused placeholders still name a key of the stream's slot.
            StreamKeys::idempotency(&new.stream, idem.unwrap_or("-")),
            StreamKeys::ban(&new.stream, user.unwrap_or("-")),
        ];
        let args = vec![
            body,
            self.history_len.to_string(),
            self.trim_slack.to_string(),
            IDEMPOTENCY_TTL.as_millis().to_string(),
            STATE_TTL.as_millis().to_string(),
            flag(idem.is_some()),
            flag(user.is_some()),
        ];
        let reply: Vec<Value> = run(&self.client, &scripts::PUBLISH, script_keys, args).await?;
        let status = reply
            .first()
            .and_then(Value::as_i64)
            .ok_or_else(|| unexpected("publish"))?;
        let message = reply
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into_owned();
        match status {
            1 => Ok(Published::New(
                parse_entry_message(&message).ok_or_else(|| unexpected("publish"))?,
            )),
            0 => Ok(Published::Duplicate(
                parse_entry_message(&message).ok_or_else(|| unexpected("publish"))?,
            )),
            _ => Err(BrokerError::Banned),
        }
    }

    pub(super) async fn history(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        read_history(&self.client, stream, query).await
    }

    pub(super) async fn subscribe(&self, stream: &StreamId) -> Result<(), BrokerError> {
        let (reply, done) = oneshot::channel();
        self.send(inbound::Control::Track(stream.clone(), reply))?;
        done.await
            .map_err(|_| BrokerError::Unavailable("the broker stopped".into()))?
    }

    pub(super) async fn unsubscribe(&self, stream: &StreamId) -> Result<(), BrokerError> {
        let (reply, done) = oneshot::channel();
        self.send(inbound::Control::Untrack(stream.clone(), reply))?;
        done.await
            .map_err(|_| BrokerError::Unavailable("the broker stopped".into()))?
    }

    fn send(&self, control: inbound::Control) -> Result<(), BrokerError> {
        self.control
            .send(control)
            .map_err(|_| BrokerError::Unavailable("the broker stopped".into()))
    }

    pub(super) async fn delete(&self, stream: &StreamId, id: CommentId) -> Result<(), BrokerError> {
        let keys = StreamKeys::new(stream);
        let deleted: i64 = run(
            &self.client,
            &scripts::DELETE,
            vec![keys.hist, keys.channel, keys.moderation],
            vec![id.to_string(), STATE_TTL.as_millis().to_string()],
        )
        .await?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(BrokerError::NotFound)
        }
    }

    pub(super) async fn ban(
        &self,
        stream: &StreamId,
        user_id: &str,
        duration: Duration,
    ) -> Result<(), BrokerError> {
        let script_keys = vec![
            StreamKeys::ban(stream, user_id),
            keys::channel(stream),
            StreamKeys::new(stream).moderation,
        ];
        let args = vec![
            user_id.to_owned(),
            duration.as_millis().max(1).to_string(),
            STATE_TTL.as_millis().to_string(),
        ];
        let _: i64 = run(&self.client, &scripts::BAN, script_keys, args).await?;
        Ok(())
    }

    pub(super) async fn is_banned(
        &self,
        stream: &StreamId,
        user_id: &str,
    ) -> Result<bool, BrokerError> {
        let n: i64 = self
            .client
            .exists(StreamKeys::ban(stream, user_id))
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    pub(super) fn viewers_changed(&self, stream: &StreamId, delta: i64) {
        *self.local_viewers.entry(stream.clone()).or_insert(0) += delta;
    }

    fn local_count(&self, stream: &StreamId) -> i64 {
        self.local_viewers.get(stream).map_or(0, |c| *c)
    }

    /// The viewer counts across instances: the last report's sum, corrected by how this
    /// instance's own count changed since; a stream never reported yet is reported now.
    pub(super) async fn viewer_counts(
        &self,
        streams: &[StreamId],
    ) -> Result<Vec<u64>, BrokerError> {
        let mut counts = Vec::with_capacity(streams.len());
        for stream in streams {
            let cached = self.reported.get(stream).map(|r| *r);
            let count = match cached {
                Some((sum, ours)) => sum.saturating_add_signed(self.local_count(stream) - ours),
                None => self.report(stream).await?.viewer_count,
            };
            counts.push(count);
        }
        Ok(counts)
    }

    pub(super) async fn stats(&self, stream: &StreamId) -> Result<StreamStats, BrokerError> {
        let local = self.local_viewers.get(stream).map(|c| *c);
        match local {
            Some(_) => self.report(stream).await,
            None => self.viewers_script(stream, -1).await,
        }
    }

    /// Reports this instance's local count of `stream` and remembers the answer.
    async fn report(&self, stream: &StreamId) -> Result<StreamStats, BrokerError> {
        let ours = self.local_count(stream).max(0);
        let stats = self.viewers_script(stream, ours).await?;
        self.reported
            .insert(stream.clone(), (stats.viewer_count, ours));
        Ok(stats)
    }

    async fn viewers_script(
        &self,
        stream: &StreamId,
        ours: i64,
    ) -> Result<StreamStats, BrokerError> {
        let keys = StreamKeys::new(stream);
        let args = vec![
            self.pod.clone(),
            ours.to_string(),
            now_ms().to_string(),
            VIEWER_REPORT_TTL.as_millis().to_string(),
            STATE_TTL.as_millis().to_string(),
        ];
        let reply: Vec<i64> = run(
            &self.client,
            &scripts::VIEWERS,
            vec![keys.viewers, keys.peak, keys.count],
            args,
        )
        .await?;
        let get = |i: usize| reply.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(StreamStats {
            viewer_count: get(0),
            peak_viewer_count: get(1),
            comment_count: get(2),
        })
    }

    /// Reports every stream with local viewers (and, once, those whose count fell to 0).
    async fn report_all(&self) {
        let streams: Vec<StreamId> = self.local_viewers.iter().map(|e| e.key().clone()).collect();
        let reports = streams
            .iter()
            .map(|s| async move { (s, self.report(s).await) });
        for (stream, result) in futures_util::future::join_all(reports).await {
            match result {
                Ok(_) => {
                    let gone = self
                        .local_viewers
                        .remove_if(stream, |_, count| *count <= 0)
                        .is_some();
                    if gone {
                        self.reported.remove(stream);
                    }
                }
                Err(error) => tracing::debug!(%stream, %error, "viewer report failed"),
            }
        }
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.client.is_connected()
            && self.subscriber.is_connected()
            && self.live.load(Ordering::Acquire)
    }

    pub(super) async fn close(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}

fn spawn_viewer_reporter(broker: Arc<RedisBroker>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(VIEWER_REPORT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => broker.report_all().await,
            }
        }
    });
}

fn build_client(url: &RedisUrl) -> anyhow::Result<Client> {
    let server = match url {
        RedisUrl::Standalone(host_port) => {
            let (host, port) = split_host_port(host_port)?;
            ServerConfig::new_centralized(host, port)
        }
        RedisUrl::Cluster(nodes) => {
            let hosts = nodes
                .iter()
                .map(|n| split_host_port(n))
                .collect::<Result<Vec<_>, _>>()?;
            // fred's default discovery asks only the configured nodes for the topology: with
            // those down (a failed-over seed), a client never finds the new masters.
            ServerConfig::Clustered {
                hosts: hosts
                    .into_iter()
                    .map(|(host, port)| Server::new(host, port))
                    .collect(),
                policy: ClusterDiscoveryPolicy::UseCache,
            }
        }
    };
    let config = Config {
        server,
        fail_fast: false,
        ..Default::default()
    };
    let client = Builder::from_config(config)
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            p.broadcast_channel_capacity = MESSAGE_BUFFER;
        })
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_buffer_len = MAX_QUEUED_COMMANDS;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    Ok(client)
}

fn split_host_port(host_port: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("DANMAKU_REDIS_URL: '{host_port}' is not host:port"))?;
    Ok((host.to_owned(), port.parse()?))
}

/// Runs a script, loading it on the node first if that node does not know it (after a
/// failover or restart).
async fn run<R: FromValue>(
    client: &Client,
    script: &Script,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<R, BrokerError> {
    script
        .evalsha_with_reload(client, keys, args)
        .await
        .map_err(unavailable)
}

/// Moderation messages logged at or after `since_ms` (epoch ms), oldest first.
async fn read_moderation_since(
    client: &Client,
    stream: &StreamId,
    since_ms: u64,
) -> Result<Vec<inbound::Inbound>, BrokerError> {
    let key = StreamKeys::new(stream).moderation;
    let messages: Vec<String> = client
        .zrangebyscore(key, since_ms as f64, "+inf", false, None)
        .await
        .map_err(unavailable)?;
    Ok(messages
        .iter()
        .filter_map(|m| inbound::parse_message(m))
        .collect())
}

async fn read_history(
    client: &Client,
    stream: &StreamId,
    query: HistoryQuery,
) -> Result<HistoryPage, BrokerError> {
    let keys = StreamKeys::new(stream);
    let (mode, limit, after) = match query {
        HistoryQuery::Latest { limit } => ("latest", limit, String::new()),
        HistoryQuery::After { id, limit } => ("after", limit, id.to_string()),
    };
    let args = vec![mode.to_owned(), limit.to_string(), after];
    let reply: Vec<Value> = run(
        client,
        &scripts::HISTORY,
        vec![keys.hist, keys.trimmed],
        args,
    )
    .await?;
    let trimmed = reply
        .first()
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<CommentId>().ok());
    let entries = match reply.into_iter().nth(1) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    let mut comments: Vec<Comment> = entries.iter().filter_map(parse_stream_entry).collect();
    match query {
        HistoryQuery::Latest { .. } => {
            comments.reverse();
            Ok(HistoryPage {
                comments,
                complete: true,
            })
        }
        HistoryQuery::After { id, .. } => Ok(HistoryPage {
            comments,
            complete: trimmed.is_none_or(|t| id >= t),
        }),
    }
}

/// The comment as stored, without its id (the stream entry's id is the comment id).
#[derive(serde::Serialize)]
struct CommentBody<'a> {
    stream_id: &'a StreamId,
    kind: CommentKind,
    user: Option<&'a User>,
    text: &'a str,
    data: Option<&'a CommentData>,
    ts: u64,
}

/// A comment from its id and stored body: the body with `"id"` put first.
fn comment_from(id: &str, body: &str) -> Option<Comment> {
    let rest = body.strip_prefix('{')?;
    let json = format!("{{\"id\":\"{id}\",{rest}");
    serde_json::from_str(&json).ok()
}

/// `<id> <body>`: the idempotency value and the payload of a `c` message.
fn parse_entry_message(message: &str) -> Option<Comment> {
    let (id, body) = message.split_once(' ')?;
    comment_from(id, body)
}

/// An XRANGE entry: [id, [field, value, ...]] with the body in field `b`.
fn parse_stream_entry(entry: &Value) -> Option<Comment> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let id = parts.first()?.as_str()?;
    let Value::Array(fields) = parts.get(1)? else {
        return None;
    };
    let body = fields
        .chunks(2)
        .find(|kv| kv[0].as_str().as_deref() == Some("b"))?
        .get(1)?
        .as_str()?;
    comment_from(&id, &body)
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

fn unavailable(error: fred::error::Error) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

fn unexpected(what: &str) -> BrokerError {
    BrokerError::Unavailable(format!("unexpected reply to {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_becomes_the_comment_with_its_id_first() {
        let stream = StreamId::parse("s").unwrap();
        let body = serde_json::to_string(&CommentBody {
            stream_id: &stream,
            kind: CommentKind::Gift,
            user: None,
            text: "rose",
            data: Some(&CommentData::from_value(&serde_json::json!({"n": 1})).unwrap()),
            ts: 5,
        })
        .unwrap();
        let comment = parse_entry_message(&format!("7-1 {body}")).unwrap();
        assert_eq!(comment.id, CommentId::new(7, 1));
        assert_eq!(comment.text, "rose");
        assert_eq!(
            serde_json::to_string(&comment).unwrap(),
            r#"{"id":"7-1","stream_id":"s","kind":"gift","user":null,"text":"rose","data":{"n":1},"ts":5}"#
        );
    }
}
