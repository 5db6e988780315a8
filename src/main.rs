//! The `danmaku` binary: configuration, logging, then [`danmaku::App`] until SIGTERM/SIGINT.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use danmaku::config::LogFormat;
use danmaku::{App, Config};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Dependencies that log what clients send (WebSocket frames, which may carry a token in a
/// `refresh`; request lines, which may carry `access_token=`; rejected values) at debug and
/// trace: held at info whatever `RUST_LOG` asks, so no secret reaches the log.
const CLIENT_DATA_LOGGERS: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "axum",
];

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // One line that names the variable (clap shows it as the value name).
            let line = e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            eprintln!("danmaku: bad configuration: {line}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("danmaku: bad configuration: {e}");
        return ExitCode::from(2);
    }
    init_logging(config.log_format);
    if config.dev {
        tracing::warn!("development mode is on: never run it in production");
    }

    // The soft open-file limit up to the hard one (as Go's runtime does): the socket budget
    // then fits the limit the operator set, not a distribution's default of 1024.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "cannot raise the open-file limit");
    }
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("danmaku: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = shutdown_signal();
    tracing::info!(addr = %app.local_addr(), "listening");
    // One machine-readable line for scripts and tests that start the binary on port 0.
    println!("danmaku listening on http://{}", app.local_addr());
    match app.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`), the client-data loggers capped at info: as
/// text, coloured only on a terminal (a file or a pipe gets no escape codes), or as one JSON
/// object per line.
fn init_logging(format: LogFormat) {
    let asked = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let capped = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CLIENT_DATA_LOGGERS.map(|target| (target, LevelFilter::INFO)));
    let filter = asked.and(capped);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        // A request's `trace_id` and `span_id` (see `http::trace_context`) under `span`.
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer).init();
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: from the "listening" line on, a SIGTERM drains (a signal
/// before the serving task polled the future used to end the process at once).
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("can listen for SIGINT");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    }
}
