//! What moderators change, on Redis: each a script on the stream's slot
//! ([`scripts`](super::scripts)), announced on its channel. Blocked terms are read through
//! [`KeptTerms`](super::kept_terms::KeptTerms), a cache of a second per stream; a new list
//! is announced too (`t`): an instance that hears it reads the list at its next comment,
//! one that does not (deaf while repairing) within the second.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;

use super::client::{run, unavailable, unexpected};
use super::codec::{CommentBody, parse_entry_message, parse_stream_entry, user_field};
use super::keys::StreamKeys;
use super::{RedisBroker, SETTINGS_TTL, STATE_TTL, scripts};
use crate::broker::HELD_FOR;
use crate::broker::{Ban, BanMode, BrokerError};
use crate::domain::{
    BlockedTerms, Comment, CommentId, Epoch, MEDIA_BEHIND_MS, SettingsPatch, StreamId,
    StreamSettings, UserId, now_ms,
};
use crate::metrics::HeldOutcome;

impl RedisBroker {
    pub(in crate::broker) async fn delete(
        &self,
        stream: &StreamId,
        id: CommentId,
        author: Option<&UserId>,
    ) -> Result<(), BrokerError> {
        let keys = StreamKeys::new(stream);
        let deleted: i64 = run(
            &self.client,
            &scripts::DELETE,
            vec![
                keys.hist,
                keys.channel,
                keys.moderation,
                keys.settings,
                keys.replay_segs,
                keys.replay_counts,
                keys.replay_total,
            ],
            vec![
                id.to_string(),
                STATE_TTL.as_millis().to_string(),
                author.map_or_else(String::new, |a| a.as_str().to_owned()),
                StreamKeys::replay_prefix(stream),
            ],
        )
        .await?;
        match deleted {
            1 => Ok(()),
            -1 => Err(BrokerError::Forbidden),
            _ => Err(BrokerError::NotFound),
        }
    }

    pub(in crate::broker) async fn ban(
        &self,
        stream: &StreamId,
        user: &UserId,
        duration: Duration,
        mode: BanMode,
        purge: bool,
    ) -> Result<(), BrokerError> {
        let keys = StreamKeys::new(stream);
        let script_keys = vec![
            StreamKeys::ban(stream, user.as_str()),
            keys.channel,
            keys.moderation,
            keys.bans,
            keys.ban_modes,
            keys.hist,
            keys.settings,
            keys.replay_segs,
            keys.replay_counts,
            keys.replay_total,
        ];
        let args = vec![
            user.as_str().to_owned(),
            duration.as_millis().max(1).to_string(),
            STATE_TTL.as_millis().to_string(),
            mode.as_str().to_owned(),
            if purge { "1" } else { "0" }.to_owned(),
            StreamKeys::replay_prefix(stream),
        ];
        let _: i64 = run(&self.client, &scripts::BAN, script_keys, args).await?;
        Ok(())
    }

    pub(in crate::broker) async fn unban(
        &self,
        stream: &StreamId,
        user: &UserId,
    ) -> Result<bool, BrokerError> {
        let keys = StreamKeys::new(stream);
        let script_keys = vec![
            StreamKeys::ban(stream, user.as_str()),
            keys.bans,
            keys.ban_modes,
        ];
        let args = vec![user.as_str().to_owned()];
        let n: i64 = run(&self.client, &scripts::UNBAN, script_keys, args).await?;
        Ok(n == 1)
    }

    pub(in crate::broker) async fn bans(&self, stream: &StreamId) -> Result<Vec<Ban>, BrokerError> {
        let keys = StreamKeys::new(stream);
        let script_keys = vec![keys.bans, keys.ban_modes];
        let reply: Vec<Value> = run(&self.client, &scripts::BANS, script_keys, vec![]).await?;
        reply
            .chunks(3)
            .map(|ban| {
                let user = ban[0].as_str().and_then(|u| UserId::parse(&u).ok());
                let until = ban.get(1).and_then(|s| s.as_str()?.parse::<f64>().ok());
                let mode = ban.get(2).and_then(|m| BanMode::parse(&m.as_str()?));
                match (user, until, mode) {
                    (Some(user_id), Some(until), Some(mode)) => Ok(Ban {
                        user_id,
                        expires_at: until as u64,
                        mode,
                    }),
                    _ => Err(unexpected("bans")),
                }
            })
            .collect()
    }

    pub(in crate::broker) async fn ban_mode(
        &self,
        stream: &StreamId,
        user: &UserId,
    ) -> Result<Option<BanMode>, BrokerError> {
        let mode: Option<String> = self
            .client
            .get(StreamKeys::ban(stream, user.as_str()))
            .await
            .map_err(unavailable)?;
        // A value this version does not know is a ban: refusing is the safe reading.
        Ok(mode.map(|m| BanMode::parse(&m).unwrap_or(BanMode::Ban)))
    }

    pub(in crate::broker) async fn settings(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSettings, BrokerError> {
        let fields: Vec<Option<String>> = self
            .client
            .hmget(
                StreamKeys::new(stream).settings,
                vec!["slow", "roles", "pinned"],
            )
            .await
            .map_err(unavailable)?;
        Ok(settings_of(&fields))
    }

    pub(in crate::broker) async fn update_settings(
        &self,
        stream: &StreamId,
        patch: &SettingsPatch,
    ) -> Result<StreamSettings, BrokerError> {
        let keys = StreamKeys::new(stream);
        let roles = patch
            .post_roles
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("roles serialize"));
        let pinned = match patch.pinned {
            None => String::new(),
            Some(None) => "-".to_owned(),
            Some(Some(id)) => id.to_string(),
        };
        let args = vec![
            patch
                .slow_mode_ms
                .map_or_else(String::new, |ms| ms.to_string()),
            roles.unwrap_or_default(),
            pinned,
            SETTINGS_TTL.as_millis().to_string(),
        ];
        let script_keys = vec![keys.settings, keys.hist, keys.channel, keys.moderation];
        let (status, settings): (i64, String) =
            run(&self.client, &scripts::SETTINGS, script_keys, args).await?;
        if status == 0 {
            return Err(BrokerError::NotFound);
        }
        serde_json::from_str(&settings).map_err(|_| unexpected("settings"))
    }

