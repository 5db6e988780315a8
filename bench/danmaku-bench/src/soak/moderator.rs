//! The soak's moderator: while the load runs, it deletes comments and bans and unbans users
//! over the service API, each time through one instance and checked through another, so every
//! moderation path (and the Redis keys behind it) is exercised for the whole soak.
//!
//! A round on stream `s`, instances A and B (rotating):
//! - delete: `GET` A's recent comments, `DELETE` one at least [`SETTLED`] old through B (every
//!   live viewer has had it, so no viewer's count changes), and `GET` through A again: it is gone;
//! - ban: `POST` a ban of a user who is not in the load through A; B lists it and refuses that
//!   user's handshake with `403`; `DELETE` the ban through A; B no longer lists it and accepts
//!   the handshake (`init`).
//!
//! Anything else is a failure, counted and kept (the first few) for the report.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;

use crate::http;
use crate::proto::Target;
use crate::result::soak::Moderation;

/// How old a comment must be before the moderator deletes it.
const SETTLED: Duration = Duration::from_secs(5);
/// Failures kept word for word in the report.
const KEPT_FAILURES: usize = 10;
/// How long a ban the moderator places lasts (it lifts every one itself, well before).
const BAN_SECONDS: u64 = 600;

/// Where and as whom the moderator works.
pub(crate) struct Moderator {
    /// Instances, `ws://ip:port`.
    pub instances: Vec<String>,
    pub streams: Vec<String>,
    pub service_token: String,
    /// Signs a viewer token for a user (the banned users' handshakes).
    pub sign: Box<dyn Fn(&str) -> String + Send + Sync>,
    pub every: Duration,
}

impl Moderator {
    /// Runs rounds every `every` until `stop` turns true; returns what it did.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) -> Moderation {
        let mut done = Moderation::default();
        let mut deleted_ids = HashSet::new();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return done,
            }
            let round = done.rounds;
            done.rounds += 1;
            let n = self.instances.len();
            let a = &self.instances[round as usize % n];
            let b = &self.instances[(round as usize + 1) % n];
            let stream = &self.streams[round as usize % self.streams.len()];
            match self.delete_one(a, b, stream, &mut deleted_ids).await {
                Ok(true) => done.deleted += 1,
                Ok(false) => done.nothing_to_delete += 1,
                Err(e) => fail(&mut done, format!("delete on {stream}: {e:#}")),
            }
            let user = format!("soak-banned-{round}");
            match self.ban(a, b, stream, &user).await {
                Ok(()) => done.banned += 1,
                Err(e) => {
                    fail(&mut done, format!("ban {user} on {stream}: {e:#}"));
                    continue;
                }
            }
            match self.unban(a, b, stream, &user).await {
                Ok(()) => done.unbanned += 1,
                Err(e) => fail(&mut done, format!("unban {user} on {stream}: {e:#}")),
            }
        }
    }

    /// Deletes the newest settled comment not deleted before; `false` if there was none.
    async fn delete_one(
        &self,
        a: &str,
        b: &str,
        stream: &str,
        deleted_ids: &mut HashSet<String>,
    ) -> anyhow::Result<bool> {
        let listed = self.recent(a, stream).await?;
        let settled_ms = now_ms().saturating_sub(SETTLED.as_millis() as u64);
        let Some(id) = listed
            .iter()
            .rev()
            .find(|c| c.ts <= settled_ms && !deleted_ids.contains(&c.id))
            .map(|c| c.id.clone())
        else {
            return Ok(false);
        };
        let path = format!("/v1/streams/{stream}/comments/{id}");
        expect(self.call(b, "DELETE", &path, None).await?, 204, "DELETE")?;
        deleted_ids.insert(id.clone());
        if self.recent(a, stream).await?.iter().any(|c| c.id == id) {
            bail!("comment {id} is still listed after its deletion");
        }
        Ok(true)
    }

    async fn ban(&self, a: &str, b: &str, stream: &str, user: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "user_id": user, "seconds": BAN_SECONDS }).to_string();
        let path = format!("/v1/streams/{stream}/bans");
        expect(
            self.call(a, "POST", &path, Some(body.as_bytes())).await?,
            204,
            "POST ban",
        )?;
        if !self.bans(b, stream).await?.iter().any(|u| u == user) {
            bail!("the other instance does not list the ban");
        }
        match self.handshake(b, stream, user).await {
            Err(tungstenite::Error::Http(response)) if response.status() == 403 => Ok(()),
            Err(e) => bail!("the banned user's handshake failed otherwise than 403: {e}"),
            Ok(()) => bail!("the banned user's handshake was accepted"),
        }
    }

    async fn unban(&self, a: &str, b: &str, stream: &str, user: &str) -> anyhow::Result<()> {
        let path = format!("/v1/streams/{stream}/bans/{user}");
        expect(
            self.call(a, "DELETE", &path, None).await?,
            204,
            "DELETE ban",
        )?;
        if self.bans(b, stream).await?.iter().any(|u| u == user) {
            bail!("the other instance still lists the lifted ban");
        }
        self.handshake(b, stream, user)
            .await
            .context("the handshake after the ban was lifted")
    }

    /// The stream's newest retained comments, oldest first.
    async fn recent(&self, base: &str, stream: &str) -> anyhow::Result<Vec<Listed>> {
        #[derive(Deserialize)]
        struct Page {
            comments: Vec<Listed>,
        }
        let path = format!("/v1/streams/{stream}/comments?limit=100");
        let response = expect(
            self.call(base, "GET", &path, None).await?,
            200,
            "GET comments",
        )?;
        let page: Page = serde_json::from_slice(&response.body).context("GET comments body")?;
        Ok(page.comments)
    }

    /// The users banned from the stream.
    async fn bans(&self, base: &str, stream: &str) -> anyhow::Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Ban {
            user_id: String,
        }
        #[derive(Deserialize)]
        struct Bans {
            bans: Vec<Ban>,
        }
        let path = format!("/v1/streams/{stream}/bans");
        let response = expect(self.call(base, "GET", &path, None).await?, 200, "GET bans")?;
        let bans: Bans = serde_json::from_slice(&response.body).context("GET bans body")?;
        Ok(bans.bans.into_iter().map(|b| b.user_id).collect())
    }

    async fn call(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<http::Response> {
        http::Client::new(base, Ipv4Addr::LOCALHOST)?
            .request(method, path, Some(&self.service_token), body)
            .await
    }

    /// Opens a viewer connection as `user` and waits for its first frame (`init`).
    async fn handshake(
        &self,
        base: &str,
        stream: &str,
        user: &str,
    ) -> Result<(), tungstenite::Error> {
        let url = Target::Danmaku.url(base, stream, Some(&(self.sign)(user)), None);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        let _ = ws.close(None).await;
        match first {
            Ok(Some(Ok(tungstenite::Message::Text(text)))) if text.contains("\"init\"") => Ok(()),
            _ => Err(tungstenite::Error::ConnectionClosed),
        }
    }
}

/// A comment as `GET /v1/streams/{id}/comments` lists it (the fields the moderator uses).
#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    ts: u64,
}

fn expect(response: http::Response, status: u16, what: &str) -> anyhow::Result<http::Response> {
    if response.status != status {
        bail!(
            "{what}: {} instead of {status}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(response)
}

fn fail(done: &mut Moderation, message: String) {
    done.failures += 1;
    if done.first_failures.len() < KEPT_FAILURES {
        done.first_failures.push(message);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
