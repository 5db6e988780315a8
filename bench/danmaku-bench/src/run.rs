//! Running a scenario: the coordinator starts the worker processes, steps them through the
//! run (history, connect, the measured phase, the settle, totals), and samples the server
//! processes meanwhile. What it learns comes back raw, as [`Collected`]; the tally turns it
//! into figures. Uses `ipc` to talk to the workers and `sampling` to read the processes.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Interval;

use crate::ipc::{Command, Event, Plan, Scenario, TickCounts, Totals};
use crate::procfs;
use crate::sampling::{Instance, Sampled, Samples, sample, total_rss};
use crate::stats::Latency;

/// How the measured phase runs.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    /// Length of the measured phase (posting, holding, churning).
    pub duration: Duration,
    /// After posting stops: how long viewers keep reading before the totals are taken.
    pub settle: Duration,
    /// Idle: how long to wait after everyone connected before measuring memory.
    pub warmup: Duration,
    /// Fanout: how long the posters post before the measured phase starts.
    pub lead_in: Duration,
}

/// What the coordinator learnt from one run, before it is summarised.
pub(crate) struct Collected {
    pub ready_init: Latency,
    pub ready_connected: u64,
    pub ready_errors: u64,
    pub ticks: Vec<Vec<TickCounts>>,
    /// Each worker's reconnect wave: (upgrades, milliseconds it took).
    pub waves: Vec<(u64, f64)>,
    pub totals: Vec<Totals>,
    pub samples: Samples,
    pub measure_start: Instant,
    /// When the load stopped: posting or churning ended, or the storm's wave completed.
    pub active_end: Instant,
    pub measure_end: Instant,
    pub rss_before: u64,
    pub rss_loaded: Option<u64>,
    /// The machine's busy fraction while the load was on.
    pub machine_busy: Option<f64>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// Every worker's events, tagged with the worker's number.
type Events = mpsc::UnboundedReceiver<(u32, Event)>;

/// The workers' ready reports, added up.
struct Ready {
    init: Latency,
    connected: u64,
    errors: u64,
}

/// What the measured phase brought: each worker's ticks, the storm's waves, and when the load
/// stopped.
struct Measured {
    start: Instant,
    ticks: Vec<Vec<TickCounts>>,
    waves: Vec<(u64, f64)>,
    active_end: Instant,
    machine_busy: Option<f64>,
}

/// Runs the plans (one worker process each) through the scenario's phases.
pub(crate) async fn drive(
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

    let mut sampler = Sampler {
        every: tokio::time::interval(Duration::from_secs(1)),
        instances,
        samples,
    };
    let setup_deadline = Duration::from_secs(60 + connections as u64 / 200);
    let ready = set_up(&mut workers, &mut events, setup_deadline, &mut sampler).await?;

    let mut rss_loaded = None;
    if scenario == Scenario::Idle {
        sleep_sampling(timing.warmup, instances, &mut sampler.samples).await;
        rss_loaded = Some(total_rss(&sampled.servers));
    }

    let phase = (&mut workers[..], &mut events);
    let mut measured = measure(scenario, timing, phase, setup_deadline, &mut sampler).await?;

    send(&mut workers, Command::StopPosting).await?;
    settle(
        timing.settle,
        instances,
        &mut sampler.samples,
        &mut events,
        &mut measured.ticks,
        plans.first().is_some_and(|p| p.expect_end),
    )
    .await?;
    sampler.now();
    let measure_end = Instant::now();
    let totals = finish(workers, &mut events, &mut measured.ticks).await?;
    Ok(Collected {
        ready_init: ready.init,
        ready_connected: ready.connected,
        ready_errors: ready.errors,
        ticks: measured.ticks,
        waves: measured.waves,
        totals,
        samples: sampler.samples,
        measure_start: measured.start,
        active_end: measured.active_end,
        measure_end,
        rss_before,
        rss_loaded,
        machine_busy: measured.machine_busy,
    })
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

/// Waits for one event of each worker matching `want`, sampling the servers meanwhile.
async fn gather<T>(
    events: &mut Events,
    workers: usize,
    deadline: Duration,
    what: &str,
    mut on_tick: impl FnMut(u32, TickCounts),
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

/// The once-a-second sampling of the processes through setup and the measured phase.
struct Sampler<'a> {
    every: Interval,
    instances: &'a [Instance],
    samples: Samples,
}

impl Sampler<'_> {
    /// Reads every process once, now.
    fn now(&mut self) {
        sample(self.instances, &mut self.samples);
    }

    /// Runs `work` to its end, sampling at every tick meanwhile.
    async fn during<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = self.every.tick() => sample(self.instances, &mut self.samples),
            }
        }
    }
}

