//! fred clients as danmaku configures them, and the small helpers every Redis call shares.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{ClusterDiscoveryPolicy, TlsConfig};
use fred::types::scripts::Script;

use crate::broker::{BrokerError, Unavailable};
use crate::config::{RedisNodes, RedisSettings};

/// Commands fail after this long instead of waiting forever for a dead node.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Commands queued while reconnecting, beyond which they fail at once (backpressure).
const MAX_QUEUED_COMMANDS: usize = 50_000;
/// fred's message channel: 32 messages by default, so a burst would overflow it and skip
/// comments. Overflow is counted (`broker_lag`) and backfilled from history.
const MESSAGE_BUFFER: usize = 16_384;

/// A client for `settings`, speaking TLS with `tls` when set and authenticating as the
/// configured ACL user (or the `default` user with a password alone) on every connection.
pub(super) fn build_client(
    settings: &RedisSettings,
    tls: Option<TlsConfig>,
) -> anyhow::Result<Client> {
    let mut nodes = node_addresses(settings)?.into_iter();
    let server = match &settings.url.nodes {
        RedisNodes::Standalone(_) => {
            let (host, port) = nodes.next().expect("one address");
            ServerConfig::new_centralized(host, port)
        }
        // fred's default discovery asks only the configured nodes for the topology: with
        // those down (a failed-over seed), a client never finds the new masters.
        RedisNodes::Cluster(_) => ServerConfig::Clustered {
            hosts: nodes.map(|(host, port)| Server::new(host, port)).collect(),
            policy: ClusterDiscoveryPolicy::UseCache,
        },
    };
    build(settings, server, tls)
}

/// A client of one node alone (of a cluster, or the standalone server), with the same
/// credentials and TLS as the others: for asking that node, not for routing commands.
pub(super) fn build_node_client(
    settings: &RedisSettings,
    tls: Option<TlsConfig>,
    node: &Server,
) -> anyhow::Result<Client> {
    let server = ServerConfig::new_centralized(node.host.to_string(), node.port);
    build(settings, server, tls)
}

/// The configured nodes, as host and port: the standalone server, or the cluster's seeds.
pub(super) fn node_addresses(settings: &RedisSettings) -> anyhow::Result<Vec<(String, u16)>> {
    match &settings.url.nodes {
        RedisNodes::Standalone(host_port) => Ok(vec![split_host_port(host_port)?]),
        RedisNodes::Cluster(nodes) => nodes.iter().map(|n| split_host_port(n)).collect(),
    }
}

fn build(
    settings: &RedisSettings,
    server: ServerConfig,
    tls: Option<TlsConfig>,
) -> anyhow::Result<Client> {
    let url = &settings.url;
    let config = Config {
        server,
        fail_fast: false,
        username: url.username.clone(),
        password: url.password.as_ref().map(|p| p.expose().to_owned()),
        tls,
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
pub(super) async fn run<R: FromValue>(
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

/// Whether Redis refused the credentials (`WRONGPASS`, `NOAUTH`): a configuration error
/// that no reconnect fixes.
pub(super) fn is_auth_error(error: &fred::error::Error) -> bool {
    *error.kind() == fred::error::ErrorKind::Auth
}

pub(super) fn unavailable(error: fred::error::Error) -> BrokerError {
    BrokerError::Unavailable(Unavailable::new(error))
}

pub(super) fn unexpected(what: &str) -> BrokerError {
    BrokerError::Unavailable(Unavailable::new(format!("unexpected reply to {what}")))
}
