//! The connections that read: viewers, which count every comment they receive (duplicates,
//! order, what the server said it left out, the stream's end marker), and connect-and-leave
//! loops (churn). In a storm, a viewer drops its connection and reconnects when the measured
//! phase starts.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::ipc::{Endpoint, Plan, Scenario, StreamTotals};
use crate::proto::{Frame, Target, parse_comment_text, parse_end_text};
use crate::worker::connect::{Reading, open, wait_for};
use crate::worker::{Phase, Shared, State, now_unix_us};

/// What a viewer remembers to count duplicates, order, distinct comments and what the
/// server left out.
#[derive(Default)]
struct Seen {
    /// Last sequence number received from each poster, of its user and of its system
    /// comments apart (a poster numbers each kind 1, 2, …, and the two take different roads).
    last_seq: HashMap<(u32, bool), u32>,
    last_id: Option<(u64, u64)>,
    /// Distinct benchmark comments (user and system).
    distinct: u64,
    user: u64,
    system: u64,
    /// Sum of `skipped` since `init`.
    skipped: u64,
    /// Whether the stream's end marker came.
    ended: bool,
}

pub(super) fn spawn_connections(
    plan: &Plan,
    state: &Shared,
    phase: &watch::Receiver<Phase>,
    handshakes: &Rc<Semaphore>,
) {
    let target = plan.target;
    let reading = Reading::viewer(plan);
    if plan.scenario != Scenario::Churn {
        state.borrow_mut().setup_pending = plan.viewers.len() as u64;
        let storm = plan.scenario == Scenario::Storm;
        if storm {
            state.borrow_mut().wave_pending = plan.viewers.len() as u64;
        }
        for endpoint in plan.viewers.clone() {
            let (state, phase, handshakes) = (state.clone(), phase.clone(), handshakes.clone());
            tokio::task::spawn_local(async move {
                let link = Link { target, reading };
                viewer(link, endpoint, storm, state, phase, handshakes).await;
            });
        }
    }
    if plan.scenario.churns() {
        for _ in 0..plan.churn_slots {
            let (state, phase) = (state.clone(), phase.clone());
            let choices = plan.churn_choices.clone();
            let hold = plan.churn_hold_ms;
            // Not counted: their bytes are no viewer's deliveries.
            let link = Link {
                target,
                reading: Reading {
                    counted: false,
                    ..reading
                },
            };
            tokio::task::spawn_local(churn(link, choices, hold, state, phase));
        }
    }
}

/// How a reading connection speaks and reads.
#[derive(Clone, Copy)]
struct Link {
    target: Target,
    reading: Reading,
}

/// One viewer: connect, read until told to finish; in a storm, drop the connection and
/// reconnect when the measured phase starts.
async fn viewer(
    link: Link,
    endpoint: Endpoint,
    storm: bool,
    state: Shared,
    mut phase: watch::Receiver<Phase>,
    handshakes: Rc<Semaphore>,
) {
    let Link { target, reading } = link;
    let mut ws = open(target, &endpoint, reading, &state, &handshakes).await;
    state.borrow_mut().setup_pending -= 1;
    let mut seen = Seen::default();
    if storm {
        if let Some(mut old) = ws.take() {
            if wait_for(&mut phase, Phase::Measure, &mut old, target, &state)
                .await
                .is_err()
            {
                drop(old);
                state.borrow_mut().wave_pending -= 1;
                return;
            }
            // The reconnect storm: every client drops its connection and comes straight back.
            let _ = old.close(None).await;
            drop(old);
            state.borrow_mut().connected -= 1;
        } else if phase.wait_for(|p| *p >= Phase::Measure).await.is_err() {
            return;
        }
        ws = open(target, &endpoint, reading, &state, &handshakes).await;
        state.borrow_mut().wave_pending -= 1;
    }
    let Some(mut ws) = ws else { return };
    {
        let mut s = state.borrow_mut();
        if s.expect_end {
            s.awaiting_end += 1;
        }
    }
    let stayed = loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let pong = on_viewer_frame(target, text.as_str(), &mut seen, &mut state.borrow_mut());
                    if pong {
                        let _ = ws.send(Message::text(target.pong())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break false,
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Finish {
                    break true;
                }
            }
        }
    };
    record_viewer_end(&state, &endpoint, &seen, stayed);
    if stayed {
        let _ = ws.close(None).await;
    }
}