/// Every worker posts its history first; only then do the viewers connect. Returns the
/// workers' ready reports added up.
async fn set_up(
    workers: &mut [Worker],
    events: &mut Events,
    deadline: Duration,
    sampler: &mut Sampler<'_>,
) -> anyhow::Result<Ready> {
    let count = workers.len();
    let prefilled = gather(
        events,
        count,
        deadline,
        "history posted",
        |_, _| {},
        |e| matches!(e, Event::Prefilled).then_some(()),
    );
    sampler.during(prefilled).await?;
    send(workers, Command::Connect).await?;
    let ready = gather(
        events,
        count,
        deadline,
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
    let ready = sampler.during(ready).await?;
    let mut sum = Ready {
        init: Latency::default(),
        connected: 0,
        errors: 0,
    };
    for (connected, errors, init) in &ready {
        sum.connected += connected;
        sum.errors += errors;
        sum.init.merge(init);
    }
    eprintln!(
        "ready: {} connections open, {} failed, init p99 {:.1} ms",
        sum.connected,
        sum.errors,
        sum.init.percentiles().map_or(0.0, |p| p.p99)
    );
    Ok(sum)
}

/// The measured phase: collects ticks (and the storm's wave reports) while it runs.
async fn measure(
    scenario: Scenario,
    timing: &Timing,
    (workers, events): (&mut [Worker], &mut Events),
    setup_deadline: Duration,
    sampler: &mut Sampler<'_>,
) -> anyhow::Result<Measured> {
    let count = workers.len();
    let mut ticks: Vec<Vec<TickCounts>> = vec![Vec::new(); count];
    if !timing.lead_in.is_zero() {
        eprintln!(
            "lead-in: posting for {:.1} s before measuring",
            timing.lead_in.as_secs_f64()
        );
        send(workers, Command::Post).await?;
        sampler.during(tokio::time::sleep(timing.lead_in)).await;
    }
    let start = Instant::now();
    let machine_start = procfs::machine_ticks();
    sampler.now();
    send(workers, Command::Start).await?;
    let mut waves = Vec::new();
    let measured = async {
        match scenario {
            Scenario::Idle | Scenario::Fanout | Scenario::Churn | Scenario::Soak => {
                tokio::time::sleep(timing.duration).await;
            }
            Scenario::Storm => {}
        }
    };
    tokio::pin!(measured);
    let mut measured_done = false;
    loop {
        if measured_done && (scenario != Scenario::Storm || waves.len() == count) {
            break;
        }
        tokio::select! {
            _ = &mut measured, if !measured_done => measured_done = true,
            _ = sampler.every.tick() => sampler.now(),
            event = events.recv() => match event.context("a worker ended during the run")? {
                (worker, Event::Tick(tick)) => ticks[worker as usize].push(tick),
                (_, Event::WaveDone { upgrades, elapsed_ms }) => waves.push((upgrades, elapsed_ms)),
                (worker, Event::Warn { message }) => eprintln!("worker {worker}: {message}"),
                (worker, other) => bail!("worker {worker}: unexpected {other:?}"),
            },
            _ = tokio::time::sleep(setup_deadline), if scenario == Scenario::Storm => bail!("the reconnect wave did not finish in time"),
        }
    }
    sampler.now();
    let active_end = Instant::now();
    let machine_busy = machine_start
        .zip(procfs::machine_ticks())
        .and_then(|(a, b)| procfs::busy_between(a, b));
    Ok(Measured {
        start,
        ticks,
        waves,
        active_end,
        machine_busy,
    })
}

/// Asks every worker for its totals (taking the ticks that still come), then lets the
/// workers exit.
async fn finish(
    mut workers: Vec<Worker>,
    events: &mut Events,
    ticks: &mut [Vec<TickCounts>],
) -> anyhow::Result<Vec<Totals>> {
    send(&mut workers, Command::Finish).await?;
    let totals = gather(
        events,
        workers.len(),
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
    Ok(totals)
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
    events: &mut Events,
    ticks: &mut [Vec<TickCounts>],
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
