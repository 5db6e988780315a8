//! The Redis broker: standalone Redis ≥ 7 or a Redis Cluster, sharded Pub/Sub in both.
//! This module (with its children) is the only place that imports fred.
//!
//! - Publishing, deleting and banning are each one Lua script on the stream's slot
//!   ([`scripts`]): history, counters, idempotency, the moderation log and `SPUBLISH`
//!   together. [`codec`] is how comments are stored and carried; [`history`] reads them.
//! - Subscriptions have one owner, [`subscriptions`]: a state machine that knows which
//!   streams are held, repairs and backfills them when Redis drops them silently, and
//!   delivers in id order. [`subscriber`] is the task that runs it against Redis.
//! - [`viewers`]: viewer counts summed across instances, over the instances whose
//!   [`leases`] have not run out.
//! - [`reach`]: whether any primary answers, for `/readyz`.
//! - Connections ([`client`]): one command client and one subscriber client, each with one
//!   connection per Redis node, however many streams; over TLS ([`tls`]) for `rediss://`,
//!   as the configured ACL user when one is set.

mod client;
mod codec;
mod history;
mod kept_terms;
mod keys;
mod leases;
mod moderation;
mod reach;
mod replay;
mod reports;
mod scripts;
mod subscriber;
mod subscriptions;
mod tls;
mod viewers;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use fred::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::{
    BrokerError, Dedup, EventSink, HELD_FOR, HistoryPage, HistoryQuery, IDEMPOTENCY_TTL, Live,
    MAX_HELD_FOR_REVIEW, NewComment, Published, Route,
};
use crate::background::Background;
use crate::config::{Config, RedisSettings};
use crate::domain::{CommentId, CommentKind, Epoch, ReplayLimits, Role, StreamId, now_ms};
use crate::metrics::{HeldOutcome, Metrics};
use client::{is_auth_error, run, unexpected};
use codec::{CommentBody, parse_entry_message};
use kept_terms::KeptTerms;
use keys::StreamKeys;
use leases::Leases;
use reach::{Prober, Reach};
use reports::Reports;
use subscriber::Control;
use subscriptions::Subscriptions;

