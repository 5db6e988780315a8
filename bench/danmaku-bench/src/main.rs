//! `danmaku-bench`: a load generator for danmaku and its Socket.IO peer.
//!
//! The coordinator (this process) splits a scenario over worker processes (`danmaku-bench
//! worker`, started by itself), each holding its share of the WebSocket clients from several
//! 127.0.0.x source addresses, steps them through the run, samples the server processes' CPU
//! and memory, and writes a JSON result and an HTML report to `bench/results/`.
//!
//! This file is the command line and its dispatch. The modules, by phase, each using only
//! those above it in this list:
//!
//! - `result` (with `result::soak` and `result::chaos`): the JSON result, plain data; `proto`: the wire protocols
//!   of danmaku and the peer; `procfs`: CPU and RSS from `/proc`; `http`: a minimal HTTP/1.1
//!   client. They import nothing of the crate (`result` not even those).
//! - `stats`: latency histograms; `ipc`: what the coordinator and its workers say to each other.
//! - `plan`: the layout of a run and its split over workers; `sampling`: the processes a run
//!   samples.
//! - `worker`: one worker process; `run`: the coordinator driving the workers through a run;
//!   `tally`: what a run collected, turned into figures, one tally per measure.
//! - `soak`: the sampler and the moderator beside a soak's load.
//! - `console`, `report`, `compare`: a result for the terminal, as an HTML page, as the
//!   danmaku/peer ratio table.
//! - `scenario`: a scenario command from start to end (layout, run, tally, result).
//! - `chaos`: the chaos soak (`bench/chaos`), a command of its own: its Redis Cluster, relay,
//!   instances, clients and faults in one process, and the verifier over its logs.
//! - `floor`: the minimal server that measures the floor of CPU per delivery.
//! - `replay`: a VOD's chat read back (`GET …/replay`), a command of its own, with its seeder.

mod chaos;
mod compare;
mod console;
mod floor;
mod http;
mod ipc;
mod plan;
mod procfs;
mod proto;
mod replay;
mod report;
mod result;
mod run;
mod sampling;
mod scenario;
mod soak;
mod stats;
mod tally;
mod worker;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::ipc::Scenario;
use crate::result::RunResult;
use crate::scenario::{Common, Shape, SoakArgs};

#[derive(Parser)]
#[command(version, about = "Load generator for danmaku and its Socket.IO peer")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Hold N idle connections; report server RSS and CPU per connection.
    Idle(Idle),
    /// V viewers over S streams (Zipf popularity), P posters at a total rate R.
    Fanout(Fanout),
    /// Connect N clients, then drop and reconnect them all at once; report upgrades/s and
    /// `init` latency of the reconnect wave.
    Storm(Storm),
    /// K loops that connect, stay a random while, and leave.
    Churn(Churn),
    /// Fan-out, churn, deletions and bans together against instances (over Redis) for a long
    /// while; samples each instance's RSS and subscriptions (and Redis's channels) every
    /// `--sample-every`, and checks for RSS growth, leaked subscriptions and lost comments.
    Soak(Soak),
    /// The chaos soak (`bench/chaos`): three instances on a Redis Cluster with replicas, all
    /// started here, viewers and posters that live as the client library does, and a fault
    /// every 20–60 s; then every viewer's log verified against what was published.
    Chaos(chaos::Args),
    /// A VOD's chat read back: random final ten-minute windows of `GET …/replay` from one
    /// stream (seeded first with `--seed-redis`); latency, size, and CPU per request.
    Replay(replay::Args),
    /// Render an HTML report from result files.
    Report {
        #[arg(long, default_value = "danmaku-bench report")]
        title: String,
        #[arg(long)]
        out: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Print the danmaku/peer ratio table of result files (markdown).
    Table {
        /// Also write the table to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Serve danmaku's protocol minimally from one thread (each comment one frame, written to
    /// every socket of its stream with non-blocking sends): the floor for CPU per delivery.
    Floor {
        /// Address to listen on (port 0 picks a free port; the line printed names it).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Secret of the posters' tokens (their names go into the frames).
        #[arg(
            long,
            env = "DANMAKU_JWT_SECRET",
            default_value = "bench-secret-bench-secret-32bytes"
        )]
        jwt_secret: String,
    },
    /// Internal: one worker process (started by the coordinator).
    #[command(hide = true)]
    Worker,
}

#[derive(Args)]
struct Idle {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 10_000)]
    connections: u64,
    #[arg(long, default_value_t = 100)]
    streams: usize,
}

