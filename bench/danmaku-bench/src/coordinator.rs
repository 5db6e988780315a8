//! The coordinator: starts the worker processes, steps them through the run, samples the
//! server processes, and turns what comes back into a [`RunResult`].

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::ipc::{Command, Event, Plan, Scenario, StreamTotals, Totals};
use crate::plan::Layout;
use crate::procfs;
use crate::result::{
    InstanceSample, InstanceSeries, Limit, PerViewerRate, Summary, Tick, ToolCost,
};
use crate::stats::Latency;

/// How the measured phase runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Length of the measured phase (posting, holding, churning).
    pub duration: Duration,
    /// After posting stops: how long viewers keep reading before the totals are taken.
    pub settle: Duration,
    /// Idle: how long to wait after everyone connected before measuring memory.
    pub warmup: Duration,
}

/// A server process to sample.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub pid: u32,
}

/// The processes sampled during a run: the servers under test, and others (Redis) whose CPU
/// and memory are plotted and reported apart, never added to the servers'.
#[derive(Debug, Clone, Default)]
pub struct Sampled {
    pub servers: Vec<Instance>,
    pub others: Vec<Instance>,
}

impl Sampled {
    fn all(&self) -> Vec<Instance> {
        self.servers.iter().chain(&self.others).cloned().collect()
    }

    fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(|i| i.pid).collect()
    }

    fn other_pids(&self) -> Vec<u32> {
        self.others.iter().map(|i| i.pid).collect()
    }
}

/// A run's figures, ready to be written as a [`crate::result::RunResult`].
pub struct Outcome {
    pub summary: Summary,
    pub timeline: Vec<Tick>,
    pub latency: Latency,
    pub init: Latency,
    pub instances: Vec<InstanceSeries>,
    pub tool: ToolCost,
    pub limit: Limit,
}

/// One reading of a server process: when, its CPU time so far, its RSS.
type Sample = (Instant, Option<Duration>, Option<u64>);
/// Every reading, by pid.
type Samples = HashMap<u32, Vec<Sample>>;

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// What the coordinator learnt from one run, before it is summarised.
struct Collected {
    ready_init: Latency,
    ready_connected: u64,
    ready_errors: u64,
    ticks: Vec<Vec<crate::ipc::TickCounts>>,
    /// Each worker's reconnect wave: (upgrades, milliseconds it took).
    waves: Vec<(u64, f64)>,
    totals: Vec<Totals>,
    samples: Samples,
    measure_start: Instant,
    /// When the load stopped: posting or churning ended, or the storm's wave completed.
    active_end: Instant,
    measure_end: Instant,
    rss_before: u64,
    rss_loaded: Option<u64>,
    /// The machine's busy fraction while the load was on.
    machine_busy: Option<f64>,
}

pub async fn run(
    layout: &Layout,
    workers: u32,
    timing: &Timing,
    sampled: &Sampled,
    token: impl Fn(&str, Option<&str>) -> Option<String>,
) -> anyhow::Result<Outcome> {
    let plans = layout.split(workers, token);
    let collected = drive(layout.scenario, plans, timing, sampled).await?;
    Ok(summarise(layout, timing, sampled, collected))
}

async fn spawn_worker(
    plan: &Plan,
    events: mpsc::UnboundedSender<(u32, Event)>,
) -> anyhow::Result<Worker> {
    let exe = std::env::current_exe().context("own executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start a worker process")?;
    let mut stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let id = plan.worker;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => {
                    if events.send((id, event)).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("worker {id}: unreadable event ({e}): {line}"),
            }
        }
    });
    let mut line = serde_json::to_vec(plan)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(Worker { child, stdin })
}

async fn send(workers: &mut [Worker], command: Command) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(&command)?;
    line.push(b'\n');
    for worker in workers.iter_mut() {
        worker.stdin.write_all(&line).await?;
        worker.stdin.flush().await?;
    }
    Ok(())
}

fn sample(instances: &[Instance], into: &mut Samples) {
    let now = Instant::now();
    for instance in instances {
        let pid = instance.pid.to_string();
        into.entry(instance.pid).or_default().push((
            now,
            procfs::cpu_time(&pid),
            procfs::rss_bytes(&pid),
        ));
    }
}