    /// The stream's terms, read at most once a second per stream.
    pub(in crate::broker) async fn terms(
        &self,
        stream: &StreamId,
    ) -> Result<Arc<BlockedTerms>, BrokerError> {
        if let Some(kept) = self.kept_terms.fresh(stream) {
            return Ok(kept);
        }
        let stored: Option<String> = self
            .client
            .get(StreamKeys::new(stream).terms)
            .await
            .map_err(unavailable)?;
        let terms = match stored {
            None => BlockedTerms::default(),
            Some(json) => serde_json::from_str(&json).map_err(|_| unexpected("terms"))?,
        };
        Ok(self.kept_terms.keep(stream, terms))
    }

    pub(in crate::broker) async fn set_terms(
        &self,
        stream: &StreamId,
        terms: BlockedTerms,
    ) -> Result<(), BrokerError> {
        let json = serde_json::to_string(&terms).expect("terms serialize");
        let keys = StreamKeys::new(stream);
        let args = vec![json, SETTINGS_TTL.as_millis().to_string()];
        let _: i64 = run(
            &self.client,
            &scripts::TERMS,
            vec![keys.terms, keys.channel],
            args,
        )
        .await?;
        self.kept_terms.forget(stream);
        Ok(())
    }

    pub(in crate::broker) async fn held(
        &self,
        stream: &StreamId,
    ) -> Result<Vec<Comment>, BrokerError> {
        let (expired, entries): (u64, Vec<Value>) = run(
            &self.client,
            &scripts::HELD,
            vec![StreamKeys::new(stream).held],
            vec![HELD_FOR.as_millis().to_string()],
        )
        .await?;
        self.metrics.held(HeldOutcome::Expired, expired);
        Ok(entries.iter().filter_map(parse_stream_entry).collect())
    }

    /// The held comment `held_id`, or `NotFound`.
    async fn held_one(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<Comment, BrokerError> {
        let id = held_id.to_string();
        let entries: Value = self
            .client
            .xrange(StreamKeys::new(stream).held, &id, &id, None)
            .await
            .map_err(unavailable)?;
        entries
            .into_array()
            .first()
            .and_then(parse_stream_entry)
            .ok_or(BrokerError::NotFound)
    }

    pub(in crate::broker) async fn approve(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<Comment, BrokerError> {
        let held = self.held_one(stream, held_id).await?;
        // Published now, about the moment it was written, yet never more than a post may be
        // behind: a replay window final two minutes after its end stays final.
        let ts = now_ms();
        let media = held.media_time().max(ts.saturating_sub(MEDIA_BEHIND_MS));
        let body = CommentBody {
            stream_id: stream,
            kind: held.kind,
            user: held.user.as_ref(),
            text: &held.text,
            data: held.data.as_ref(),
            ts,
            media_ts: Some(media),
            by_moderator: held.by_moderator,
            shadow: false,
        }
        .encode();
        let keys = StreamKeys::new(stream);
        let mut script_keys = vec![
            keys.held,
            keys.hist,
            keys.channel,
            keys.count,
            keys.trimmed,
            keys.epoch,
            keys.moderation,
        ];
        script_keys.extend(Self::replay_keys(stream));
        let mut args = vec![
            held_id.to_string(),
            body,
            self.history_len.to_string(),
            self.trim_slack.to_string(),
            STATE_TTL.as_millis().to_string(),
            Epoch::tag(),
            held.user
                .as_ref()
                .map_or_else(String::new, |u| user_field(&u.id)),
            HELD_FOR.as_millis().to_string(),
        ];
        args.extend(self.replay_args(stream, media));
        let (status, message, expired): (i64, String, u64) =
            run(&self.client, &scripts::APPROVE, script_keys, args).await?;
        self.metrics.held(HeldOutcome::Expired, expired);
        if status == 0 {
            return Err(BrokerError::NotFound);
        }
        parse_entry_message(&message).ok_or_else(|| unexpected("approve"))
    }

    pub(in crate::broker) async fn reject(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<(), BrokerError> {
        let held = self.held_one(stream, held_id).await?;
        let keys = StreamKeys::new(stream);
        let args = vec![
            held_id.to_string(),
            held.user
                .as_ref()
                .map_or_else(String::new, |u| user_field(&u.id)),
            STATE_TTL.as_millis().to_string(),
            HELD_FOR.as_millis().to_string(),
        ];
        let script_keys = vec![keys.held, keys.channel, keys.moderation];
        let (n, expired): (i64, u64) =
            run(&self.client, &scripts::REJECT, script_keys, args).await?;
        self.metrics.held(HeldOutcome::Expired, expired);
        if n == 1 {
            Ok(())
        } else {
            Err(BrokerError::NotFound)
        }
    }
}

/// The settings hash's fields (slow, roles, pinned) as settings; what does not read is off.
fn settings_of(fields: &[Option<String>]) -> StreamSettings {
    let field = |i: usize| fields.get(i).and_then(Option::as_deref);
    StreamSettings {
        slow_mode_ms: field(0).and_then(|s| s.parse().ok()).unwrap_or(0),
        post_roles: field(1)
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default(),
        pinned: field(2).and_then(|p| p.parse().ok()),
    }
}