fn record_viewer_end(state: &Shared, endpoint: &Endpoint, seen: &Seen, stayed: bool) {
    let mut s = state.borrow_mut();
    s.connected -= 1;
    if s.expect_end && !seen.ended {
        s.awaiting_end = s.awaiting_end.saturating_sub(1);
    }
    if stayed {
        let one = StreamTotals {
            stream_index: endpoint.stream_index,
            viewers: 1,
            distinct: seen.distinct,
            skipped: seen.skipped,
            user: seen.user,
            user_min: seen.user,
            user_max: seen.user,
            system: seen.system,
            ended: u64::from(seen.ended),
            accounted: vec![(seen.distinct + u64::from(seen.ended) + seen.skipped, 1)],
        };
        s.streams
            .entry(endpoint.stream_index)
            .or_default()
            .merge(&one);
    } else {
        s.disconnects += 1;
    }
}

/// Counts one frame a viewer read. Returns whether a pong is due.
fn on_viewer_frame(target: Target, text: &str, seen: &mut Seen, s: &mut State) -> bool {
    if s.measuring {
        s.frames += 1;
        s.tick.frames += 1;
    }
    let frame = match target.decode(text) {
        Ok(frame) => frame,
        Err(_) => return false,
    };
    let (comments, skipped) = match frame {
        Frame::Comments { comments, skipped } => (comments, skipped),
        Frame::Ping => return true,
        _ => return false,
    };
    seen.skipped += skipped;
    if s.measuring {
        s.skipped += skipped;
        s.tick.skipped += skipped;
    }
    let now_us = now_unix_us();
    let deliveries_before = s.deliveries;
    for comment in comments {
        if let Some(id) = parse_id(&comment.id) {
            if seen.last_id.is_some_and(|last| id <= last) {
                s.order_violations += 1;
            }
            seen.last_id = Some(id);
        }
        if parse_end_text(&comment.text).is_some() {
            if seen.ended {
                s.duplicates += 1;
            } else {
                seen.ended = true;
                if s.expect_end {
                    s.awaiting_end = s.awaiting_end.saturating_sub(1);
                }
            }
            continue;
        }
        let Some((poster, seq, sent_us)) = parse_comment_text(&comment.text) else {
            continue;
        };
        let system = !comment.is_user();
        let last = seen.last_seq.entry((poster, system)).or_insert(0);
        if seq <= *last {
            s.duplicates += 1;
            continue;
        }
        *last = seq;
        seen.distinct += 1;
        if system {
            seen.system += 1;
        } else {
            seen.user += 1;
        }
        if !s.measuring {
            continue;
        }
        let latency = now_us - (comment.ts as i64) * 1000;
        s.deliveries += 1;
        s.last_delivery = Some(Instant::now());
        s.latency.record_us(latency);
        s.send_latency.record_us(now_us - sent_us as i64);
        s.tick.deliveries += 1;
        s.tick.latency.record_us(latency);
    }
    // Frames carrying deliveries (not those with only the end marker, a duplicate or
    // someone else's comment), so that deliveries / frames is comments per frame.
    if s.deliveries > deliveries_before {
        s.comment_frames += 1;
    }
    false
}

