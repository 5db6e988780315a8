//! A chaos viewer: one logical viewer that lives as the client library (`clients/js`) does,
//! across its reconnects, and logs everything it sees. It resumes with `after=` (its newest
//! comment, `init`'s included) and `epoch=` (the last `init`'s), backs off with full jitter
//! (500 ms doubling up to 30 s, from 0 again after each `init`), follows `reconnect` hints
//! (reconnects after `after_ms`), starts afresh after a close 4002 (no `after=`), stops for good
//! on the close codes the library stops on (4003, 1002, 1007, 1008, 1009), and pings a server
//! silent for 20 s and leaves one silent for 40 s. It never drops a comment it did not expect:
//! what the server sends is logged as it came, for the verifier to judge.
//!
//! Uses `proto` (frames), `journal`, `fleet` (which instance), `live` (logs, counts).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::chaos::fleet::Status;
use crate::chaos::journal::{CommentId, Event};
use crate::chaos::live::{Live, now_ms, stopped};
use crate::proto::{ClientFrame, decode_client};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close codes after which the library stops: reconnecting cannot help.
const FINAL_CLOSES: [u16; 5] = [4003, 1002, 1007, 1008, 1009];
const BACKOFF_BASE_MS: u64 = 500;
const BACKOFF_CAP_MS: u64 = 30_000;
const HEARTBEAT: Duration = Duration::from_secs(20);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Full-jitter backoff, as the library's `backoffDelay`.
pub(crate) fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BACKOFF_CAP_MS.min(BACKOFF_BASE_MS << attempt.min(16));
    Duration::from_millis(rng.random_range(0..ceiling.max(1)))
}

/// Who a viewer is and where it goes.
pub(crate) struct Spec {
    pub id: u32,
    pub stream: usize,
    /// The instance a balancer would send it to while that one is ready.
    pub home: usize,
    pub seed: u64,
}

/// What the viewer keeps across connections.
struct Cursor {
    last: Option<CommentId>,
    epoch: Option<String>,
}

/// How a connection ended.
enum Ended {
    /// Reconnect at once after this delay (a hint).
    After(Duration),
    /// Reconnect with backoff.
    Backoff,
    /// Stop for good (a final close, or the soak is over).
    Stop,
}

/// Runs the viewer until `stop` turns true.
pub(crate) async fn run(
    spec: Spec,
    fleet: Arc<Status>,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ u64::from(spec.id).wrapping_mul(0x9E37));
    let mut cursor = Cursor {
        last: None,
        epoch: None,
    };
    let mut attempt = 0u32;
    while !*stop.borrow() {
        let instance = fleet.pick(spec.home, &mut rng);
        let ended = connection(
            &spec,
            instance,
            &fleet,
            &live,
            &mut cursor,
            &mut attempt,
            stop.clone(),
        )
        .await;
        let wait = match ended {
            Ended::Stop => return,
            Ended::After(d) => d,
            Ended::Backoff => {
                attempt += 1;
                backoff(attempt - 1, &mut rng)
            }
        };
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// One connection, from the attempt to its end.
async fn connection(
    spec: &Spec,
    instance: usize,
    fleet: &Status,
    live: &Live,
    cursor: &mut Cursor,
    attempt: &mut u32,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let log = |e: Event| live.log(spec.stream, spec.id, &e);
    log(Event::Open {
        t: now_ms(),
        instance,
        after: cursor.last,
    });
    let mut url = format!(
        "{}/v1/streams/chaos-{}/ws",
        fleet.bases[instance], spec.stream
    );
    if let Some(last) = cursor.last {
        url.push_str(&format!("?after={last}"));
        if let Some(epoch) = &cursor.epoch {
            url.push_str(&format!("&epoch={epoch}"));
        }
    }
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(&url))
        .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(response))) => {
            log(Event::Failed {
                t: now_ms(),
                status: response.status().as_u16(),
            });
            return Ended::Backoff;
        }
        _ => {
            log(Event::Failed {
                t: now_ms(),
                status: 0,
            });
            return Ended::Backoff;
        }
    };
    let (code, dropped, next) = read(spec, instance, ws, live, cursor, attempt, &mut stop).await;
    if let Some(code) = code.or(dropped.then_some(0)) {
        log(Event::Close { t: now_ms(), code });
        if code == 4002 {
            (cursor.last, cursor.epoch) = (None, None);
        }
        if FINAL_CLOSES.contains(&code) {
            return Ended::Stop;
        }
    }
    next
}

