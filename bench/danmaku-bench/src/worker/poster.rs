//! The connections that write: posters (comments at their rate, a share of them as system
//! comments over the service API; against a Pusher server, every comment over its HTTP events
//! API, [`trigger`](super::trigger)) and the streams' end markers, posted by a moderator once
//! every poster heard back about every comment it sent.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::http;
use crate::ipc::{PosterSpec, PosterTotals};
use crate::proto::{Frame, SHADOW_TERM, Target, comment_text, end_text};
use crate::worker::connect::Ws;
use crate::worker::trigger;
use crate::worker::{Phase, Shared, now_unix_us, warn};

/// A poster: waits for the measured phase, posts at its rate until told to stop, and counts
/// acknowledgements until the run finishes. A share of its comments (`system_share`, spread
/// evenly over its ticks) are system comments, posted over the service API by a task of its
/// own so that a slow HTTP answer holds up neither its WebSocket posts nor its reads.
pub(super) async fn post(
    target: Target,
    spec: PosterSpec,
    mut ws: Ws,
    service_token: Option<String>,
    state: Shared,
    mut phase: watch::Receiver<Phase>,
) {
    state.borrow_mut().connected += 1;
    let slot = state
        .borrow()
        .posters
        .iter()
        .position(|p| p.index == spec.index)
        .expect("poster registered at setup");
    let mut next = Next {
        system: system_poster(&spec, service_token, &state, slot),
        trigger: trigger::start(&spec, &state, slot),
        // The start is random so that posters do not all pick the same ticks.
        system_credit: rand::rng().random(),
        shadow_credit: rand::rng().random(),
        shadowed: HashSet::new(),
        seq: 0,
        system_seq: 0,
    };
    let period = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let mut interval: Option<tokio::time::Interval> = None;
    loop {
        let posting = interval.is_some();
        tokio::select! {
            _ = async { interval.as_mut().expect("guarded").tick().await }, if posting => {
                if !next.post(target, &spec, &mut ws, &state, slot).await {
                    break;
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str()) {
                    Ok(Frame::Ack { error, reference }) => {
                        next.answered(reference.as_deref(), error.is_none(), &state, slot);
                    }
                    Ok(Frame::Ping) => { let _ = ws.send(Message::text(target.pong())).await; }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => {
                if changed.is_err() { break; }
                let now = *phase.borrow();
                match now {
                    Phase::Measure if interval.is_none() && spec.rate > 0.0 => {
                        let offset = rand::rng().random_range(0.0..period.as_secs_f64());
                        let first = tokio::time::Instant::now() + Duration::from_secs_f64(offset);
                        interval = Some(tokio::time::interval_at(first, period));
                    }
                    Phase::StopPosting => interval = None,
                    Phase::Finish => {
                        let _ = ws.close(None).await;
                        state.borrow_mut().connected -= 1;
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
    let mut s = state.borrow_mut();
    s.connected -= 1;
    s.disconnects += 1;
    // Comments it will never hear about: count them refused, so the end markers need not
    // wait for them.
    let poster = &mut s.posters[slot];
    poster.rejected += poster
        .sent
        .saturating_sub(poster.accepted + poster.rejected);
}

/// What a poster posts next: its comments' numbers, and which ticks go to system comments.
struct Next {
    /// The queue of the poster's system comments (`None` when it posts none).
    system: Option<mpsc::UnboundedSender<(u32, String)>>,
    /// The queue of its comments' triggers, against a Pusher server.
    trigger: Option<mpsc::UnboundedSender<String>>,
    /// Which ticks post a system comment: each adds the share, and a whole one is spent on a
    /// system comment.
    system_credit: f64,
    /// The same for the user comments that hold the shadow term.
    shadow_credit: f64,
    /// The numbers of the shadowed user comments not yet acknowledged.
    shadowed: HashSet<u32>,
    /// The last user and system comment numbers (each kind counts 1, 2, …).
    seq: u32,
    system_seq: u32,
}

impl Next {
    /// Counts the answer to the user comment `reference` names: accepted (and whether it was
    /// one of the shadowed) or refused.
    fn answered(&mut self, reference: Option<&str>, accepted: bool, state: &Shared, slot: usize) {
        let shadowed = reference
            .and_then(|r| r.parse().ok())
            .is_some_and(|seq: u32| self.shadowed.remove(&seq));
        let poster = &mut state.borrow_mut().posters[slot];
        if accepted {
            poster.accepted += 1;
            poster.shadow_accepted += u64::from(shadowed);
        } else {
            poster.rejected += 1;
        }
    }

    /// Posts one comment: a system comment when the credit makes a whole one, else a user
    /// comment over the WebSocket (or its trigger, against a Pusher server). `false` when the
    /// connection is lost.
    async fn post(
        &mut self,
        target: Target,
        spec: &PosterSpec,
        ws: &mut Ws,
        state: &Shared,
        slot: usize,
    ) -> bool {
        if let Some(system) = &self.system {
            self.system_credit += spec.system_share;
            if self.system_credit >= 1.0 {
                self.system_credit -= 1.0;
                self.system_seq += 1;
                let text = comment_text(spec.index, self.system_seq, now_unix_us() as u64);
                state.borrow_mut().posters[slot].system_sent += 1;
                let _ = system.send((self.system_seq, text));
                return true;
            }
        }
        self.seq += 1;
        let mut text = comment_text(spec.index, self.seq, now_unix_us() as u64);
        self.shadow_credit += spec.shadow_share;
        if self.shadow_credit >= 1.0 {
            self.shadow_credit -= 1.0;
            text = format!("{text} {SHADOW_TERM}");
            self.shadowed.insert(self.seq);
        }
        if let Some(trigger) = &self.trigger {
            // The task ends only once this queue is dropped.
            let _ = trigger.send(text);
            state.borrow_mut().posters[slot].sent += 1;
            return true;
        }
        let frame = target.post(&text, &self.seq.to_string());
        if ws.send(Message::text(frame)).await.is_err() {
            return false;
        }
        state.borrow_mut().posters[slot].sent += 1;
        true
    }
}

/// Starts the task that posts the poster's system comments, when it has a share of them and
/// a service token; returns its queue.
fn system_poster(
    spec: &PosterSpec,
    service_token: Option<String>,
    state: &Shared,
    slot: usize,
) -> Option<mpsc::UnboundedSender<(u32, String)>> {
    match service_token {
        Some(token) if spec.system_share > 0.0 => {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(post_system(spec.clone(), token, rx, state.clone(), slot));
            Some(tx)
        }
        _ => None,
    }
}

/// A poster's system comments: `POST /v1/streams/{id}/comments` with the service token, one
/// at a time on one kept-alive connection, each with an idempotency key (a request retried
/// on a new connection publishes once).
async fn post_system(
    spec: PosterSpec,
    token: String,
    mut queue: mpsc::UnboundedReceiver<(u32, String)>,
    state: Shared,
    slot: usize,
) {
    let path = format!("/v1/streams/{}/comments", spec.endpoint.stream);
    let mut client = match http::Client::new(&spec.endpoint.base, spec.endpoint.source) {
        Ok(client) => Some(client),
        Err(e) => {
            warn(
                &state,
                format!("poster {} system comments: {e:#}", spec.index),
            );
            None
        }
    };
    while let Some((seq, text)) = queue.recv().await {
        let body = serde_json::json!({
            "kind": "gift",
            "text": text,
            "data": { "bench": { "poster": spec.index, "seq": seq } },
            "idempotency_key": format!("bench-{}-{seq}", spec.index),
        });
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let outcome = match client.as_mut() {
            Some(client) => client.post_json(&path, &token, &body).await,
            None => Err(anyhow::anyhow!("no client")),
        };
        let accepted = match outcome {
            // 201: published; 200: already published under this key (a retried request).
            Ok(response) if response.status == 201 || response.status == 200 => true,
            Ok(response) => {
                warn(
                    &state,
                    format!(
                        "poster {} system comment refused: {} {}",
                        spec.index,
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    ),
                );
                false
            }
            Err(e) => {
                warn(
                    &state,
                    format!("poster {} system comment: {e:#}", spec.index),
                );
                false
            }
        };
        let mut s = state.borrow_mut();
        if accepted {
            s.posters[slot].system_accepted += 1;
        } else {
            s.posters[slot].system_rejected += 1;
        }
    }
}

/// Longest wait for the posters' last comments to be answered before a stream's end marker
/// goes out anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream's end marker: a moderator that reads along (answering pings) and, once posting
/// stopped and every poster of this worker heard back about every comment it sent, posts
/// [`end_text`], the stream's last comment of the run.
pub(super) async fn close_stream(
    target: Target,
    spec: PosterSpec,
    mut ws: Ws,
    state: Shared,
    mut phase: watch::Receiver<Phase>,
) {
    let stream = spec.endpoint.stream_index;
    // Set once posting stopped: until when to wait for the posters' answers.
    let mut draining: Option<Instant> = None;
    let mut posted = false;
    let mut check = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = check.tick(), if draining.is_some() && !posted => {
                let in_flight: u64 = state.borrow().posters.iter().map(PosterTotals::in_flight).sum();
                let deadline = draining.expect("guarded");
                if in_flight == 0 || Instant::now() >= deadline {
                    if in_flight > 0 {
                        warn(&state, format!("end marker of stream {stream}: {in_flight} comments still unanswered"));
                    }
                    posted = true;
                    if ws.send(Message::text(target.post(&end_text(stream), "end"))).await.is_err() {
                        warn(&state, format!("end marker of stream {stream}: connection lost"));
                        return;
                    }
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str()) {
                    Ok(Frame::Ack { error, .. }) => match error {
                        None => state.borrow_mut().ends_accepted.push(stream),
                        Some(e) => warn(&state, format!("end marker of stream {stream} refused: {e}")),
                    },
                    Ok(Frame::Ping) => { let _ = ws.send(Message::text(target.pong())).await; }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    warn(&state, format!("end marker of stream {stream}: connection closed"));
                    return;
                }
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => {
                if changed.is_err() { return; }
                let now = *phase.borrow();
                match now {
                    Phase::StopPosting => draining = Some(Instant::now() + DRAIN_TIMEOUT),
                    Phase::Finish => {
                        let _ = ws.close(None).await;
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}