fn total_rss(instances: &[Instance]) -> u64 {
    instances
        .iter()
        .filter_map(|i| procfs::rss_bytes(&i.pid.to_string()))
        .sum()
}

/// Waits for one event of each worker matching `want`, sampling the servers meanwhile.
async fn gather<T>(
    events: &mut mpsc::UnboundedReceiver<(u32, Event)>,
    workers: usize,
    deadline: Duration,
    what: &str,
    mut on_tick: impl FnMut(u32, crate::ipc::TickCounts),
    mut want: impl FnMut(Event) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + deadline;
    while got.len() < workers {
        let (worker, event) = tokio::time::timeout_at(deadline, events.recv())
            .await
            .with_context(|| format!("workers did not report {what} in time"))?
            .with_context(|| format!("a worker ended before reporting {what}"))?;
        match event {
            Event::Warn { message } => eprintln!("worker {worker}: {message}"),
            Event::Tick(tick) => on_tick(worker, tick),
            other => {
                if let Some(value) = want(other) {
                    got.push(value);
                }
            }
        }
    }
    Ok(got)
}

async fn drive(
    scenario: Scenario,
    plans: Vec<Plan>,
    timing: &Timing,
    sampled: &Sampled,
) -> anyhow::Result<Collected> {
    let instances = &sampled.all()[..];
    let count = plans.len();
    let connections: usize = plans
        .iter()
        .map(|p| p.viewers.len() + p.posters.len())
        .sum();
    let mut samples = HashMap::new();
    sample(instances, &mut samples);
    let rss_before = total_rss(&sampled.servers);

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut workers = Vec::with_capacity(count);
    for plan in &plans {
        workers.push(spawn_worker(plan, events_tx.clone()).await?);
    }
    drop(events_tx);

    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    let setup_deadline = Duration::from_secs(60 + connections as u64 / 200);
    // Every worker posts its history first; only then do the viewers connect.
    {
        let gathering = gather(
            &mut events,
            count,
            setup_deadline,
            "history posted",
            |_, _| {},
            |e| matches!(e, Event::Prefilled).then_some(()),
        );
        tokio::pin!(gathering);
        loop {
            tokio::select! {
                done = &mut gathering => {
                    done?;
                    break;
                }
                _ = sampler.tick() => sample(instances, &mut samples),
            }
        }
    }
    send(&mut workers, Command::Connect).await?;
    let ready = {
        let gathering = gather(
            &mut events,
            count,
            setup_deadline,
            "ready",
            |_, _| {},
            |e| match e {
                Event::Ready {
                    connected,
                    connect_errors,
                    init,
                } => Some((connected, connect_errors, init)),
                _ => None,
            },
        );
        tokio::pin!(gathering);
        loop {
            tokio::select! {
                ready = &mut gathering => break ready?,
                _ = sampler.tick() => sample(instances, &mut samples),
            }
        }
    };
    let mut ready_init = Latency::default();
    let (mut ready_connected, mut ready_errors) = (0, 0);
    for (connected, errors, init) in &ready {
        ready_connected += connected;
        ready_errors += errors;
        ready_init.merge(init);
    }
    eprintln!(
        "ready: {ready_connected} connections open, {ready_errors} failed, init p99 {:.1} ms",
        ready_init.percentiles().map_or(0.0, |p| p.p99)
    );

    let mut rss_loaded = None;
    if scenario == Scenario::Idle {
        sleep_sampling(timing.warmup, instances, &mut samples).await;
        rss_loaded = Some(total_rss(&sampled.servers));
    }

    let mut ticks: Vec<Vec<crate::ipc::TickCounts>> = vec![Vec::new(); count];
    let measure_start = Instant::now();
    let machine_start = procfs::machine_ticks();
    sample(instances, &mut samples);
    send(&mut workers, Command::Start).await?;
    let mut waves = Vec::new();
    let measured = async {
        match scenario {
            Scenario::Idle | Scenario::Fanout | Scenario::Churn | Scenario::Soak => {
                tokio::time::sleep(timing.duration).await;
            }
            Scenario::Storm => {}
        }
    };
    // Collect ticks (and the storm's wave reports) while the phase runs.
    {
        tokio::pin!(measured);
        let mut measured_done = false;
        loop {
            if measured_done && (scenario != Scenario::Storm || waves.len() == count) {
                break;
            }
            tokio::select! {
                _ = &mut measured, if !measured_done => measured_done = true,
                _ = sampler.tick() => sample(instances, &mut samples),
                event = events.recv() => match event.context("a worker ended during the run")? {
                    (worker, Event::Tick(tick)) => ticks[worker as usize].push(tick),
                    (_, Event::WaveDone { upgrades, elapsed_ms }) => waves.push((upgrades, elapsed_ms)),
                    (worker, Event::Warn { message }) => eprintln!("worker {worker}: {message}"),
                    (worker, other) => bail!("worker {worker}: unexpected {other:?}"),
                },
                _ = tokio::time::sleep(setup_deadline), if scenario == Scenario::Storm => bail!("the reconnect wave did not finish in time"),
            }
        }
    }
    sample(instances, &mut samples);
    let active_end = Instant::now();
    let machine_busy = machine_start
        .zip(procfs::machine_ticks())
        .and_then(|(a, b)| procfs::busy_between(a, b));

    send(&mut workers, Command::StopPosting).await?;
    settle(
        timing.settle,
        instances,
        &mut samples,
        &mut events,
        &mut ticks,
        plans.first().is_some_and(|p| p.expect_end),
    )
    .await?;
    sample(instances, &mut samples);
    let measure_end = Instant::now();
    send(&mut workers, Command::Finish).await?;
    let totals = gather(
        &mut events,
        count,
        Duration::from_secs(30),
        "totals",
        |worker, tick| ticks[worker as usize].push(tick),
        |e| match e {
            Event::Done(totals) => Some(*totals),
            _ => None,
        },
    )
    .await?;
    for mut worker in workers {
        drop(worker.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), worker.child.wait()).await;
        let _ = worker.child.start_kill();
    }
    Ok(Collected {
        ready_init,
        ready_connected,
        ready_errors,
        ticks,
        waves,
        totals,
        samples,
        measure_start,
        active_end,
        measure_end,
        rss_before,
        rss_loaded,
        machine_busy,
    })
}