/// A comment id `<ms>-<seq>`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One churn loop: connect to a random stream, stay a random while, leave, again.
async fn churn(
    link: Link,
    choices: Vec<Endpoint>,
    hold_ms: (u64, u64),
    state: Shared,
    mut phase: watch::Receiver<Phase>,
) {
    let Link { target, reading } = link;
    if phase.wait_for(|p| *p >= Phase::Measure).await.is_err() || choices.is_empty() {
        return;
    }
    let single = Semaphore::new(1);
    while *phase.borrow() == Phase::Measure {
        let endpoint = &choices[rand::rng().random_range(0..choices.len())];
        let Some(mut ws) = open(target, endpoint, reading, &state, &single).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let hold = rand::rng().random_range(hold_ms.0..=hold_ms.1.max(hold_ms.0));
        let leave = tokio::time::sleep(Duration::from_millis(hold));
        tokio::pin!(leave);
        let closed_early = loop {
            tokio::select! {
                _ = &mut leave => break false,
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if matches!(target.decode(text.as_str()), Ok(Frame::Ping)) {
                            let _ = ws.send(Message::text(target.pong())).await;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break true,
                    Some(Ok(_)) => {}
                },
            }
        };
        if !closed_early {
            let _ = ws.close(None).await;
        }
        let mut s = state.borrow_mut();
        s.connected -= 1;
        if closed_early {
            s.disconnects += 1;
        } else {
            s.cycles += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::proto::{comment_text, end_text};

    /// A `comments` frame of `(id, kind, text)`, with `skipped` when given.
    fn frame_of(comments: &[(&str, &str, String)], skipped: Option<u64>) -> String {
        let comments: Vec<String> = comments
            .iter()
            .map(|(id, kind, text)| {
                format!(
                    r#"{{"id":"{id}","stream_id":"s","kind":"{kind}","user":{{"id":"u","name":"u"}},"text":"{text}","data":null,"ts":1}}"#
                )
            })
            .collect();
        let skipped = skipped.map_or(String::new(), |n| format!(r#","skipped":{n}"#));
        format!(
            r#"{{"type":"comments","comments":[{}]{skipped}}}"#,
            comments.join(",")
        )
    }

    fn frame(comments: &[(&str, u32, u32)]) -> String {
        let comments: Vec<(&str, &str, String)> = comments
            .iter()
            .map(|&(id, poster, seq)| (id, "user", comment_text(poster, seq, 1_000)))
            .collect();
        frame_of(&comments, None)
    }

    #[test]
    fn counts_distinct_duplicate_and_out_of_order_comments() {
        let mut state = State {
            measuring: true,
            ..State::default()
        };
        let mut seen = Seen::default();
        let t = Target::Danmaku;
        // Two posters interleaved, one batch of two comments.
        assert!(!on_viewer_frame(
            t,
            &frame(&[("5-0", 1, 1), ("5-1", 2, 1)]),
            &mut seen,
            &mut state
        ));
        // Poster 1's first comment again (a duplicate, and an id that goes backwards).
        on_viewer_frame(t, &frame(&[("5-0", 1, 1)]), &mut seen, &mut state);
        // Poster 1's third comment: its second never came (a loss the coordinator counts from
        // the acknowledged total).
        on_viewer_frame(t, &frame(&[("6-0", 1, 3)]), &mut seen, &mut state);
        // Not a benchmark comment: ignored, but its id still must increase.
        on_viewer_frame(
            t,
            r#"{"type":"comments","comments":[{"id":"7-0","text":"hi","ts":1}]}"#,
            &mut seen,
            &mut state,
        );
        on_viewer_frame(t, r#"{"type":"viewers","count":3}"#, &mut seen, &mut state);
        assert_eq!(seen.distinct, 3);
        assert_eq!(seen.user, 3);
        assert_eq!(state.deliveries, 3);
        assert_eq!(state.duplicates, 1);
        assert_eq!(state.order_violations, 1);
        assert_eq!(state.frames, 5);
        assert_eq!(
            state.comment_frames, 2,
            "the frames that carried deliveries"
        );
        // Engine.IO pings are answered.
        assert!(on_viewer_frame(
            Target::Socketio,
            "2",
            &mut seen,
            &mut state
        ));
    }

    #[test]
    fn counts_skipped_system_comments_and_the_end_marker() {
        let mut state = State {
            measuring: true,
            expect_end: true,
            awaiting_end: 1,
            ..State::default()
        };
        let mut seen = Seen::default();
        let t = Target::Danmaku;
        // Poster 1's user comments 1 and 4 (2 and 3 thinned, told in `skipped`), and its
        // system comment 1 in between: two sequences of one poster.
        let text = |seq| comment_text(1, seq, 1_000);
        on_viewer_frame(
            t,
            &frame_of(
                &[
                    ("5-0", "user", text(1)),
                    ("5-1", "gift", text(1)),
                    ("5-4", "user", text(4)),
                ],
                Some(2),
            ),
            &mut seen,
            &mut state,
        );
        // The system comment 2 after the user comment 5: not out of order.
        on_viewer_frame(
            t,
            &frame_of(
                &[("6-0", "user", text(5)), ("6-1", "system", text(2))],
                Some(3),
            ),
            &mut seen,
            &mut state,
        );
        assert_eq!(state.awaiting_end, 1);
        on_viewer_frame(
            t,
            &frame_of(&[("7-0", "user", end_text(0))], Some(1)),
            &mut seen,
            &mut state,
        );
        assert_eq!((seen.user, seen.system, seen.distinct), (3, 2, 5));
        assert_eq!(seen.skipped, 6);
        assert!(seen.ended);
        assert_eq!(state.awaiting_end, 0, "the viewer has its end marker");
        assert_eq!(state.deliveries, 5, "the end marker is not a delivery");
        assert_eq!((state.skipped, state.tick.skipped), (6, 6));
        assert_eq!((state.duplicates, state.order_violations), (0, 0));
        assert_eq!(state.comment_frames, 2, "not the end marker's");

        // Its books: 5 received + the end marker + 6 skipped = 12 published.
        let shared: Shared = Rc::new(RefCell::new(state));
        shared.borrow_mut().connected = 1;
        let endpoint = Endpoint {
            base: "ws://127.0.0.1:1".into(),
            stream: "s".into(),
            stream_index: 0,
            source: std::net::Ipv4Addr::LOCALHOST,
            max_rate: None,
        };
        record_viewer_end(&shared, &endpoint, &seen, true);
        let s = shared.borrow();
        let totals = &s.streams[&0];
        assert_eq!(totals.accounted, vec![(12, 1)]);
        assert_eq!(
            (
                totals.user_min,
                totals.user_max,
                totals.system,
                totals.ended
            ),
            (3, 3, 2, 1)
        );
    }
}
