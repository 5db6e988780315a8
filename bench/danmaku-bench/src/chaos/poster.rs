//! The chaos soak's writers. A poster per stream posts user comments over the WebSocket as the
//! client library does: each with a `ref`, kept until its `ack`, resent with the same `ref` after
//! a reconnect or an `unavailable` (the server answers a repeated `ref` with the first `ack`).
//! Services post gifts over HTTP (`POST /v1/streams/{id}/comments`) with an `idempotency_key`,
//! retried (on another instance if need be) until a `201` or `200` answers. Every id they are
//! given goes to the published log; at the end each stream gets its end marker, a system comment
//! (never thinned) after everything else.
//!
//! Uses `proto`, `http`, `journal`, `fleet`, `live`, and `viewer`'s backoff.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::chaos::fleet::Status;
use crate::chaos::journal::{CommentId, Source};
use crate::chaos::live::Live;
use crate::chaos::viewer::backoff;
use crate::http;
use crate::proto::{ClientFrame, decode_client};

/// How long posting may go on after the load stops, for the last acks.
const SETTLE: Duration = Duration::from_secs(20);

/// A WebSocket poster of one stream.
pub(crate) struct Poster {
    pub stream: usize,
    pub home: usize,
    /// Comments per second.
    pub rate: f64,
    /// Its viewer token (HS256, `sub` = `poster-<stream>`).
    pub token: String,
    pub seed: u64,
}

/// Posts until `stop`, then until every post is acknowledged or [`SETTLE`] has passed.
pub(crate) async fn post(
    p: Poster,
    fleet: Arc<Status>,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(p.seed ^ (p.stream as u64) << 20);
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    let mut next = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / p.rate.max(0.01)));
    let mut attempt = 0u32;
    let mut deadline: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            let d = *deadline.get_or_insert_with(|| Instant::now() + SETTLE);
            if pending.is_empty() || Instant::now() > d {
                break;
            }
        }
        let instance = fleet.pick(p.home, &mut rng);
        let url = format!(
            "{}/v1/streams/chaos-{}/ws?access_token={}",
            fleet.bases[instance], p.stream, p.token
        );
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(&url),
        )
        .await;
        let Ok(Ok((mut ws, _))) = connected else {
            attempt += 1;
            tokio::time::sleep(backoff(attempt - 1, &mut rng)).await;
            continue;
        };
        let mut session = Session {
            p: &p,
            live: &live,
            pending: &mut pending,
            next: &mut next,
        };
        let wait = session
            .run(&mut ws, &mut tick, &stop, &mut deadline, &mut attempt)
            .await;
        let wait = wait.unwrap_or_else(|| {
            attempt += 1;
            backoff(attempt - 1, &mut rng)
        });
        tokio::time::sleep(wait).await;
    }
    live.count(|c| c.abandoned += pending.len() as u64);
}

