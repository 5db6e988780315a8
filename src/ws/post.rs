//! A client's `comment` frame: through the posting rules to an `ack` with the comment's id,
//! or an `error` frame with the refusal's code (the connection stays open).

use super::close::End;
use super::connection::Connection;
use crate::api_error::chain;
use crate::delivery::RawSocket;
use crate::domain::wire::{ClientFrame, ErrorBody, ErrorCode, ServerFrame};
use crate::posting::PostError;

impl<S: RawSocket> Connection<S> {
    pub(super) async fn post(
        &mut self,
        text: String,
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
            .as_viewer(&self.stream, &self.identity, text, reference.as_deref())
            .await;
        if posted
            .as_ref()
            .map_or_else(|e| e.comment_was_well_formed(), |_| true)
        {
            self.malformed = 0;
        }
        match posted {
            Ok(comment) => {
                let ack = ServerFrame::Ack {
                    reference: reference.as_deref(),
                    id: comment.id,
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
}
