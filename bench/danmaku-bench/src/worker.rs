//! A worker process: opens its share of the run's connections, follows the coordinator's
//! commands, and reports what its clients saw.
//!
//! One single-threaded runtime per process: the coordinator spreads the load over several
//! processes (each holds at most 20,000 sockets here), and state shared by a process's
//! connections lives in one `RefCell` without atomics or locks.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::LocalSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::ipc::{
    Command, Endpoint, Event, Plan, PosterSpec, PosterTotals, Scenario, StreamTotals, TickCounts,
    Totals,
};
use crate::procfs;
use crate::proto::{
    ENGINE_IO_PONG, Frame, Target, comment_text, end_text, parse_comment_text, parse_end_text,
};
use crate::stats::Latency;

type Ws = WebSocketStream<TcpStream>;

/// How long a connection may take from TCP connect to `init`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Setup,
    Measure,
    StopPosting,
    Finish,
}

/// Everything a worker's connections count, shared through one `RefCell`.
#[derive(Default)]
struct State {
    measuring: bool,
    /// When the measured phase started, and when the last delivery arrived.
    started: Option<Instant>,
    last_delivery: Option<Instant>,
    connected: u64,
    setup_pending: u64,
    wave_pending: u64,
    tick: TickState,
    frames: u64,
    comment_frames: u64,
    deliveries: u64,
    /// Sum of `skipped` in the measured phase.
    skipped: u64,
    duplicates: u64,
    order_violations: u64,
    disconnects: u64,
    connect_errors: u64,
    upgrades: u64,
    cycles: u64,
    latency: Latency,
    send_latency: Latency,
    init: Latency,
    streams: HashMap<u32, StreamTotals>,
    posters: Vec<PosterTotals>,
    warnings: u32,
    /// Whether viewers wait for their stream's end marker, and how many still do.
    expect_end: bool,
    awaiting_end: u64,
    /// Streams whose end marker was acknowledged.
    ends_accepted: Vec<u32>,
}

#[derive(Default)]
struct TickState {
    deliveries: u64,
    frames: u64,
    skipped: u64,
    upgrades: u64,
    latency: Latency,
}

type Shared = Rc<RefCell<State>>;

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

pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    LocalSet::new().block_on(&runtime, main_loop())
}

fn emit(event: &Event) {
    let mut out = std::io::stdout().lock();
    // The coordinator is gone if this fails; the worker then ends with its stdin.
    let _ = serde_json::to_writer(&mut out, event);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn warn(state: &Shared, message: String) {
    let mut s = state.borrow_mut();
    if s.warnings < 5 {
        s.warnings += 1;
        emit(&Event::Warn { message });
    }
}

async fn main_loop() -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let plan: Plan = serde_json::from_str(&lines.next_line().await?.context("no plan on stdin")?)
        .context("bad plan")?;
    let state: Shared = Rc::default();
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let handshakes = Rc::new(Semaphore::new(plan.concurrency.max(1)));

    state.borrow_mut().expect_end = plan.expect_end;
    let posters = setup_posters(&plan, &state).await;
    let closers = setup_closers(&plan, &state).await;
    // No viewer connects before every worker's history is posted: comments published after
    // a viewer's `init` are counted against what it receives.
    emit(&Event::Prefilled);
    match lines
        .next_line()
        .await?
        .as_deref()
        .map(serde_json::from_str::<Command>)
    {
        Some(Ok(Command::Connect)) => {}
        Some(other) => bail!("expected connect, got {other:?}"),
        None => return Ok(()),
    }
    spawn_connections(&plan, &state, &phase, &handshakes);
    while state.borrow().setup_pending > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let s = state.borrow();
        emit(&Event::Ready {
            connected: s.connected,
            connect_errors: s.connect_errors,
            init: s.init.buckets(),
        });
    }
    for (spec, ws) in posters {
        let service = plan.service_token.clone();
        tokio::task::spawn_local(post(
            plan.target,
            spec,
            ws,
            service,
            state.clone(),
            phase.clone(),
        ));
    }
    for (spec, ws) in closers {
        tokio::task::spawn_local(close_stream(
            plan.target,
            spec,
            ws,
            state.clone(),
            phase.clone(),
        ));
    }

    let mut started = None;
    let mut active_cpu = None;
    let mut ticker = None::<tokio::time::Interval>;
    let mut wave_reported = plan.scenario != Scenario::Storm;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let command: Command = serde_json::from_str(&line).context("bad command")?;
                match command {
                    Command::Start => {
                        start_measuring(&state);
                        started = Some((Instant::now(), procfs::cpu_time("self")));
                        let mut interval = tokio::time::interval(Duration::from_secs(1));
                        interval.tick().await;
                        ticker = Some(interval);
                        let _ = phase_tx.send(Phase::Measure);
                    }
                    Command::StopPosting => {
                        active_cpu = procfs::cpu_time("self");
                        let _ = phase_tx.send(Phase::StopPosting);
                    }
                    Command::Finish => break,
                    Command::Connect => {}
                }
            }
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                emit(&Event::Tick(take_tick(&state)));
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if !wave_reported && started.is_some() => {
                if state.borrow().wave_pending == 0 {
                    wave_reported = true;
                    let s = state.borrow();
                    let elapsed = started.as_ref().map_or(0.0, |(at, _)| at.elapsed().as_secs_f64());
                    emit(&Event::WaveDone { upgrades: s.upgrades, elapsed_ms: elapsed * 1000.0 });
                }
            }
        }
    }
    let _ = phase_tx.send(Phase::Finish);
    // Let every connection task record its totals and send its close frame.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.borrow().connected > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let used = |from: Option<Duration>, to: Option<Duration>| match (from, to) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let (cpu_s, active_cpu_s) = match started {
        Some((_, cpu0)) => (
            used(cpu0, procfs::cpu_time("self")),
            used(cpu0, active_cpu.or_else(|| procfs::cpu_time("self"))),
        ),
        None => (0.0, 0.0),
    };
    let mut totals = totals(&state, cpu_s);
    totals.active_cpu_s = active_cpu_s;
    emit(&Event::Done(Box::new(totals)));
    Ok(())
}