/// Per-stream keys that would otherwise live forever expire this long after the stream's
/// last comment or viewer report.
const STATE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A stream's settings and blocked terms expire this long after they were last changed (the
/// settings: or a comment was posted).
const SETTINGS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long start-up waits for Redis before it goes on without it (`/readyz` says `broker`
/// until it is there).
const START_WAIT: Duration = Duration::from_secs(5);

pub struct RedisBroker {
    client: Client,
    subscriber: Client,
    pod: String,
    history_len: usize,
    /// History grows to `history_len + trim_slack` before it is trimmed back.
    trim_slack: usize,
    /// This instance's viewers per stream, reported when they change (and every
    /// [`reports::REFRESH`] when they do not).
    local_viewers: DashMap<StreamId, i64>,
    /// Each stream's count across instances as last known, and our count in it.
    reports: Reports,
    /// This instance's lease, and the instances gone.
    leases: Leases,
    /// The subscription owner's mailbox.
    control: mpsc::UnboundedSender<Control>,
    /// Whether some primary answers (`/readyz`).
    reach: Arc<Reach>,
    /// Each stream's blocked terms as last read, and when.
    kept_terms: KeptTerms,
    /// Where the held comments that expire are counted.
    metrics: Arc<Metrics>,
    /// How long and how many comments each stream keeps for replay.
    replay: ReplayLimits,
}

impl RedisBroker {
    /// Connects to the Redis of `settings`, for an instance configured by `config` (its pod
    /// name, history length, unsubscribe linger and replay limits).
    pub(super) async fn connect(
        settings: &RedisSettings,
        config: &Config,
        sink: EventSink,
        metrics: Arc<Metrics>,
        background: &Background,
    ) -> anyhow::Result<Arc<Self>> {
        let history_len = config.history_len;
        let tls = tls::tls_config(settings)?;
        let client = client::build_client(settings, tls.clone())?;
        let subscriber = client::build_client(settings, tls.clone())?;
        let tasks = [client.connect(), subscriber.connect()];
        if let Err(e) = tokio::try_join!(first_connect(&client), first_connect(&subscriber)) {
            // The clients are never used: stop their reconnect loops.
            tasks.iter().for_each(|t| t.abort());
            return Err(e);
        }
        // Unbounded, yet bounded in practice: a local viewer sends one acquire and one
        // release, and the owner's own tasks report a few messages per stream in repair.
        let (control, control_rx) = mpsc::unbounded_channel();
        let reach = Arc::new(Reach::default());
        let kept_terms = KeptTerms::default();
        let reports = Reports::default();
        let mut prober = Prober::new(settings, tls, subscriber.clone(), reach.clone())?;
        // One round before serving, so `/readyz` is right from the first request.
        prober.probe().await;
        prober.spawn(background);
        let broker = Arc::new(Self {
            client: client.clone(),
            subscriber: subscriber.clone(),
            pod: config.pod_name.clone(),
            history_len,
            replay: config.replay(),
            trim_slack: (history_len / 10).max(10),
            local_viewers: DashMap::new(),
            reports: reports.clone(),
            leases: Leases::new(config.instance_lease()),
            control: control.clone(),
            reach,
            kept_terms: kept_terms.clone(),
            metrics: metrics.clone(),
        });
        subscriber::spawn(subscriber::Subscriber {
            client,
            subscriber,
            subscriptions: Subscriptions::new(
                sink,
                metrics,
                config.unsubscribe_linger(),
                kept_terms,
                reports,
            ),
            control,
            control_rx,
            background: background.clone(),
        });
        leases::spawn_renewal(broker.clone(), background);
        viewers::spawn_reporter(broker.clone(), background);
        Ok(broker)
    }

    /// A local viewer's hold on `stream` (see [`super::Subscription`]): counted at once,
    /// answered when the stream's delivery is live.
    pub(super) fn acquire(&self, stream: &StreamId) -> Live {
        self.viewers_changed(stream, 1);
        let (reply, live) = oneshot::channel();
        // A send error drops the reply: the waiter hears "the broker stopped".
        let _ = self.control.send(Control::Acquire(stream.clone(), reply));
        live
    }

    pub(super) fn release(&self, stream: &StreamId) {
        self.viewers_changed(stream, -1);
        let _ = self.control.send(Control::Release(stream.clone()));
    }

    pub(super) async fn publish(&self, new: NewComment) -> Result<Published, BrokerError> {
        let keys = StreamKeys::new(&new.stream);
        let ts = now_ms();
        let body = CommentBody {
            stream_id: &new.stream,
            kind: new.kind,
            user: new.user.as_ref(),
            text: new.text.as_str(),
            data: new.data.as_ref(),
            ts,
            media_ts: new.media_ts,
            by_moderator: new.by_moderator,
            // The script marks it (`"shadow":true`) for this route or a shadow-banned author.
            shadow: false,
        }
        .encode();
        let dedup = new.dedup.as_ref();
        // A chat ban holds back the user's own comments, not a service's comment on their
        // behalf (a paid gift still shows).
        let user = new
            .user
            .as_ref()
            .filter(|_| new.kind == CommentKind::User)
            .map(|u| u.id.as_str());
        let mut script_keys = vec![
            keys.hist,
            keys.channel,
            keys.count,
            keys.trimmed,
            // Unused placeholders still name a key of the stream's slot.
            dedup.map_or_else(
                || StreamKeys::idempotency(&new.stream, "-"),
                |d| StreamKeys::dedup(&new.stream, d),
            ),
            StreamKeys::ban(&new.stream, user.unwrap_or("-")),
            StreamKeys::rate(&new.stream, user.unwrap_or("-")),
            keys.epoch,
            keys.settings,
            StreamKeys::slow(&new.stream, user.unwrap_or("-")),
            keys.held,
            keys.terms,
        ];
        script_keys.extend(Self::replay_keys(&new.stream));
        let rate = new.rate.filter(|_| user.is_some());
        let route = match new.route {
            Route::Public => "p",
            Route::Shadow => "s",
            Route::Hold => "h",
        };
        let roles: Vec<&str> = new.roles.iter().map(Role::as_str).collect();
        let mut args = vec![
            body,
            self.history_len.to_string(),
            self.trim_slack.to_string(),
            dedup
                .map_or(IDEMPOTENCY_TTL, Dedup::ttl)
                .as_millis()
                .to_string(),
            STATE_TTL.as_millis().to_string(),
            flag(dedup.is_some()),
            flag(user.is_some()),
            rate.map_or_else(String::new, |r| r.per_sec.to_string()),
            rate.map_or_else(String::new, |r| r.burst.to_string()),
            Epoch::tag(),
            route.to_owned(),
            flag(new.by_service || new.by_moderator),
            roles.join("\n"),
            MAX_HELD_FOR_REVIEW.to_string(),
            HELD_FOR.as_millis().to_string(),
            SETTINGS_TTL.as_millis().to_string(),
        ];
        args.extend(self.replay_args(&new.stream, new.media_ts.unwrap_or(ts)));
        let reply: Vec<Value> = run(&self.client, &scripts::PUBLISH, script_keys, args).await?;
        let expired = reply.get(2).and_then(Value::as_u64).unwrap_or(0);
        self.metrics.held(HeldOutcome::Expired, expired);
        published(&reply)
    }

    pub(super) async fn history(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        history::read_history(&self.client, stream, query).await
    }

    pub(super) async fn epoch(&self, stream: &StreamId) -> Result<Epoch, BrokerError> {
        epoch(&self.client, stream).await
    }

    pub(super) async fn deleted_since(
        &self,
        stream: &StreamId,
        since_ms: u64,
    ) -> Result<Vec<CommentId>, BrokerError> {
        let logged = history::read_moderation_since(&self.client, stream, since_ms).await?;
        Ok(logged
            .into_iter()
            .filter_map(|m| match m {
                codec::Inbound::Deleted(ids) => Some(ids),
                _ => None,
            })
            .flatten()
            .collect())
    }

    /// Healthy while some primary answers (see [`reach`]): one shard failing over is not
    /// this instance's trouble, and it serves the others.
    pub(super) fn is_healthy(&self) -> bool {
        self.reach.is_reachable()
    }

    pub(super) async fn close(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}

/// Waits up to [`START_WAIT`] for `client`'s first connection. Redis not there yet is not
/// fatal (it is retried in the background); credentials Redis refuses are: no retry fixes
/// them. The error names the settings, never the password.
async fn first_connect(client: &Client) -> anyhow::Result<()> {
    let mut errors = client.error_rx();
    let connected = client.wait_for_connect();
    tokio::pin!(connected);
    let deadline = tokio::time::sleep(START_WAIT);
    tokio::pin!(deadline);
    let (mut waiting, mut listening) = (true, true);
    let mut last = None;
    loop {
        let error = tokio::select! {
            result = &mut connected, if waiting => match result {
                Ok(()) => return Ok(()),
                Err(e) => { waiting = false; e }
            },
            received = errors.recv(), if listening => match received {
                Ok((e, _)) => e,
                Err(_) => { listening = false; continue }
            },
            () = &mut deadline => break,
        };
        if is_auth_error(&error) {
            anyhow::bail!(
                "Redis refused the credentials (DANMAKU_REDIS_USERNAME and DANMAKU_REDIS_PASSWORD \
                 or DANMAKU_REDIS_PASSWORD_FILE, or the user info of DANMAKU_REDIS_URL): {}",
                error.details()
            );
        }
        last = Some(error);
    }
    match last {
        Some(e) => {
            tracing::warn!(error = %e, "Redis is not reachable yet; retrying in the background")
        }
        None => tracing::warn!("Redis is not reachable yet; retrying in the background"),
    }
    Ok(())
}

/// What the publish script answered, as the seam says it.
fn published(reply: &[Value]) -> Result<Published, BrokerError> {
    let status = reply
        .first()
        .and_then(Value::as_i64)
        .ok_or_else(|| unexpected("publish"))?;
    let message = reply
        .get(1)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .into_owned();
    let comment = || parse_entry_message(&message).ok_or_else(|| unexpected("publish"));
    let wait = || {
        message
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| unexpected("publish"))
    };
    match status {
        1 => Ok(Published::New(comment()?)),
        0 => Ok(Published::Duplicate(comment()?)),
        3 | 4 => Ok(Published::Held {
            comment: comment()?,
            duplicate: status == 4,
        }),
        -2 => Err(BrokerError::RateLimited {
            retry_after: wait()?,
        }),
        -3 => Err(BrokerError::RoleRequired),
        -4 => Err(BrokerError::SlowMode {
            retry_after: wait()?,
        }),
        _ => Err(BrokerError::Banned),
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// A stream's epoch, made if it has none.
pub(super) async fn epoch(client: &Client, stream: &StreamId) -> Result<Epoch, BrokerError> {
    let keys = vec![StreamKeys::new(stream).epoch];
    let args = vec![Epoch::tag(), STATE_TTL.as_millis().to_string()];
    let epoch: String = run(client, &scripts::EPOCH, keys, args).await?;
    Epoch::parse(&epoch).map_err(|_| unexpected("epoch"))
}

/// A stream's epoch after a repair that resumed after `last`, the newest comment this
/// instance delivered, by an instance that knew the epoch `known`: replaced (and published)
/// if the history lost `last` (see [`scripts::EPOCH_AFTER`]), made if the stream has none.
pub(super) async fn epoch_after(
    client: &Client,
    stream: &StreamId,
    last: CommentId,
    known: Option<&Epoch>,
) -> Result<Epoch, BrokerError> {
    let keys = StreamKeys::new(stream);
    let keys = vec![
        keys.epoch,
        keys.hist,
        keys.trimmed,
        keys.moderation,
        keys.channel,
    ];
    let args = vec![
        Epoch::tag(),
        STATE_TTL.as_millis().to_string(),
        last.to_string(),
        known.map_or_else(String::new, |e| e.as_str().to_owned()),
    ];
    let (replaced, epoch): (i64, String) = run(client, &scripts::EPOCH_AFTER, keys, args).await?;
    if replaced == 1 {
        tracing::warn!(%stream, %last, "the history lost comments this instance delivered (a failover to a replica that missed them?): new epoch");
    }
    Epoch::parse(&epoch).map_err(|_| unexpected("epoch"))
}
