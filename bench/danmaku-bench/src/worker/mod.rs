//! A worker process: opens its share of the run's connections, follows the coordinator's
//! commands, and reports what its clients saw.
//!
//! One single-threaded runtime per process: the coordinator spreads the load over several
//! processes (each holds at most 20,000 sockets here), and state shared by a process's
//! connections lives in one `RefCell` without atomics or locks.

//! Its parts: [`connect`] opens connections (and posts a poster's history), [`viewer`] reads
//! (viewers and connect-and-leave loops), [`poster`] writes (comments at a rate, system
//! comments, the streams' end markers), [`wire`] counts (and with `--deflate` inflates) what a
//! viewer's socket reads, [`trigger`] posts a Pusher poster's comments over the HTTP events API.
//! It uses `ipc`, `proto`, `stats`, `procfs` and `http`.

mod connect;
mod poster;
mod trigger;
mod viewer;
mod wire;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::LocalSet;

use crate::ipc::{Command, Event, Plan, PosterTotals, Scenario, StreamTotals, TickCounts, Totals};
use crate::procfs;
use crate::proto::pusher::App;
use crate::stats::Latency;

use connect::{setup_closers, setup_posters};
use poster::{close_stream, post};
use viewer::spawn_connections;
use wire::WireTally;

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
    /// Bytes the viewers' sockets read in the measured phase (wire bytes: before inflating).
    wire: Rc<WireTally>,
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
    /// The Pusher app (`--target pusher`).
    pusher: Option<Rc<App>>,
    /// Pusher: each stream's trigger lock and the number of its last comment ([`trigger`]).
    stream_seqs: HashMap<u32, Rc<tokio::sync::Mutex<u64>>>,
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

pub(crate) fn run() -> anyhow::Result<()> {
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

/// The coordinator's commands, one JSON object per line on stdin.
type Commands = tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>;

/// When the measured phase started: the instant, and this process's CPU time then.
type Started = Option<(Instant, Option<Duration>)>;

async fn main_loop() -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let plan: Plan = serde_json::from_str(&lines.next_line().await?.context("no plan on stdin")?)
        .context("bad plan")?;
    let state: Shared = Rc::default();
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let handshakes = Rc::new(Semaphore::new(plan.concurrency.max(1)));

    state.borrow_mut().expect_end = plan.expect_end;
    state.borrow_mut().pusher = plan.pusher.clone().map(Rc::new);
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
    let (started, active_cpu) = follow(&mut lines, &plan, &state, &phase_tx).await?;
    let _ = phase_tx.send(Phase::Finish);
    report_totals(&state, started, active_cpu).await;
    Ok(())
}

/// Follows the coordinator's commands through the measured phase until it says finish (or
/// goes), reporting a tick each second and the storm's wave once it is over. Returns when the
/// measured phase started and this process's CPU time when posting stopped.
async fn follow(
    lines: &mut Commands,
    plan: &Plan,
    state: &Shared,
    phase_tx: &watch::Sender<Phase>,
) -> anyhow::Result<(Started, Option<Duration>)> {
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
                        start_measuring(state);
                        started = Some((Instant::now(), procfs::cpu_time("self")));
                        let mut interval = tokio::time::interval(Duration::from_secs(1));
                        interval.tick().await;
                        ticker = Some(interval);
                        phase_tx.send_if_modified(|p| begin(p, Phase::Measure));
                    }
                    // The posters' lead-in: they post, nothing is measured yet.
                    Command::Post => {
                        phase_tx.send_if_modified(|p| begin(p, Phase::Measure));
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
                emit(&Event::Tick(take_tick(state)));
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
    Ok((started, active_cpu))
}

/// Once told to finish: lets every connection record its totals (at most 5 s), then reports
/// them with this process's CPU over the measured phase and while the load was on.
async fn report_totals(state: &Shared, started: Started, active_cpu: Option<Duration>) {
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
    let mut totals = totals(state, cpu_s);
    totals.active_cpu_s = active_cpu_s;
    emit(&Event::Done(Box::new(totals)));
}

/// Moves the phase on to `next` unless it is there already (then nothing is told).
fn begin(phase: &mut Phase, next: Phase) -> bool {
    let moved = *phase < next;
    if moved {
        *phase = next;
    }
    moved
}

fn start_measuring(state: &Shared) {
    let mut s = state.borrow_mut();
    s.measuring = true;
    s.started = Some(Instant::now());
    s.tick = TickState::default();
    s.frames = 0;
    s.comment_frames = 0;
    s.deliveries = 0;
    s.wire.start();
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
        wire_bytes: s.wire.bytes(),
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