async fn sleep_sampling(period: Duration, instances: &[Instance], samples: &mut Samples) {
    let end = tokio::time::Instant::now() + period;
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = sampler.tick() => sample(instances, samples),
        }
    }
}

/// Longest wait for a backlog of deliveries to drain after posting stopped.
const MAX_SETTLE: Duration = Duration::from_secs(60);
/// Deliveries are over once no worker reported one for this long.
const QUIET: Duration = Duration::from_millis(2500);

/// Waits at least `min`, then until every viewer has its stream's end marker (nothing can come
/// after it) or deliveries stop arriving (a server that fell behind still delivers its
/// backlog, which must not count as lost), at most [`MAX_SETTLE`].
async fn settle(
    min: Duration,
    instances: &[Instance],
    samples: &mut Samples,
    events: &mut mpsc::UnboundedReceiver<(u32, Event)>,
    ticks: &mut [Vec<crate::ipc::TickCounts>],
    expect_end: bool,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let ticks_before: Vec<usize> = ticks.iter().map(Vec::len).collect();
    let mut last_delivery = start;
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = check.tick() => {
                let now = tokio::time::Instant::now();
                let quiet = now.duration_since(last_delivery) >= QUIET;
                // By each worker's latest tick, sent since posting stopped.
                let ended = expect_end
                    && ticks.iter().zip(&ticks_before).all(|(t, &before)| {
                        t.len() > before && t.last().is_some_and(|t| t.awaiting_end == 0)
                    });
                if (now.duration_since(start) >= min && (quiet || ended)) || now.duration_since(start) >= MAX_SETTLE {
                    return Ok(());
                }
            }
            _ = sampler.tick() => sample(instances, samples),
            event = events.recv() => match event.context("a worker ended during the run")? {
                (worker, Event::Tick(tick)) => {
                    if tick.deliveries > 0 || tick.upgrades > 0 {
                        last_delivery = tokio::time::Instant::now();
                    }
                    ticks[worker as usize].push(tick);
                }
                (worker, Event::Warn { message }) => eprintln!("worker {worker}: {message}"),
                (_, Event::WaveDone { .. }) => {}
                (worker, other) => bail!("worker {worker}: unexpected {other:?}"),
            },
        }
    }
}