fn start_measuring(state: &Shared) {
    let mut s = state.borrow_mut();
    s.measuring = true;
    s.started = Some(Instant::now());
    s.tick = TickState::default();
    s.frames = 0;
    s.comment_frames = 0;
    s.deliveries = 0;
    s.skipped = 0;
    s.duplicates = 0;
    s.order_violations = 0;
    s.upgrades = 0;
    s.latency.reset();
    s.send_latency.reset();
    s.init.reset();
}

fn take_tick(state: &Shared) -> TickCounts {
    let mut s = state.borrow_mut();
    let tick = std::mem::take(&mut s.tick);
    TickCounts {
        deliveries: tick.deliveries,
        frames: tick.frames,
        skipped: tick.skipped,
        awaiting_end: s.awaiting_end,
        connected: s.connected,
        upgrades: tick.upgrades,
        latency: tick.latency.buckets(),
    }
}

fn totals(state: &Shared, cpu_s: f64) -> Totals {
    let s = state.borrow();
    let mut streams: Vec<StreamTotals> = s.streams.values().cloned().collect();
    streams.sort_by_key(|t| t.stream_index);
    let last_delivery_s = match (s.started, s.last_delivery) {
        (Some(start), Some(last)) => last.saturating_duration_since(start).as_secs_f64(),
        _ => 0.0,
    };
    Totals {
        cpu_s,
        active_cpu_s: cpu_s,
        last_delivery_s,
        frames: s.frames,
        comment_frames: s.comment_frames,
        deliveries: s.deliveries,
        duplicates: s.duplicates,
        order_violations: s.order_violations,
        disconnects: s.disconnects,
        connect_errors: s.connect_errors,
        upgrades: s.upgrades,
        cycles: s.cycles,
        latency: s.latency.buckets(),
        send_latency: s.send_latency.buckets(),
        init: s.init.buckets(),
        streams,
        posters: s.posters.clone(),
        ends_accepted: s.ends_accepted.clone(),
    }
}

fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: a worker holds up to 20,000 connections.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Opens a WebSocket from `endpoint.source` and waits for `init`. Returns the socket and the
/// time from the TCP connect to `init`.
async fn connect(
    target: Target,
    endpoint: &Endpoint,
    token: Option<&str>,
    user: Option<&str>,
) -> anyhow::Result<(Ws, Duration)> {
    let started = Instant::now();
    let attempt = async {
        let url = target.url(&endpoint.base, &endpoint.stream, token, endpoint.max_rate);
        let host = endpoint
            .base
            .trim_start_matches("ws://")
            .trim_end_matches('/');
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("{host}: instances are given as ws://<ip>:<port>"))?;
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::new(endpoint.source.into(), 0))
            .with_context(|| format!("bind {}", endpoint.source))?;
        let tcp = socket.connect(addr).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
            .await
            .context("handshake")?;
        if let Some(hello) = target.hello(&endpoint.stream, user) {
            ws.send(Message::text(hello)).await?;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str())? {
                    Frame::Init => return Ok(ws),
                    Frame::Ping => ws.send(Message::text(ENGINE_IO_PONG)).await?,
                    Frame::Refused(why) => bail!("refused: {why}"),
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => bail!("closed before init: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before init"),
            }
        }
    };
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .context("timed out before init")??;
    Ok((ws, started.elapsed()))
}

