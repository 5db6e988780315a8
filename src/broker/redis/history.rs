//! History reads: a page of a stream's retained comments, and its moderation log.

use fred::prelude::*;

use super::client::{run, unavailable};
use super::codec::{Inbound, parse_message, parse_stream_entry};
use super::keys::StreamKeys;
use super::scripts;
use crate::broker::{BrokerError, HistoryPage, HistoryQuery};
use crate::domain::{Comment, CommentId, StreamId};

pub(super) async fn read_history(
    client: &Client,
    stream: &StreamId,
    query: HistoryQuery,
) -> Result<HistoryPage, BrokerError> {
    let keys = StreamKeys::new(stream);
    let (mode, limit, after) = match query {
        HistoryQuery::Latest { limit } => ("latest", limit, String::new()),
        HistoryQuery::After { id, limit } => ("after", limit, id.to_string()),
    };
    let args = vec![mode.to_owned(), limit.to_string(), after];
    let reply: Vec<Value> = run(
        client,
        &scripts::HISTORY,
        vec![keys.hist, keys.trimmed],
        args,
    )
    .await?;
    let trimmed = reply
        .first()
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<CommentId>().ok());
    let entries = match reply.into_iter().nth(1) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    let mut comments: Vec<Comment> = entries.iter().filter_map(parse_stream_entry).collect();
    match query {
        HistoryQuery::Latest { .. } => {
            comments.reverse();
            Ok(HistoryPage {
                comments,
                complete: true,
            })
        }
        HistoryQuery::After { id, .. } => Ok(HistoryPage {
            comments,
            complete: trimmed.is_none_or(|t| id >= t),
        }),
    }
}

/// Moderation messages logged at or after `since_ms` (epoch ms), oldest first.
pub(super) async fn read_moderation_since(
    client: &Client,
    stream: &StreamId,
    since_ms: u64,
) -> Result<Vec<Inbound>, BrokerError> {
    let key = StreamKeys::new(stream).moderation;
    let messages: Vec<String> = client
        .zrangebyscore(key, since_ms as f64, "+inf", false, None)
        .await
        .map_err(unavailable)?;
    Ok(messages.iter().filter_map(|m| parse_message(m)).collect())
}