/// One connection of a poster.
struct Session<'a> {
    p: &'a Poster,
    live: &'a Live,
    pending: &'a mut BTreeMap<u64, String>,
    next: &'a mut u64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Session<'_> {
    fn reference(&self, seq: u64) -> String {
        format!("p{}-{seq}", self.p.stream)
    }

    fn text(&self, seq: u64) -> String {
        format!(
            r#"{{"type":"comment","text":"chaos {} {seq}","ref":"{}"}}"#,
            self.p.stream,
            self.reference(seq)
        )
    }

    /// Until the connection ends: `Some(delay)` to reconnect after (a hint), `None` to back off.
    async fn run(
        &mut self,
        ws: &mut Ws,
        tick: &mut tokio::time::Interval,
        stop: &watch::Receiver<bool>,
        deadline: &mut Option<Instant>,
        attempt: &mut u32,
    ) -> Option<Duration> {
        let mut resend = tokio::time::interval(Duration::from_millis(1000));
        loop {
            if *stop.borrow() {
                let d = *deadline.get_or_insert_with(|| Instant::now() + SETTLE);
                if self.pending.is_empty() || Instant::now() > d {
                    let _ = ws.close(None).await;
                    return Some(Duration::ZERO);
                }
            }
            tokio::select! {
                _ = tick.tick(), if !*stop.borrow() => {
                    let seq = *self.next;
                    *self.next += 1;
                    let frame = self.text(seq);
                    self.pending.insert(seq, frame.clone());
                    if ws.send(Message::text(frame)).await.is_err() { return None; }
                }
                _ = resend.tick() => {}
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(after) = self.frame(ws, text.as_str(), attempt).await {
                            let _ = ws.close(None).await;
                            return Some(after);
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Handles a frame: `init` resends what is pending, an `ack` publishes, an error is
    /// retried; `Some(delay)` for a reconnect hint.
    async fn frame(&mut self, ws: &mut Ws, text: &str, attempt: &mut u32) -> Option<Duration> {
        match decode_client(text).ok()? {
            ClientFrame::Init { .. } => {
                *attempt = 0;
                let frames: Vec<String> = self.pending.values().cloned().collect();
                self.live.count(|c| c.ws_resent += frames.len() as u64);
                for f in frames {
                    let _ = ws.send(Message::text(f)).await;
                }
            }
            ClientFrame::Ack { reference, id } => {
                let seq = reference.as_deref().and_then(|r| self.seq_of(r))?;
                if self.pending.remove(&seq).is_some()
                    && let Ok(id) = id.parse::<CommentId>()
                {
                    self.live.published(self.p.stream, id, Source::Ws);
                    self.live.count(|c| c.ws_acked += 1);
                }
            }
            ClientFrame::Error {
                reference,
                code,
                retry_after_ms,
            } => {
                self.live
                    .count(|c| *c.ws_errors.entry(code.to_string()).or_default() += 1);
                let seq = reference.as_deref().and_then(|r| self.seq_of(r))?;
                let frame = self.pending.get(&seq)?.clone();
                let wait = retry_after_ms.unwrap_or(500).min(5_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                self.live.count(|c| c.ws_resent += 1);
                let _ = ws.send(Message::text(frame)).await;
            }
            ClientFrame::Reconnect { after_ms } => return Some(Duration::from_millis(after_ms)),
            _ => {}
        }
        None
    }

    fn seq_of(&self, reference: &str) -> Option<u64> {
        reference
            .strip_prefix(&format!("p{}-", self.p.stream))?
            .parse()
            .ok()
    }
}

/// A service: gifts over HTTP to every stream in turn, `rate` a second in all, each retried
/// until accepted (or until [`SETTLE`] after the stop).
pub(crate) struct Service {
    pub index: usize,
    pub streams: usize,
    pub rate: f64,
    /// Its bearer token (one of `DANMAKU_SERVICE_TOKENS`).
    pub token: String,
    pub seed: u64,
}

/// Posts as `svc` until `stop`.
pub(crate) async fn serve(
    svc: Service,
    fleet: Arc<Status>,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
) {
    let index = svc.index;
    let mut rng = StdRng::seed_from_u64(svc.seed ^ 0x5E4 ^ index as u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / svc.rate.max(0.01)));
    let mut n = 0u64;
    while !*stop.borrow() {
        tick.tick().await;
        let stream = (n as usize + index) % svc.streams;
        let key = format!("svc{index}-{n}");
        let body = format!(
            r#"{{"kind":"gift","text":"gift {n}","user":{{"id":"svc{index}","name":"svc"}},"data":{{"n":{n}}},"idempotency_key":"{key}"}}"#
        );
        post_until_accepted(
            stream,
            &body,
            &svc.token,
            &fleet,
            &live,
            &mut rng,
            Source::Http,
            &stop,
        )
        .await;
        n += 1;
    }
}

/// POSTs `body` to stream `stream` until it is accepted, logging the id it gets.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn post_until_accepted(
    stream: usize,
    body: &str,
    token: &str,
    fleet: &Status,
    live: &Live,
    rng: &mut StdRng,
    source: Source,
    stop: &watch::Receiver<bool>,
) -> bool {
    let path = format!("/v1/streams/chaos-{stream}/comments");
    let give_up = Instant::now() + SETTLE * 3;
    let mut attempt = 0;
    let home = rng.random_range(0..fleet.bases.len());
    loop {
        let instance = fleet.pick(home, rng);
        if let Ok(mut client) = http::Client::new(&fleet.bases[instance], Ipv4Addr::LOCALHOST)
            && let Ok(r) = client.post_json(&path, token, body.as_bytes()).await
            && (r.status == 201 || r.status == 200)
        {
            let id = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["comment"]["id"].as_str()?.parse::<CommentId>().ok());
            if let Some(id) = id {
                live.published(stream, id, source);
            }
            live.count(|c| {
                if r.status == 201 {
                    c.http_created += 1
                } else {
                    c.http_replayed += 1
                }
            });
            return true;
        }
        live.count(|c| c.http_retries += 1);
        if *stop.borrow() && Instant::now() > give_up {
            return false;
        }
        tokio::time::sleep(backoff(attempt.min(4), rng)).await;
        attempt += 1;
    }
}