/// Reads one open connection until it ends: the close code (if the server sent one), whether
/// it ended without one, and what to do next.
async fn read(
    spec: &Spec,
    instance: usize,
    mut ws: Ws,
    live: &Live,
    cursor: &mut Cursor,
    attempt: &mut u32,
    stop: &mut watch::Receiver<bool>,
) -> (Option<u16>, bool, Ended) {
    let mut live_conn = false;
    let mut counted = false;
    let mut silent_once = false;
    let result = loop {
        let message = tokio::select! {
            m = tokio::time::timeout(HEARTBEAT, ws.next()) => m,
            _ = stopped(stop) => {
                let _ = ws.close(None).await;
                break (None, false, Ended::Stop);
            }
        };
        let message = match message {
            Err(_) if !silent_once => {
                silent_once = true;
                let _ = ws.send(Message::text(r#"{"type":"ping"}"#)).await;
                continue;
            }
            Err(_) => break (None, true, Ended::Backoff),
            Ok(None) | Ok(Some(Err(_))) => break (None, true, Ended::Backoff),
            Ok(Some(Ok(m))) => m,
        };
        silent_once = false;
        match message {
            Message::Text(text) => {
                let hint = frame(spec, text.as_str(), live, cursor, attempt, &mut live_conn);
                if live_conn && !counted {
                    counted = true;
                    live.viewer_connected(instance, true);
                }
                if let Some(hint) = hint {
                    let _ = ws.close(None).await;
                    break (None, false, Ended::After(hint));
                }
            }
            Message::Close(frame) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                break (Some(code), false, Ended::Backoff);
            }
            _ => {}
        }
    };
    if counted {
        live.viewer_connected(instance, false);
    }
    if matches!(result.2, Ended::After(_)) {
        // A hint: the library closes its socket and reconnects; log the close it made.
        live.log(
            spec.stream,
            spec.id,
            &Event::Close {
                t: now_ms(),
                code: u16::from(CloseCode::Normal),
            },
        );
    }
    result
}

/// Handles one text frame; `Some(delay)` when the server asked to reconnect.
fn frame(
    spec: &Spec,
    text: &str,
    live: &Live,
    cursor: &mut Cursor,
    attempt: &mut u32,
    live_conn: &mut bool,
) -> Option<Duration> {
    let t = now_ms();
    let ids = |comments: &[crate::proto::WireComment<'_>]| -> Vec<CommentId> {
        comments.iter().filter_map(|c| c.id.parse().ok()).collect()
    };
    match decode_client(text).ok()? {
        ClientFrame::Init {
            comments,
            resumed,
            epoch,
        } => {
            *attempt = 0;
            *live_conn = true;
            let resumed = resumed && cursor.last.is_some();
            if resumed {
                live.delivered(comments.iter().map(|c| c.ts));
            } else {
                cursor.last = None;
            }
            cursor.epoch = epoch.map(|e| e.into_owned());
            let ids = ids(&comments);
            cursor.last = ids.iter().copied().max().max(cursor.last);
            let epoch = cursor.epoch.clone().unwrap_or_default();
            live.log(
                spec.stream,
                spec.id,
                &Event::Init {
                    t,
                    resumed,
                    epoch,
                    ids,
                },
            );
        }
        ClientFrame::Comments { comments, skipped } => {
            live.delivered(comments.iter().map(|c| c.ts));
            let ids = ids(&comments);
            cursor.last = ids.iter().copied().max().max(cursor.last);
            live.log(spec.stream, spec.id, &Event::Comments { t, skipped, ids });
        }
        ClientFrame::Reconnect { after_ms } => {
            *attempt = 0;
            live.log(spec.stream, spec.id, &Event::Hint { t, after_ms });
            return Some(Duration::from_millis(after_ms));
        }
        _ => {}
    }
    None
}
