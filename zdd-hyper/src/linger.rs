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

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use tokio::net::{TcpListener, TcpStream};
    use zdd_core::{Config, Lifecycle};

    use super::*;

    /// A connected pair: (the server's side, the client's side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// What the client reads to the end: the bytes, or the error that ended the reading.
    async fn read_to_end(client: &mut TcpStream) -> Result<Vec<u8>, ErrorKind> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
            .await
            .expect("the server's side ends")
            .map(|_| got)
            .map_err(|e| e.kind())
    }

    #[tokio::test]
    async fn an_http2_connection_closed_with_unread_bytes_ends_with_fin_not_a_reset() {
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        for http2 in [false, true] {
            let (mut server, mut client) = pair().await;
            let guard = handle.track_connection();
            if http2 {
                guard.request_begins(http::Version::HTTP_2);
            }
            let state = Arc::new(ConnState::new(guard));
            // The server's last answer, then bytes it has not read (the peer's next
            // stream, sent before it saw the GOAWAY).
            server.write_all(b"last answer").await.unwrap();
            client.write_all(b"a new stream").await.unwrap();
            server.readable().await.unwrap(); // they are in the server's receive buffer
            close(server, state);
            let read = read_to_end(&mut client).await;
            if http2 {
                // Shut for sending, then read until the peer closes: every byte arrives.
                assert_eq!(read.as_deref(), Ok(&b"last answer"[..]));
                drop(client);
                tokio::time::timeout(Duration::from_secs(10), async {
                    while handle.open_connections() > 0 {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("the connection is released once its peer closes");
            } else {
                // Closed at once with unread bytes: the kernel resets the connection.
                assert_eq!(read, Err(ErrorKind::ConnectionReset));
            }
        }
    }
}
