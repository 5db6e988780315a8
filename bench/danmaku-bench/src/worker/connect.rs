//! Opening a worker's connections: a WebSocket from a given source address up to `init`
//! (answering pings; against a Pusher server, subscribing once the connection is established),
//! counted or not, and the posters' and end markers' setup before
//! any viewer connects (a poster posts its stream's history then). A viewer's socket is a
//! [`Wire`]: its wire bytes are counted, and with `--deflate` it offers `permessage-deflate`
//! and reads the compressed frames inflated.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::ipc::{Endpoint, Plan, PosterSpec, PosterTotals};
use crate::proto::{Frame, Target, pusher};
use crate::worker::wire::{INFLATE_LIMIT, Wire};
use crate::worker::{Phase, Shared, warn};
use danmaku::deflate::inflate::Inflater;

pub(super) type Ws = WebSocketStream<Wire<TcpStream>>;

/// What a viewer offers in its handshake with `--deflate` (as browsers do).
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// How a connection reads: whether its wire bytes are counted (a viewer's) and whether it
/// offers `permessage-deflate` and inflates what comes compressed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reading {
    pub counted: bool,
    pub deflate: bool,
}

impl Reading {
    /// A viewer's reading in this plan: counted, deflate as the plan says.
    pub(super) fn viewer(plan: &Plan) -> Reading {
        Reading {
            counted: true,
            deflate: plan.deflate,
        }
    }
}

/// How long a connection may take from TCP connect to `init`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
    reading: Reading,
    state: &Shared,
) -> anyhow::Result<(Ws, Duration)> {
    let started = Instant::now();
    // Pusher's "token" is the app key, in the path.
    let app = state.borrow().pusher.clone();
    let token = match (target, &app) {
        (Target::Pusher, Some(app)) => Some(app.key.as_str()),
        _ => token,
    };
    let attempt = async {
        let url = target.url(&endpoint.base, &endpoint.stream, token, endpoint.max_rate);
        let mut request = url.into_client_request().context("request")?;
        if reading.deflate {
            request.headers_mut().insert(
                "Sec-WebSocket-Extensions",
                HeaderValue::from_static(DEFLATE_OFFER),
            );
        }
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
        let tally = reading.counted.then(|| state.borrow().wire.clone());
        // danmaku compresses each message on its own; the Socket.IO peer (ws's defaults)
        // keeps its compression context from message to message.
        let inflater = reading.deflate.then(|| match target {
            Target::Danmaku => Inflater::new(INFLATE_LIMIT),
            Target::Socketio | Target::Pusher => Inflater::keeping_context(INFLATE_LIMIT),
        });
        let wire = Wire::new(tcp, tally, inflater);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, wire, Some(ws_config()))
                .await
                .context("handshake")?;
        if let Some(hello) = target.hello(&endpoint.stream, user) {
            ws.send(Message::text(hello)).await?;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match target.decode(text.as_str())? {
                    Frame::Init => return Ok(ws),
                    Frame::Ping => ws.send(Message::text(target.pong())).await?,
                    Frame::Established => {
                        ws.send(Message::text(pusher::subscribe(&endpoint.stream)))
                            .await?;
                    }
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
pub(super) async fn setup_posters(plan: &Plan, state: &Shared) -> Vec<(PosterSpec, Ws)> {
    let mut ready = Vec::new();
    for spec in &plan.posters {
        state.borrow_mut().posters.push(PosterTotals {
            index: spec.index,
            stream_index: spec.endpoint.stream_index,
            ..PosterTotals::default()
        });
        let user = Some(spec.user.as_str());
        let token = spec.token.as_deref();
        let plain = Reading::default();
        match connect(plan.target, &spec.endpoint, token, user, plain, state).await {
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
pub(super) async fn setup_closers(plan: &Plan, state: &Shared) -> Vec<(PosterSpec, Ws)> {
    let mut ready = Vec::new();
    for spec in &plan.closers {
        let user = Some(spec.user.as_str());
        let token = spec.token.as_deref();
        let plain = Reading::default();
        match connect(plan.target, &spec.endpoint, token, user, plain, state).await {
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
                    Frame::Ping => ws.send(Message::text(target.pong())).await?,
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

/// Opens a counted connection (its wire bytes too, when `reading` says so); failures are
/// counted and reported, not fatal.
pub(super) async fn open(
    target: Target,
    endpoint: &Endpoint,
    reading: Reading,
    state: &Shared,
    handshakes: &Semaphore,
) -> Option<Ws> {
    let permit = handshakes.acquire().await.ok()?;
    let result = connect(target, endpoint, None, None, reading, state).await;
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

/// Reads (answering pings) until the phase reaches `until`; `Err` if the connection
/// closed first.
pub(super) async fn wait_for(
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
                        let _ = ws.send(Message::text(target.pong())).await;
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
