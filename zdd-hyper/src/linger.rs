//! Closing an HTTP/2 connection without losing its last answers.
//!
//! A server that closes a socket with unread bytes in its receive buffer resets the
//! connection (RST), and a reset makes the peer's kernel discard what the peer has not read
//! yet. After a graceful HTTP/2 shutdown that is common: the server sends GOAWAY, finishes
//! its streams and closes, while the peer, not having read the GOAWAY yet, is still sending
//! new streams. The reset then destroys the last answers still in flight (a gRPC call's
//! trailers; seen behind HAProxy, which passed the cut answer on without them).
//!
//! So a connection that ended by itself is closed in two steps, as web servers do (nginx's
//! `lingering_close`): its sending side is shut (FIN; the peer reads everything, then the
//! end), then whatever arrives is read and discarded until the peer closes too, at most
//! [`LINGER`] or until forcing. The connection stays counted meanwhile.

use std::{sync::Arc, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zdd_core::Protocol;

use crate::state::ConnState;

/// The longest a closed HTTP/2 connection waits for its peer to close too. A peer that read
/// the GOAWAY closes at once.
const LINGER: Duration = Duration::from_millis(500);

/// Closes `io`, whose connection's task is done with it: at once, unless it is an HTTP/2
/// connection that ended by itself, which lingers (see the [module docs](self)).
pub(crate) fn close<I>(io: I, state: Arc<ConnState>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if state.guard.protocol() != Some(Protocol::Http2) || state.guard.must_fail_io() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut io = io;
        // Already shut by the HTTP/2 layer on a graceful end, mostly; an error means the
        // peer is gone.
        if io.shutdown().await.is_err() {
            return;
        }
        let discard = async {
            let mut buf = [0_u8; 1024];
            while let Ok(1..) = io.read(&mut buf).await {}
        };
        tokio::select! {
            () = discard => {}
            () = state.guard.io_fails() => {}
            () = tokio::time::sleep(LINGER) => {}
        }
        drop(state);
    });
}
