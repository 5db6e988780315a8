//! A client's `comment` frame: through the posting rules to an `ack` with the comment's id
//! (or its held id, `held: true`), or an `error` frame with the refusal's code; and its
//! `delete` frame (its own comment, or any as a moderator) to an `ack` or an `error`. The
//! connection stays open either way.

use super::close::End;
use super::connection::Connection;
use crate::api_error::chain;
use crate::auth::Identity;
use crate::broker::BrokerError;
use crate::delivery::RawSocket;
use crate::domain::CommentId;
use crate::domain::wire::{ClientFrame, ErrorBody, ErrorCode, ServerFrame};
use crate::posting::PostError;

impl<S: RawSocket> Connection<S> {
    pub(super) async fn post(
        &mut self,
        text: String,
        media_ts: Option<u64>,
        reference: Option<String>,
    ) -> Result<(), End> {
        if reference
            .as_ref()
            .is_some_and(|r| r.chars().count() > ClientFrame::MAX_REF_CHARS)
        {
            let error = ErrorBody::new(ErrorCode::Invalid, "ref must be at most 64 characters");
            return self.refuse(error);
        }
        let posted = self
            .ws
            .posting
            .as_viewer(
                &self.stream,
                &self.identity,
                text,
                media_ts,
                reference.as_deref(),
            )
            .await;
        if posted
            .as_ref()
            .map_or_else(|e| e.comment_was_well_formed(), |_| true)
        {
            self.malformed = 0;
        }
        match posted {
            Ok(accepted) => {
                let ack = ServerFrame::Ack {
                    reference: reference.as_deref(),
                    id: accepted.id,
                    held: accepted.held,
                };
                self.write_now(ack.encode())
            }
            Err(refused) => {
                if let PostError::Unavailable(cause) = &refused {
                    tracing::warn!(stream = %self.stream, cause = %chain(cause), "a comment could not be posted");
                }
                let mut error =
                    ErrorBody::new(refused.code(), refused.to_string()).with_ref(reference);
                error.retry_after_ms = refused.retry_after_ms();
                self.refuse(error)
            }
        }
    }

    /// A `delete` frame: the author removes their own retained comment, a moderator any.
    pub(super) async fn delete(
        &mut self,
        id: String,
        reference: Option<String>,
    ) -> Result<(), End> {
        let refusal = |code: ErrorCode, message: &str| {
            ErrorBody::new(code, message).with_ref(reference.clone())
        };
        let author = match &self.identity {
            Identity::Viewer(viewer) if !viewer.token_expired() => {
                (!viewer.moderates(&self.stream)).then(|| viewer.user.id.clone())
            }
            Identity::Viewer(_) => {
                return self.refuse(refusal(ErrorCode::Unauthorized, "your token has expired"));
            }
            Identity::Anonymous => {
                let error = refusal(ErrorCode::Unauthorized, "sign in to delete comments");
                return self.refuse(error);
            }
        };
        let Ok(id) = id.parse::<CommentId>() else {
            return self.refuse(refusal(ErrorCode::Invalid, "id must be a comment id"));
        };
        self.malformed = 0;
        let deleted = self
            .ws
            .broker
            .delete(&self.stream, id, author.as_ref())
            .await;
        let error = match deleted {
            Ok(()) => {
                let reference = reference.as_deref();
                let ack = ServerFrame::Ack {
                    reference,
                    id,
                    held: false,
                };
                return self.write_now(ack.encode());
            }
            Err(BrokerError::NotFound) => refusal(ErrorCode::NotFound, "no such comment"),
            Err(BrokerError::Forbidden) => refusal(
                ErrorCode::Forbidden,
                "only its author or a moderator of the stream may delete a comment",
            ),
            Err(other) => {
                tracing::warn!(stream = %self.stream, error = %chain(&other), "a comment could not be deleted");
                refusal(
                    ErrorCode::Unavailable,
                    "could not delete right now; try again",
                )
            }
        };
        self.refuse(error)
    }
}