#[derive(Args)]
struct Fanout {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1_000)]
    viewers: u64,
    #[arg(long, default_value_t = 1)]
    streams: usize,
    #[arg(long, default_value_t = 10)]
    posters: u32,
    /// Total comments per second over all posters.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Put this fraction of the viewers on the first stream (one hot stream).
    #[arg(long)]
    hot: Option<f64>,
    /// Connections ask for at most N user comments per second (`max_rate=N`, capped at
    /// the server's `DANMAKU_VIEWER_MAX_RATE`); 0: not asked, the server's budget.
    #[arg(long, default_value_t = 0)]
    max_rate: u32,
    /// Fraction (0 to 1) of the posted comments that are system comments: gifts posted
    /// over the service API (`POST /v1/streams/{id}/comments`), never thinned.
    #[arg(long, default_value_t = 0.0)]
    system_share: f64,
    /// Bearer token of danmaku's service API, for `--system-share` (the first of a
    /// comma-separated list, as in the server's `DANMAKU_SERVICE_TOKENS`).
    #[arg(long, env = "DANMAKU_SERVICE_TOKENS", hide_env_values = true)]
    service_token: Option<String>,
    /// Blocked terms put on every stream before the run (`PUT /v1/streams/{id}/terms`, at
    /// most 1,000, with the service token): `--shadow-share`'s term set to `shadow`, the rest
    /// `refuse` terms no comment holds. Every user comment is matched against them all.
    #[arg(long, default_value_t = 0)]
    blocked_terms: u32,
    /// Fraction (0 to 1) of the user comments that hold the shadow term: acknowledged, and
    /// delivered to nobody but their poster (needs `--blocked-terms` of at least 1).
    #[arg(long, default_value_t = 0.0)]
    shadow_share: f64,
}

#[derive(Args)]
struct Storm {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 10_000)]
    connections: u64,
    #[arg(long, default_value_t = 100)]
    streams: usize,
}

#[derive(Args)]
struct Churn {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 200)]
    slots: u32,
    #[arg(long, default_value_t = 20)]
    streams: usize,
    #[arg(long, default_value_t = 200)]
    hold_min_ms: u64,
    #[arg(long, default_value_t = 1_000)]
    hold_max_ms: u64,
}

#[derive(Args)]
struct Soak {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1_000)]
    viewers: u64,
    #[arg(long, default_value_t = 20)]
    streams: usize,
    #[arg(long, default_value_t = 20)]
    posters: u32,
    /// Total comments per second over all posters.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Fraction (0 to 1) of the posted comments that are system comments (gifts).
    #[arg(long, default_value_t = 0.1)]
    system_share: f64,
    /// Bearer token of danmaku's service API (posting gifts, deleting, banning).
    #[arg(long, env = "DANMAKU_SERVICE_TOKENS", hide_env_values = true)]
    service_token: Option<String>,
    /// Connect-and-leave loops beside the viewers.
    #[arg(long, default_value_t = 100)]
    churn_slots: u32,
    #[arg(long, default_value_t = 500)]
    hold_min_ms: u64,
    #[arg(long, default_value_t = 5_000)]
    hold_max_ms: u64,
    #[command(flatten)]
    watch: SoakArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Commands::Worker => worker::run(),
        Commands::Chaos(args) => chaos::run(args),
        Commands::Replay(args) => replay::run(args),
        Commands::Floor { listen, jwt_secret } => floor::run(listen, jwt_secret),
        Commands::Report { title, out, files } => {
            let runs = read_results(&files)?;
            std::fs::write(&out, report::render(&runs, &title))
                .with_context(|| format!("write {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
        Commands::Table { out, files } => {
            let table = compare::table(&read_results(&files)?);
            print!("{table}");
            if let Some(out) = out {
                std::fs::write(&out, &table).with_context(|| format!("write {}", out.display()))?;
            }
            Ok(())
        }
        Commands::Idle(c) => scenario::run(Scenario::Idle, c.shape(), c.common, None),
        Commands::Fanout(c) => scenario::run(Scenario::Fanout, c.shape(), c.common, None),
        Commands::Storm(c) => scenario::run(Scenario::Storm, c.shape(), c.common, None),
        Commands::Churn(c) => scenario::run(Scenario::Churn, c.shape(), c.common, None),
        Commands::Soak(c) => scenario::run(Scenario::Soak, c.shape(), c.common, Some(c.watch)),
    }
}

fn read_results(files: &[PathBuf]) -> anyhow::Result<Vec<RunResult>> {
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parse {}", f.display()))
        })
        .collect()
}

// === impl Idle ===

impl Idle {
    fn shape(&self) -> Shape {
        Shape {
            viewers: self.connections,
            streams: self.streams,
            ..Shape::default()
        }
    }
}

// === impl Fanout ===

impl Fanout {
    fn shape(&self) -> Shape {
        Shape {
            viewers: self.viewers,
            streams: self.streams,
            posters: self.posters,
            rate: self.rate,
            hot: self.hot,
            churn: None,
            max_rate: self.max_rate,
            system_share: self.system_share,
            service_token: self.service_token.clone(),
            blocked_terms: self.blocked_terms,
            shadow_share: self.shadow_share,
        }
    }
}

// === impl Storm ===

impl Storm {
    fn shape(&self) -> Shape {
        Shape {
            viewers: self.connections,
            streams: self.streams,
            ..Shape::default()
        }
    }
}

// === impl Churn ===

impl Churn {
    fn shape(&self) -> Shape {
        Shape {
            streams: self.streams,
            churn: Some((self.slots, self.hold_min_ms, self.hold_max_ms)),
            ..Shape::default()
        }
    }
}

// === impl Soak ===

impl Soak {
    fn shape(&self) -> Shape {
        Shape {
            viewers: self.viewers,
            streams: self.streams,
            posters: self.posters,
            rate: self.rate,
            churn: Some((self.churn_slots, self.hold_min_ms, self.hold_max_ms)),
            system_share: self.system_share,
            service_token: self.service_token.clone(),
            ..Shape::default()
        }
    }
}