fn summarise(layout: &Layout, timing: &Timing, sampled: &Sampled, c: Collected) -> Outcome {
    let servers = sampled.server_pids();
    let instances = &sampled.servers[..];
    let duration_s = c.measure_end.duration_since(c.measure_start).as_secs_f64();
    let active_s = c.active_end.duration_since(c.measure_start).as_secs_f64();
    let mut latency = Latency::default();
    let mut send_latency = Latency::default();
    let mut init = Latency::default();
    let mut tool = ToolCost {
        workers: c.totals.len() as u32,
        ..ToolCost::default()
    };
    let mut summary = Summary {
        connections: c.ready_connected,
        duration_s,
        ..Summary::default()
    };
    let mut accepted_by_stream: HashMap<u32, u64> = HashMap::new();
    let mut sent = 0;
    let (mut accepted, mut rejected, mut deliveries, mut frames, mut duplicates, mut order) =
        (0, 0, 0, 0, 0, 0);
    let mut viewers_by_stream: HashMap<u32, StreamTotals> = HashMap::new();
    let mut system_by_stream: HashMap<u32, u64> = HashMap::new();
    let (mut system_sent, mut system_accepted, mut system_rejected) = (0, 0, 0);
    let mut ends_by_stream: HashMap<u32, u64> = HashMap::new();
    let (mut upgrades, mut cycles) = (0, 0);
    for t in &c.totals {
        latency.merge(&t.latency);
        send_latency.merge(&t.send_latency);
        init.merge(&t.init);
        tool.cpu_s += t.cpu_s;
        tool.active_cpu_s += t.active_cpu_s;
        tool.frames += t.frames;
        if active_s > 0.0 {
            tool.max_worker_cores = tool.max_worker_cores.max(t.active_cpu_s / active_s);
        }
        deliveries += t.deliveries;
        frames += t.comment_frames;
        duplicates += t.duplicates;
        order += t.order_violations;
        summary.disconnects += t.disconnects;
        summary.connect_errors += t.connect_errors;
        upgrades += t.upgrades;
        cycles += t.cycles;
        for p in &t.posters {
            accepted += p.accepted;
            sent += p.sent;
            rejected += p.rejected;
            system_sent += p.system_sent;
            system_accepted += p.system_accepted;
            system_rejected += p.system_rejected;
            *accepted_by_stream.entry(p.stream_index).or_default() += p.accepted;
            *system_by_stream.entry(p.stream_index).or_default() += p.system_accepted;
        }
        for &stream in &t.ends_accepted {
            *ends_by_stream.entry(stream).or_default() += 1;
        }
        for s in &t.streams {
            viewers_by_stream
                .entry(s.stream_index)
                .or_default()
                .merge(s);
        }
    }
    // A worker's totals repeat the connect errors its ready report gave.
    summary.connect_errors = summary.connect_errors.max(c.ready_errors);
    if tool.frames > 0 {
        tool.ns_per_frame = Some(tool.cpu_s * 1e9 / tool.frames as f64);
    }

    let measured_cpu = cpu_between(&c.samples, &servers, c.measure_start, c.measure_end);
    let active_cpu = cpu_between(&c.samples, &servers, c.measure_start, c.active_end);
    let others_active_cpu = cpu_between(
        &c.samples,
        &sampled.other_pids(),
        c.measure_start,
        c.active_end,
    );
    summary.other_cpu_s = cpu_between(
        &c.samples,
        &sampled.other_pids(),
        c.measure_start,
        c.measure_end,
    );
    summary.server_cpu_s = measured_cpu;
    summary.server_rss_bytes = peak_rss(&c.samples, &servers);
    summary.machine_busy = c.machine_busy;

    if layout.scenario.churns() {
        summary.cycles_per_s = Some(cycles as f64 / timing.duration.as_secs_f64());
        summary.upgrades_per_s = Some(upgrades as f64 / timing.duration.as_secs_f64());
    }
    match layout.scenario {
        Scenario::Fanout | Scenario::Soak => {
            // Published on each stream after every viewer's `init` (no viewer connects before
            // the history is in): the acknowledged user and system comments and end marker.
            let published: HashMap<u32, Published> = viewers_by_stream
                .keys()
                .map(|&stream| {
                    let get = |m: &HashMap<u32, u64>| m.get(&stream).copied().unwrap_or(0);
                    let system = get(&system_by_stream);
                    let all = get(&accepted_by_stream) + system + get(&ends_by_stream);
                    (stream, Published { all, system })
                })
                .collect();
            let books = account(&viewers_by_stream, &published);
            // Only streams with posters get an end marker (their closer's).
            let expecting_end: u64 = viewers_by_stream
                .iter()
                .filter(|(stream, _)| ends_by_stream.get(stream).is_some_and(|&n| n > 0))
                .map(|(_, totals)| totals.viewers)
                .sum();
            let missing_end = expecting_end.saturating_sub(books.ended);
            if layout.end_markers && missing_end > 0 {
                eprintln!(
                    "warning: {missing_end} viewers never got their stream's end marker: what was left out after their last frame is not in `skipped`"
                );
            }
            let posting_s = timing.duration.as_secs_f64();
            summary.skipped = Some(books.skipped);
            summary.excess = Some(books.excess);
            summary.system_sent_comments = Some(system_sent);
            summary.system_accepted_comments = Some(system_accepted);
            summary.system_rejected_comments = Some(system_rejected);
            summary.system_deliveries = Some(books.system_received);
            summary.system_losses = Some(books.system_losses);
            summary.system_received_pct = (books.system_expected > 0)
                .then(|| books.system_received as f64 * 100.0 / books.system_expected as f64);
            if books.viewers > 0 {
                summary.user_per_viewer_per_s = Some(PerViewerRate {
                    mean: books.user as f64 / books.viewers as f64 / posting_s,
                    min: books.user_min as f64 / posting_s,
                    max: books.user_max as f64 / posting_s,
                });
            }
            let viewers: u64 = layout.viewers.iter().sum();
            if viewers > 0 {
                let offered: f64 = layout
                    .viewers
                    .iter()
                    .zip(layout.stream_rates())
                    .map(|(&v, (user, _))| v as f64 * user)
                    .sum();
                summary.offered_user_per_viewer_per_s = Some(offered / viewers as f64);
            }
            let losses = books.losses;
            summary.offered_comments_per_s =
                Some(layout.posters.iter().map(|&p| p as f64).sum::<f64>() * layout.poster_rate);
            summary.sent_comments = Some(sent);
            summary.accepted_comments = Some(accepted);
            summary.rejected_comments = Some(rejected);
            summary.deliveries = Some(deliveries);
            // Over the time deliveries took: the posting time, or longer when a backlog
            // drained after posting stopped.
            let delivering_s = c
                .totals
                .iter()
                .map(|t| t.last_delivery_s)
                .fold(timing.duration.as_secs_f64(), f64::max);
            summary.deliveries_per_s = Some(deliveries as f64 / delivering_s);
            summary.frames = Some(frames);
            if frames > 0 {
                summary.comments_per_frame = Some(deliveries as f64 / frames as f64);
            }
            summary.skipped_per_s = Some(books.skipped as f64 / delivering_s);
            summary.losses = Some(losses);
            summary.duplicates = Some(duplicates);
            summary.order_violations = Some(order);
            summary.latency_ms = latency.percentiles();
            summary.send_latency_ms = send_latency.percentiles();
            if let Some(cpu) = measured_cpu
                && deliveries > 0
            {
                summary.server_cpu_ms_per_1k_deliveries =
                    Some(cpu * 1000.0 / deliveries as f64 * 1000.0);
            }
        }
        Scenario::Idle => {
            summary.init_latency_ms = c.ready_init.percentiles();
            if let Some(loaded) = c.rss_loaded
                && c.ready_connected > 0
                && !instances.is_empty()
            {
                summary.rss_per_connection_bytes =
                    Some((loaded as f64 - c.rss_before as f64) / c.ready_connected as f64);
            }
            if let Some(cpu) = measured_cpu
                && c.ready_connected > 0
            {
                summary.cpu_us_per_connection_s =
                    Some(cpu * 1e6 / c.ready_connected as f64 / duration_s);
            }
        }
        Scenario::Storm => {
            summary.init_latency_ms = init.percentiles();
            let slowest = c.waves.iter().map(|w| w.1).fold(0.0, f64::max);
            let wave_upgrades: u64 = c.waves.iter().map(|w| w.0).sum();
            if slowest > 0.0 {
                summary.upgrades_per_s = Some(wave_upgrades as f64 / (slowest / 1000.0));
            }
        }
        Scenario::Churn => summary.init_latency_ms = init.percentiles(),
    }

    let timeline = merge_ticks(&c.ticks);
    let series = instance_series(&sampled.all(), &c.samples, c.measure_start);
    let busiest = servers
        .iter()
        .filter_map(|pid| c.samples.get(pid))
        .filter_map(|points| instance_cpu_between(points, c.measure_start, c.active_end))
        .fold(0.0, f64::max)
        / active_s.max(1e-9);
    let limit = verdict(
        layout,
        &summary,
        &tool,
        (active_cpu, busiest, others_active_cpu),
        active_s,
        instances,
    );
    Outcome {
        summary,
        timeline,
        latency,
        init,
        instances: series,
        tool,
        limit,
    }
}

