//! A client's `refresh` frame (contract section 8): a new token for the same user replaces
//! the connection's identity (name, `mod`, `exp`) and is answered `refreshed`; anything else
//! is an `unauthorized` error and the connection keeps the identity it had. The token is
//! never logged.
//!
//! Posting reads the identity anew for every comment (its `exp`, and `mod` for the
//! moderator mark that thinning spares), so what a refresh changes applies to the next
//! comment; delivery is told the new `mod` at once (a moderator sees shadowed and held
//! comments, a former one no longer does). The socket's user for thinning (its own comments) is the `sub`, which a
//! refresh cannot change.

use super::close::End;
use super::connection::Connection;
use crate::auth::Identity;
use crate::delivery::RawSocket;
use crate::domain::wire::{ErrorBody, ErrorCode, ServerFrame};

impl<S: RawSocket> Connection<S> {
    pub(super) async fn refresh(&mut self, token: String) -> Result<(), End> {
        let Identity::Viewer(current) = &self.identity else {
            return self.refuse_refresh(
                "an anonymous connection has no user to refresh; connect with the token",
            );
        };
        let viewer = match self.ws.auth.viewer(Some(&token)).await {
            Ok(Identity::Viewer(viewer)) => viewer,
            Ok(Identity::Anonymous) => {
                return self.refuse_refresh("this server checks no tokens");
            }
            Err(error) => return self.refuse_refresh(&error.to_string()),
        };
        if viewer.user.id != current.user.id {
            return self.refuse_refresh("the token's sub is not this connection's user");
        }
        let exp = viewer.expires_at;
        // Who sees shadowed comments and held ones follows the new `mod` at once.
        self.peer.set_moderator(viewer.moderates(&self.stream));
        self.identity = Identity::Viewer(viewer);
        self.write_now(ServerFrame::Refreshed { exp }.encode())
    }

    fn refuse_refresh(&mut self, message: &str) -> Result<(), End> {
        let error = ErrorBody::new(ErrorCode::Unauthorized, message);
        self.write_now(ServerFrame::Error(&error).encode())
    }
}
