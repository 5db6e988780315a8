//! The subscription manager: the one owner of this instance's set of broker subscriptions.
//!
//! A stream is subscribed when its first local connection joins and unsubscribed after the
//! last one has left plus `DANMAKU_UNSUBSCRIBE_LINGER_MS`, re-checked when the linger ends.
//! Broker calls run in spawned tasks that report back, so the manager never holds state
//! across an `.await` and one slow stream never delays another. A failed subscribe is
//! retried with backoff while anyone still waits for it; a subscribe never overlaps an
//! unsubscribe of the same stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError};
use crate::domain::StreamId;
use crate::metrics::Metrics;

pub(super) enum Command {
    /// A connection joined; reply once the subscription is live.
    Acquire(StreamId, oneshot::Sender<Result<(), BrokerError>>),
    /// A connection left.
    Release(StreamId),
    Subscribed(StreamId, Result<(), BrokerError>),
    LingerOver(StreamId, u64),
    Unsubscribed(StreamId),
}

type Waiter = oneshot::Sender<Result<(), BrokerError>>;

enum State {
    Subscribing(Vec<Waiter>),
    Live,
    Unsubscribing(Vec<Waiter>),
}

struct Entry {
    refs: usize,
    state: State,
    /// Bumped by every release to zero; a linger timer only acts on its own generation.
    generation: u64,
    attempts: u32,
}

struct Manager {
    broker: Broker,
    tx: mpsc::UnboundedSender<Command>,
    linger: Duration,
    metrics: Arc<Metrics>,
    entries: HashMap<StreamId, Entry>,
}

const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) fn spawn(
    broker: Broker,
    mut rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    linger: Duration,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut manager = Manager {
        broker,
        tx,
        linger,
        metrics,
        entries: HashMap::new(),
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                command = rx.recv() => match command {
                    Some(command) => manager.handle(command),
                    None => return,
                },
            }
        }
    });
}

impl Manager {
    fn handle(&mut self, command: Command) {
        match command {
            Command::Acquire(stream, reply) => self.acquire(stream, reply),
            Command::Release(stream) => self.release(stream),
            Command::Subscribed(stream, result) => self.subscribed(stream, result),
            Command::LingerOver(stream, generation) => self.linger_over(stream, generation),
            Command::Unsubscribed(stream) => self.unsubscribed(stream),
        }
    }

    fn acquire(&mut self, stream: StreamId, reply: Waiter) {
        let entry = match self.entries.get_mut(&stream) {
            Some(entry) => entry,
            None => {
                self.start_subscribe(stream.clone(), Duration::ZERO);
                self.entries.entry(stream).or_insert(Entry {
                    refs: 0,
                    state: State::Subscribing(Vec::new()),
                    generation: 0,
                    attempts: 0,
                })
            }
        };
        entry.refs += 1;
        match &mut entry.state {
            State::Live => {
                let _ = reply.send(Ok(()));
            }
            State::Subscribing(waiters) | State::Unsubscribing(waiters) => waiters.push(reply),
        }
    }

    fn release(&mut self, stream: StreamId) {
        let Some(entry) = self.entries.get_mut(&stream) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 && matches!(entry.state, State::Live) {
            entry.generation += 1;
            let generation = entry.generation;
            self.start_linger(stream, generation);
        }
    }

    fn subscribed(&mut self, stream: StreamId, result: Result<(), BrokerError>) {
        let Some(entry) = self.entries.get_mut(&stream) else {
            return;
        };
        match result {
            Ok(()) => {
                self.metrics.stream_subscribed();
                entry.attempts = 0;
                if let State::Subscribing(waiters) =
                    std::mem::replace(&mut entry.state, State::Live)
                {
                    for waiter in waiters {
                        let _ = waiter.send(Ok(()));
                    }
                }
                if entry.refs == 0 {
                    entry.generation += 1;
                    let generation = entry.generation;
                    self.start_linger(stream, generation);
                }
            }
            Err(error) if entry.refs == 0 => {
                tracing::debug!(%stream, %error, "subscribe failed; nobody waits for it any more");
                self.entries.remove(&stream);
            }
            Err(error) => {
                entry.attempts += 1;
                let backoff = RETRY_BASE
                    .saturating_mul(1 << entry.attempts.min(6))
                    .min(RETRY_MAX);
                tracing::warn!(%stream, %error, attempts = entry.attempts, ?backoff, "subscribe failed; retrying");
                self.start_subscribe(stream, backoff);
            }
        }
    }

    fn linger_over(&mut self, stream: StreamId, generation: u64) {
        let Some(entry) = self.entries.get_mut(&stream) else {
            return;
        };
        if entry.refs == 0 && entry.generation == generation && matches!(entry.state, State::Live) {
            entry.state = State::Unsubscribing(Vec::new());
            self.start_unsubscribe(stream);
        }
    }

    fn unsubscribed(&mut self, stream: StreamId) {
        self.metrics.stream_unsubscribed();
        let Some(entry) = self.entries.get_mut(&stream) else {
            return;
        };
        if entry.refs == 0 {
            self.entries.remove(&stream);
        } else if let State::Unsubscribing(waiters) =
            std::mem::replace(&mut entry.state, State::Live)
        {
            // Someone joined while the unsubscribe ran: subscribe again.
            entry.state = State::Subscribing(waiters);
            self.start_subscribe(stream, Duration::ZERO);
        }
    }

    fn start_subscribe(&self, stream: StreamId, after: Duration) {
        let (broker, tx) = (self.broker.clone(), self.tx.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let result = broker.subscribe(&stream).await;
            let _ = tx.send(Command::Subscribed(stream, result));
        });
    }

    fn start_linger(&self, stream: StreamId, generation: u64) {
        let (linger, tx) = (self.linger, self.tx.clone());
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            let _ = tx.send(Command::LingerOver(stream, generation));
        });
    }

    fn start_unsubscribe(&self, stream: StreamId) {
        let (broker, tx) = (self.broker.clone(), self.tx.clone());
        tokio::spawn(async move {
            let mut backoff = RETRY_BASE;
            for attempt in 1..=5 {
                match broker.unsubscribe(&stream).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%stream, %error, attempt, "unsubscribe failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
            let _ = tx.send(Command::Unsubscribed(stream));
        });
    }
}