/// Comments published on a stream after its viewers' `init`: all of them, and the system
/// comments among them.
#[derive(Debug, Clone, Copy, Default)]
struct Published {
    all: u64,
    system: u64,
}

/// The books of a fanout run, per viewer: received + skipped against published.
#[derive(Debug, Default, PartialEq)]
struct Books {
    viewers: u64,
    /// Viewers that got their stream's end marker.
    ended: u64,
    /// Sum over viewers of what published exceeded received + skipped by.
    losses: u64,
    /// Sum over viewers of what received + skipped exceeded published by (an accounting
    /// error: a comment counted twice, or a `skipped` too large).
    excess: u64,
    skipped: u64,
    user: u64,
    user_min: u64,
    user_max: u64,
    system_received: u64,
    /// System comments the viewers should have received (each viewer every one).
    system_expected: u64,
    /// System comments a viewer did not receive (never thinned, so each one missing is lost).
    system_losses: u64,
}

fn account(streams: &HashMap<u32, StreamTotals>, published: &HashMap<u32, Published>) -> Books {
    let mut books = Books::default();
    let mut first = true;
    for (stream, totals) in streams {
        if totals.viewers == 0 {
            continue;
        }
        let p = published.get(stream).copied().unwrap_or_default();
        for &(accounted, viewers) in &totals.accounted {
            books.losses += p.all.saturating_sub(accounted) * viewers;
            books.excess += accounted.saturating_sub(p.all) * viewers;
        }
        books.viewers += totals.viewers;
        books.ended += totals.ended;
        books.skipped += totals.skipped;
        books.user += totals.user;
        books.user_min = if first {
            totals.user_min
        } else {
            books.user_min.min(totals.user_min)
        };
        books.user_max = books.user_max.max(totals.user_max);
        first = false;
        books.system_received += totals.system;
        books.system_expected += p.system * totals.viewers;
        books.system_losses += (p.system * totals.viewers).saturating_sub(totals.system);
    }
    books
}