/// Connects every poster and posts its history, before any viewer connects.
async fn setup_posters(plan: &Plan, state: &Shared) -> Vec<(PosterSpec, Ws)> {
    let mut ready = Vec::new();
    for spec in &plan.posters {
        state.borrow_mut().posters.push(PosterTotals {
            index: spec.index,
            stream_index: spec.endpoint.stream_index,
            ..PosterTotals::default()
        });
        let user = Some(spec.user.as_str());
        match connect(plan.target, &spec.endpoint, spec.token.as_deref(), user).await {
            Ok((mut ws, _)) => match prefill(plan.target, &mut ws, spec.prefill).await {
                Ok(()) => ready.push((spec.clone(), ws)),
                Err(e) => {
                    state.borrow_mut().connect_errors += 1;
                    warn(state, format!("poster {} prefill: {e:#}", spec.index));
                }
            },
            Err(e) => {
                state.borrow_mut().connect_errors += 1;
                warn(state, format!("poster {}: {e:#}", spec.index));
            }
        }
    }
    ready
}

/// Connects the end markers' moderators.
async fn setup_closers(plan: &Plan, state: &Shared) -> Vec<(PosterSpec, Ws)> {
    let mut ready = Vec::new();
    for spec in &plan.closers {
        let user = Some(spec.user.as_str());
        match connect(plan.target, &spec.endpoint, spec.token.as_deref(), user).await {
            Ok((ws, _)) => ready.push((spec.clone(), ws)),
            Err(e) => {
                state.borrow_mut().connect_errors += 1;
                warn(
                    state,
                    format!("end marker of stream {}: {e:#}", spec.endpoint.stream_index),
                );
            }
        }
    }
    ready
}

/// Posts `count` comments one after another, each once the previous one is acknowledged.
async fn prefill(target: Target, ws: &mut Ws, count: u32) -> anyhow::Result<()> {
    for i in 0..count {
        let reference = format!("h{i}");
        ws.send(Message::text(
            target.post(&format!("history {i}"), &reference),
        ))
        .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str())? {
                    Frame::Ack { error: Some(e), .. } => bail!("history comment refused: {e}"),
                    Frame::Ack { .. } => break,
                    Frame::Ping => ws.send(Message::text(ENGINE_IO_PONG)).await?,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed while posting history"),
            }
        }
    }
    Ok(())
}

fn spawn_connections(
    plan: &Plan,
    state: &Shared,
    phase: &watch::Receiver<Phase>,
    handshakes: &Rc<Semaphore>,
) {
    let target = plan.target;
    if plan.scenario != Scenario::Churn {
        state.borrow_mut().setup_pending = plan.viewers.len() as u64;
        let storm = plan.scenario == Scenario::Storm;
        if storm {
            state.borrow_mut().wave_pending = plan.viewers.len() as u64;
        }
        for endpoint in plan.viewers.clone() {
            let (state, phase, handshakes) = (state.clone(), phase.clone(), handshakes.clone());
            tokio::task::spawn_local(async move {
                viewer(target, endpoint, storm, state, phase, handshakes).await;
            });
        }
    }
    if plan.scenario.churns() {
        for _ in 0..plan.churn_slots {
            let (state, phase) = (state.clone(), phase.clone());
            let choices = plan.churn_choices.clone();
            let hold = plan.churn_hold_ms;
            tokio::task::spawn_local(churn(target, choices, hold, state, phase));
        }
    }
}

