//! What the soak reads from outside the server process: an instance's gauges from `/metrics`,
//! and the shard channels, memory and key count of every Redis node.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};

use crate::http;
use crate::result::soak::RedisNode;

/// The Prometheus names of the gauges the soak follows.
pub(super) const SUBSCRIBED: &str = "danmaku_streams_subscribed";
pub(super) const CONNECTIONS: &str = "danmaku_ws_connections";

/// The value of `name` in a Prometheus text exposition, summed over its label sets; `None`
/// when the exposition has no such series.
pub(super) fn gauge(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name{labels} value` or `name value`, not a longer name that starts the same.
        let value = match rest.as_bytes().first() {
            Some(b'{') => rest.rsplit_once('}').map(|(_, v)| v),
            Some(b' ') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `GET /metrics` of the instance at `base` (`ws://ip:port`).
pub(super) async fn metrics(base: &str) -> anyhow::Result<String> {
    let mut client = http::Client::new(base, Ipv4Addr::LOCALHOST)?;
    let response = client.request("GET", "/metrics", None, None).await?;
    if response.status != 200 {
        bail!("GET /metrics: {}", response.status);
    }
    String::from_utf8(response.body).context("/metrics is not UTF-8")
}

/// Reads one Redis node (`host:port`): `PUBSUB SHARDCHANNELS danmaku:*`, `INFO memory`,
/// `DBSIZE`. A cluster node answers for its own slots, so every master is asked.
pub(super) async fn redis_node(node: &str) -> anyhow::Result<RedisNode> {
    let client = redis::Client::open(format!("redis://{node}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connect to Redis at {node}"))?;
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg("danmaku:*")
        .query_async(&mut conn)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    let used_memory_bytes = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")?;
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    Ok(RedisNode {
        node: node.to_owned(),
        shard_channels: channels.len() as u64,
        used_memory_bytes,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_gauge_with_and_without_labels() {
        let text = "# HELP danmaku_streams_subscribed streams\n\
                    danmaku_streams_subscribed{service_name=\"danmaku\"} 3\n\
                    danmaku_streams_subscribed_total 9\n\
                    danmaku_ws_connections 12\n";
        assert_eq!(gauge(text, SUBSCRIBED), Some(3.0));
        assert_eq!(gauge(text, CONNECTIONS), Some(12.0));
        assert_eq!(gauge(text, "danmaku_missing"), None);
    }
}