/// CPU seconds the processes `pids` used between two instants (`None` without any).
fn cpu_between(samples: &Samples, pids: &[u32], from: Instant, to: Instant) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| instance_cpu_between(samples.get(pid)?, from, to))
        .sum()
}

/// CPU seconds one instance used between two instants (from the samples nearest to them).
fn instance_cpu_between(points: &[Sample], from: Instant, to: Instant) -> Option<f64> {
    let at = |t: Instant| {
        points
            .iter()
            .filter(|p| p.1.is_some())
            .min_by_key(|p| if p.0 > t { p.0 - t } else { t - p.0 })
            .and_then(|p| p.1)
    };
    Some(at(to)?.saturating_sub(at(from)?).as_secs_f64())
}

fn peak_rss(samples: &Samples, pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    // Sum over instances of each instance's peak (samples are not aligned across instances).
    Some(
        pids.iter()
            .filter_map(|pid| samples.get(pid))
            .map(|points| points.iter().filter_map(|p| p.2).max().unwrap_or(0))
            .sum(),
    )
}

fn merge_ticks(ticks: &[Vec<crate::ipc::TickCounts>]) -> Vec<Tick> {
    let seconds = ticks.iter().map(Vec::len).max().unwrap_or(0);
    (0..seconds)
        .map(|i| {
            let mut latency = Latency::default();
            let mut tick = Tick {
                t_s: (i + 1) as f64,
                ..Tick::default()
            };
            for worker in ticks {
                if let Some(t) = worker.get(i) {
                    tick.deliveries += t.deliveries;
                    tick.frames += t.frames;
                    tick.skipped += t.skipped;
                    tick.connected += t.connected;
                    tick.upgrades += t.upgrades;
                    latency.merge(&t.latency);
                }
            }
            if let Some(p) = latency.percentiles() {
                tick.latency_p50_ms = p.p50;
                tick.latency_p99_ms = p.p99;
                tick.latency_max_ms = p.max;
            }
            tick
        })
        .collect()
}

