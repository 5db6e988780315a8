//! The `danmaku` binary: configuration, logging, then [`danmaku::App`] until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use danmaku::{App, Config};
use tracing_subscriber::EnvFilter;

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
    // tungstenite logs every message a client sends at trace level, `refresh` tokens
    // included: its trace stays off whatever RUST_LOG says (tokens are never logged).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "tungstenite::protocol=debug"
                .parse()
                .expect("a valid directive"),
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if config.dev {
        tracing::warn!("development mode is on: never run it in production");
    }

    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("danmaku: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %app.local_addr(), "listening");
    // One machine-readable line for scripts and tests that start the binary on port 0.
    println!("danmaku listening on http://{}", app.local_addr());
    match app.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("can listen for SIGINT");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
