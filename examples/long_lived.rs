//! Long-lived handlers that end cleanly at the drain: a server-sent event stream and a
//! WebSocket echo that says 1001 (Going Away).
//!
//! ```sh
//! cargo run --example long_lived
//! curl -N localhost:3000/events              # a tick a second; Ctrl-C the server: the stream ends
//! websocat ws://localhost:3000/ws            # echo; on Ctrl-C it receives close code 1001
//! ```

#[path = "common/mod.rs"]
mod common;

use std::{convert::Infallible, process::ExitCode, time::Duration};

use axum::{
    Router,
    extract::ws::WebSocketUpgrade,
    response::{
        Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use zdd::{
    Config, Lifecycle,
    axum::{DrainingWebSocket, ZddHandle},
};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    let port = listener.local_addr()?.port();
    common::print_banner("long_lived", listener.local_addr()?, lifecycle.config());
    println!(
        "  try:   curl -N http://localhost:{port}/events   and   websocat ws://localhost:{port}/ws"
    );

    let app = Router::new()
        .route("/events", get(events))
        .route("/ws", get(echo))
        .with_state(lifecycle.handle());
    let report = zdd::axum::serve(listener, app, lifecycle).await;
    Ok(common::finish(&report))
}

/// A tick a second until draining starts, then a clean end of stream.
async fn events(
    ZddHandle(handle): ZddHandle,
) -> Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures_util::stream::unfold(0_u64, |n| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok(Event::default().data(format!("tick {n}"))), n + 1))
    });
    Sse::new(handle.until_draining(ticks)).keep_alive(KeepAlive::default())
}

/// Echoes until the client leaves, or until draining starts (close code 1001).
async fn echo(upgrade: WebSocketUpgrade, ZddHandle(handle): ZddHandle) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        let mut socket = DrainingWebSocket::new(socket, &handle);
        while let Some(Ok(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}