fn instance_series(
    instances: &[Instance],
    samples: &Samples,
    start: Instant,
) -> Vec<InstanceSeries> {
    instances
        .iter()
        .map(|instance| {
            let points = samples.get(&instance.pid).map(Vec::as_slice).unwrap_or(&[]);
            let samples = points
                .windows(2)
                .filter_map(|w| {
                    let (a, b) = (&w[0], &w[1]);
                    let dt = b.0.duration_since(a.0).as_secs_f64();
                    if dt < 0.2 {
                        return None;
                    }
                    let cpu = b.1?.saturating_sub(a.1?).as_secs_f64() / dt;
                    let t = if b.0 >= start {
                        b.0.duration_since(start).as_secs_f64()
                    } else {
                        -start.duration_since(b.0).as_secs_f64()
                    };
                    Some(InstanceSample {
                        t_s: t,
                        cpu_cores: cpu,
                        rss_bytes: b.2.unwrap_or(0),
                    })
                })
                .collect();
            InstanceSeries {
                name: instance.name.clone(),
                pid: instance.pid,
                samples,
            }
        })
        .collect()
}

/// Decides which side limited the run, from the CPU each used during the measured phase.
fn verdict(
    layout: &Layout,
    summary: &Summary,
    tool: &ToolCost,
    (server_cpu_s, busiest_instance, others_cpu_s): (Option<f64>, f64, Option<f64>),
    active_s: f64,
    instances: &[Instance],
) -> Limit {
    // CPU use while the load was on (posting, churning, the storm's wave); the settle time
    // after it would dilute it.
    let cores = procfs::cpus() as f64;
    let tool_cores = tool.active_cpu_s / active_s.max(1e-9);
    let server_cores = server_cpu_s.map(|s| s / active_s.max(1e-9));
    let other_cores = others_cpu_s.map_or(0.0, |s| s / active_s.max(1e-9));
    // What no sampled process was charged for: the kernel's softirq work, other processes.
    let machine_cores = summary.machine_busy.map(|b| b * cores);
    let unaccounted = machine_cores.map_or(0.0, |m| {
        (m - server_cores.unwrap_or(0.0) - tool_cores - other_cores).max(0.0)
    });
    let figures = format!(
        "over the {active_s:.1} s under load: server {} cores (busiest instance {busiest_instance:.2}), tool {tool_cores:.2} cores (busiest worker {:.2}), others (Redis) {other_cores:.2} cores, unaccounted (kernel softirq, other processes) {unaccounted:.2} cores; machine {} of {cores} cores busy",
        server_cores.map_or("?".to_owned(), |c| format!("{c:.2}")),
        tool.max_worker_cores,
        machine_cores.map_or("?".to_owned(), |c| format!("{c:.2}")),
    );
    let offered = layout.offered_deliveries_per_s();
    // Comments left out by thinning were handled, not late: they count against the offer.
    let handled_per_s = summary
        .deliveries_per_s
        .map(|d| d + summary.skipped_per_s.unwrap_or(0.0));
    let short_of_offer =
        layout.scenario.fans_out() && handled_per_s.is_some_and(|d| d < 0.95 * offered);
    let late = summary.latency_ms.as_ref().is_some_and(|p| p.p99 > 50.0);
    let single_threaded = layout.target == crate::proto::Target::Socketio;
    let (verdict, why) = if tool.max_worker_cores >= 0.9 {
        ("tool", "a worker process was CPU-bound")
    } else if single_threaded && busiest_instance >= 0.9 {
        ("server", "a single-threaded peer instance was CPU-bound")
    } else if machine_cores.is_some_and(|m| m >= 0.9 * cores)
        || server_cores.is_some_and(|s| s + tool_cores + other_cores >= 0.9 * cores)
    {
        (
            "machine",
            "the box's CPUs were saturated (server, tool, Redis and the kernel's network work together)",
        )
    } else if instances.is_empty() {
        ("unknown", "no server process was sampled (--pid)")
    } else if short_of_offer || late {
        (
            "server",
            "the server fell behind without saturating the box (latency or backpressure)",
        )
    } else if layout.scenario.fans_out() {
        (
            "none",
            "the offered load was delivered; neither side saturated",
        )
    } else {
        ("none", "neither side saturated")
    };
    Limit {
        verdict: verdict.to_owned(),
        reason: format!("{why}: {figures}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        index: u32,
        accounted: &[(u64, u64)],
        user: (u64, u64, u64),
        system: u64,
    ) -> StreamTotals {
        let viewers = accounted.iter().map(|a| a.1).sum();
        StreamTotals {
            stream_index: index,
            viewers,
            distinct: 0,
            skipped: 10,
            user: user.0,
            user_min: user.1,
            user_max: user.2,
            system,
            ended: viewers,
            accounted: accounted.to_vec(),
        }
    }

    #[test]
    fn books_hold_per_viewer() {
        // Stream 0: 100 published (10 system); three viewers account for 100, one for 97 (3
        // lost), one for 101 (1 too many). Stream 1: 20 published, 4 system; both viewers
        // account for all, and got 7 of the 8 system comments between them.
        let streams = HashMap::from([
            (
                0,
                stream(0, &[(97, 1), (100, 3), (101, 1)], (200, 30, 50), 50),
            ),
            (1, stream(1, &[(20, 2)], (30, 15, 15), 7)),
        ]);
        let published = HashMap::from([
            (
                0,
                Published {
                    all: 100,
                    system: 10,
                },
            ),
            (1, Published { all: 20, system: 4 }),
        ]);
        let books = account(&streams, &published);
        assert_eq!(
            books,
            Books {
                viewers: 7,
                ended: 7,
                losses: 3,
                excess: 1,
                skipped: 20,
                user: 230,
                user_min: 15,
                user_max: 50,
                system_received: 57,
                system_expected: 58,
                system_losses: 1,
            }
        );
        // Two workers' viewers of one stream merge.
        let mut merged = StreamTotals::default();
        merged.merge(&stream(0, &[(100, 2)], (60, 20, 40), 20));
        merged.merge(&stream(0, &[(100, 1), (99, 1)], (70, 10, 60), 20));
        assert_eq!(merged.viewers, 4);
        assert_eq!(
            (merged.user, merged.user_min, merged.user_max),
            (130, 10, 60)
        );
        assert_eq!(merged.accounted, vec![(99, 1), (100, 3)]);
    }
}