/// One viewer: connect, read until told to finish; in a storm, drop the connection and
/// reconnect when the measured phase starts.
async fn viewer(
    target: Target,
    endpoint: Endpoint,
    storm: bool,
    state: Shared,
    mut phase: watch::Receiver<Phase>,
    handshakes: Rc<Semaphore>,
) {
    let mut ws = open(target, &endpoint, &state, &handshakes).await;
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
        ws = open(target, &endpoint, &state, &handshakes).await;
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
                        let _ = ws.send(Message::text(ENGINE_IO_PONG)).await;
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

/// Opens a counted connection; failures are counted and reported, not fatal.
async fn open(
    target: Target,
    endpoint: &Endpoint,
    state: &Shared,
    handshakes: &Semaphore,
) -> Option<Ws> {
    let permit = handshakes.acquire().await.ok()?;
    let result = connect(target, endpoint, None, None).await;
    drop(permit);
    match result {
        Ok((ws, init)) => {
            let mut s = state.borrow_mut();
            s.connected += 1;
            s.init.record_us(init.as_micros() as i64);
            if s.measuring {
                s.upgrades += 1;
                s.tick.upgrades += 1;
            }
            Some(ws)
        }
        Err(e) => {
            state.borrow_mut().connect_errors += 1;
            warn(state, format!("{}: {e:#}", endpoint.base));
            None
        }
    }
}

/// Reads (answering Engine.IO pings) until the phase reaches `until`; `Err` if the connection
/// closed first.
async fn wait_for(
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
    ws: &mut Ws,
    target: Target,
    state: &Shared,
) -> Result<(), ()> {
    while *phase.borrow() < until {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if matches!(target.decode(text.as_str()), Ok(Frame::Ping)) {
                        let _ = ws.send(Message::text(ENGINE_IO_PONG)).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let mut s = state.borrow_mut();
                    s.connected -= 1;
                    s.disconnects += 1;
                    return Err(());
                }
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => if changed.is_err() { return Err(()) },
        }
    }
    Ok(())
}

/// Counts one frame a viewer read. Returns whether an Engine.IO pong is due.
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

/// A poster: waits for the measured phase, posts at its rate until told to stop, and counts
/// acknowledgements until the run finishes. A share of its comments (`system_share`, spread
/// evenly over its ticks) are system comments, posted over the service API by a task of its
/// own so that a slow HTTP answer holds up neither its WebSocket posts nor its reads.
async fn post(
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
    let system = match service_token {
        Some(token) if spec.system_share > 0.0 => {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(post_system(spec.clone(), token, rx, state.clone(), slot));
            Some(tx)
        }
        _ => None,
    };
    // Which ticks post a system comment: each adds the share, and a whole one is spent on a
    // system comment (the start is random so that posters do not all pick the same ticks).
    let mut system_credit: f64 = rand::rng().random();
    let period = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let (mut seq, mut system_seq) = (0u32, 0u32);
    let mut interval: Option<tokio::time::Interval> = None;
    loop {
        let posting = interval.is_some();
        tokio::select! {
            _ = async { interval.as_mut().expect("guarded").tick().await }, if posting => {
                if let Some(system) = &system {
                    system_credit += spec.system_share;
                    if system_credit >= 1.0 {
                        system_credit -= 1.0;
                        system_seq += 1;
                        let text = comment_text(spec.index, system_seq, now_unix_us() as u64);
                        state.borrow_mut().posters[slot].system_sent += 1;
                        let _ = system.send((system_seq, text));
                        continue;
                    }
                }
                seq += 1;
                let text = comment_text(spec.index, seq, now_unix_us() as u64);
                let frame = target.post(&text, &seq.to_string());
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
                state.borrow_mut().posters[slot].sent += 1;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str()) {
                    Ok(Frame::Ack { error, .. }) => {
                        let mut s = state.borrow_mut();
                        match error {
                            None => s.posters[slot].accepted += 1,
                            Some(_) => s.posters[slot].rejected += 1,
                        }
                    }
                    Ok(Frame::Ping) => { let _ = ws.send(Message::text(ENGINE_IO_PONG)).await; }
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
    let mut client = match crate::http::Client::new(&spec.endpoint.base, spec.endpoint.source) {
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
async fn close_stream(
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
                    Ok(Frame::Ping) => { let _ = ws.send(Message::text(ENGINE_IO_PONG)).await; }
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

/// One churn loop: connect to a random stream, stay a random while, leave, again.
async fn churn(
    target: Target,
    choices: Vec<Endpoint>,
    hold_ms: (u64, u64),
    state: Shared,
    mut phase: watch::Receiver<Phase>,
) {
    if phase.wait_for(|p| *p >= Phase::Measure).await.is_err() || choices.is_empty() {
        return;
    }
    let single = Semaphore::new(1);
    while *phase.borrow() == Phase::Measure {
        let endpoint = &choices[rand::rng().random_range(0..choices.len())];
        let Some(mut ws) = open(target, endpoint, &state, &single).await else {
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
                            let _ = ws.send(Message::text(ENGINE_IO_PONG)).await;
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
    use super::*;

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
