//! A Pusher poster's comments: each one triggered over the HTTP events API of the poster's
//! instance (`POST /apps/<id>/events`, signed), on one kept-alive connection of its own, by a
//! task of its own so that a slow answer holds up neither the poster's ticks nor its reads.
//! The 200 answer is the acknowledgement.
//!
//! Pusher assigns a comment neither an id nor a timestamp, so the trigger stamps both: `ts`,
//! the Unix milliseconds when the request goes out, and `id`, `<ts>-<n>` with `n` the stream's
//! count of comments. The triggers of one stream take turns (a lock per stream, held until the
//! answer): a comment goes out once the one before it was accepted, so id order is the order
//! in which the server took them, and a viewer that gets a comment before an earlier one sees
//! the server break that order (not two posters racing). The lock also bounds a stream's
//! triggers to one at a time: a stream's comments wait their turn when the server answers
//! slowly (the send latency, from the poster's tick, counts that wait; `ts` does not).

use std::rc::Rc;

use tokio::sync::{Mutex, mpsc};

use crate::http;
use crate::ipc::PosterSpec;
use crate::proto::pusher::{self, App, COMMENT_EVENT};
use crate::worker::{Shared, now_unix_us, warn};

/// Starts the task that triggers the poster's comments, when the run is against a Pusher
/// server; returns its queue (of comment texts).
pub(super) fn start(
    spec: &PosterSpec,
    state: &Shared,
    slot: usize,
) -> Option<mpsc::UnboundedSender<String>> {
    let app = state.borrow().pusher.clone()?;
    let turn = state
        .borrow_mut()
        .stream_seqs
        .entry(spec.endpoint.stream_index)
        .or_default()
        .clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_local(trigger(spec.clone(), app, turn, rx, state.clone(), slot));
    Some(tx)
}

/// Triggers each comment of the queue in its stream's turn, and counts the answers.
async fn trigger(
    spec: PosterSpec,
    app: Rc<App>,
    turn: Rc<Mutex<u64>>,
    mut queue: mpsc::UnboundedReceiver<String>,
    state: Shared,
    slot: usize,
) {
    let path = app.events_path();
    let mut client = match http::Client::new(&spec.endpoint.base, spec.endpoint.source) {
        Ok(client) => Some(client),
        Err(e) => {
            warn(&state, format!("poster {} triggers: {e:#}", spec.index));
            None
        }
    };
    while let Some(text) = queue.recv().await {
        let outcome = {
            let mut last = turn.lock().await;
            *last += 1;
            let ts_ms = (now_unix_us() / 1000) as u64;
            let data = pusher::comment_data(&format!("{ts_ms}-{}", *last), &text, ts_ms);
            let body = pusher::event_body(COMMENT_EVENT, &spec.endpoint.stream, &data);
            let query = pusher::signed_query(&app, "POST", &path, &body, ts_ms / 1000);
            match client.as_mut() {
                Some(client) => {
                    let target = format!("{path}?{query}");
                    client.request("POST", &target, None, Some(&body)).await
                }
                None => Err(anyhow::anyhow!("no client")),
            }
        };
        let accepted = match outcome {
            Ok(response) if response.status == 200 => true,
            Ok(response) => {
                let answer = String::from_utf8_lossy(&response.body);
                let why = format!("{} {answer}", response.status);
                warn(
                    &state,
                    format!("poster {} trigger refused: {why}", spec.index),
                );
                false
            }
            Err(e) => {
                warn(&state, format!("poster {} trigger: {e:#}", spec.index));
                false
            }
        };
        let poster = &mut state.borrow_mut().posters[slot];
        if accepted {
            poster.accepted += 1;
        } else {
            poster.rejected += 1;
        }
    }
}
