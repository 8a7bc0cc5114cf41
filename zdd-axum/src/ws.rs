//! WebSockets that say goodbye when draining starts.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use zdd_core::{LifecycleHandle, PhaseReached};

/// A WebSocket that sends close code 1001 (Going Away) when draining starts.
///
/// Use [`recv`](Self::recv) in place of `WebSocket::recv`: it returns messages as usual,
/// and once draining starts it sends the close frame, waits (at most the configured
/// [`Config::websocket_close_timeout`](zdd_core::Config::websocket_close_timeout),
/// `ZDD_WEBSOCKET_CLOSE_TIMEOUT`, 1 s by default) for the client's answer, and returns `None`, so the handler's receive loop ends by itself and
/// the connection closes well before forcing. Clients treat 1001 as "reconnect elsewhere".
///
/// # Examples
///
/// ```
/// use axum::{Router, extract::{State, ws::WebSocketUpgrade}, response::Response, routing::get};
/// use zdd_axum::DrainingWebSocket;
/// use zdd_core::{Config, Lifecycle, LifecycleHandle};
///
/// async fn echo(upgrade: WebSocketUpgrade, State(handle): State<LifecycleHandle>) -> Response {
///     upgrade.on_upgrade(move |socket| async move {
///         let mut socket = DrainingWebSocket::new(socket, &handle);
///         while let Some(Ok(message)) = socket.recv().await {
///             if socket.send(message).await.is_err() {
///                 break;
///             }
///         }
///     })
/// }
///
/// let lifecycle = Lifecycle::new(Config::default());
/// let app: Router = Router::new().route("/ws", get(echo)).with_state(lifecycle.handle());
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct DrainingWebSocket {
    socket: WebSocket,
    draining: PhaseReached,
    close_timeout: Duration,
    closed: bool,
}

impl DrainingWebSocket {
    /// Wraps an upgraded socket.
    #[must_use]
    pub fn new(socket: WebSocket, handle: &LifecycleHandle) -> Self {
        Self {
            socket,
            draining: handle.draining(),
            close_timeout: handle.config().websocket_close_timeout(),
            closed: false,
        }
    }

    /// The next message, or `None` once the socket is closed: by the client, or by the
    /// server with 1001 when draining started.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like `WebSocket::recv`: it can be used in `tokio::select!`.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        if self.closed {
            return None;
        }
        tokio::select! {
            biased;
            () = &mut self.draining => {
                self.going_away().await;
                None
            }
            message = self.socket.recv() => message,
        }
    }

    /// Sends a message.
    ///
    /// # Errors
    ///
    /// When the socket is closed or the write fails.
    pub async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        self.socket.send(message).await
    }

    /// The wrapped socket.
    #[must_use]
    pub fn into_inner(self) -> WebSocket {
        self.socket
    }

    async fn going_away(&mut self) {
        self.closed = true;
        let frame = CloseFrame {
            code: close_code::AWAY,
            reason: "server shutting down".into(),
        };
        if self.socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        // Wait for the client's close frame (or the end of the stream), bounded.
        let _ = tokio::time::timeout(self.close_timeout, async {
            while let Some(Ok(message)) = self.socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}
