//! The accept backlog at the drain, as an unlucky operator meets it: a server out of file
//! descriptors leaves connections queued in the kernel, then gets SIGTERM. Every queued
//! connection must be answered and counted in the report, never reset at exit.
//!
//! The race this guards against needs many tries to show (the accept loop spawning the
//! backlog's connections while the drain looks at the counts), so the scenario runs
//! [`ITERATIONS`] times in a row, each against a fresh server process.

mod support;

use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The server's open-file limit: it accepts about this many connections, then fails with
/// "too many open files" while the rest wait in the listen queue.
const FD_LIMIT: u32 = 256;
/// More connections than the server can hold, fewer than its listen queue takes.
const CONNECTIONS: usize = 300;
const ITERATIONS: usize = 20;

const ENV: &[(&str, &str)] = &[
    ("ZDD_PROPAGATION_DELAY", "0s"),
    ("ZDD_DRAIN_TIMEOUT", "10s"),
    ("ZDD_GRACE_PERIOD", "30s"),
];

/// What one client connection got for its `GET /`.
#[derive(Debug)]
enum Answer {
    Hello,
    Other(#[allow(dead_code, reason = "read in failure messages")] String),
    Failed(#[allow(dead_code, reason = "read in failure messages")] std::io::ErrorKind),
}

/// Sends one keep-alive request on `stream`, reads the answer, then holds the connection
/// open, as a pooled client does, until the server closes it.
async fn ask(mut stream: TcpStream) -> Answer {
    let answer = first_answer(&mut stream).await;
    if matches!(answer, Answer::Hello) {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(BOUND, stream.read_to_end(&mut rest)).await;
        if !matches!(closed, Ok(Ok(_))) || !rest.is_empty() {
            return Answer::Other(format!(
                "after the answer: {closed:?}, {:?}",
                String::from_utf8_lossy(&rest)
            ));
        }
    }
    answer
}

/// Sends `GET /` and reads the answer's head and body.
async fn first_answer(stream: &mut TcpStream) -> Answer {
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    if let Err(error) = stream.write_all(request).await {
        return Answer::Failed(error.kind());
    }
    let mut received = Vec::new();
    let mut buf = [0_u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&received);
        if text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nhello\n") {
            return Answer::Hello;
        }
        match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Answer::Other(text.into_owned()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => return Answer::Failed(error.kind()),
            Err(_) => return Answer::Failed(std::io::ErrorKind::TimedOut),
        }
    }
}

/// How many connections the drain took from the queue, from the `listener closed` line.
fn backlog_served(output: &[String]) -> Option<u64> {
    const KEY: &str = "backlog_served=";
    let line = output
        .iter()
        .find(|line| line.contains("listener closed"))?;
    let rest = &line[line.find(KEY)? + KEY.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The number before ` completed` in the report's requests line.
fn completed(output: &[String]) -> Option<u64> {
    output.iter().find_map(|line| {
        let rest = line.trim().strip_prefix("requests: ")?;
        rest.split(' ').next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_queued_at_the_drain_is_answered_and_counted() {
    let binary = example("hyper_hello");
    let mut queued_total = 0;
    for iteration in 0..ITERATIONS {
        let port = free_port();
        let server =
            Instance::start_with_fd_limit(&binary, FD_LIMIT, "hyper_hello", "v1", port, ENV);
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the kernel completes the handshake for queued connections");
            clients.push(tokio::spawn(ask(stream)));
        }
        // The server ran out of descriptors: the last connections wait in its queue.
        server.printed("accept failed").await;
        server.signal("TERM");

        let mut failures = Vec::new();
        for client in clients {
            match client.await.unwrap() {
                Answer::Hello => {}
                other => failures.push(other),
            }
        }
        let exited = tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap();
        let queued = backlog_served(&exited.output)
            .unwrap_or_else(|| panic!("no backlog logged: {:#?}", exited.output));
        assert!(
            failures.is_empty(),
            "iteration {iteration}: {} of {CONNECTIONS} connections failed ({queued} were queued): {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(
            queued > 0,
            "iteration {iteration}: nothing was queued, so the backlog was not tested: {:#?}",
            exited.output
        );
        assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
        let printed = exited.output.join("\n");
        assert!(
            printed.contains("shutdown graceful") && printed.contains("0 left open"),
            "{printed}"
        );
        let completed = completed(&exited.output).expect("the report's requests line");
        assert!(
            completed >= queued,
            "iteration {iteration}: {queued} queued connections were served in the drain, but the report counts {completed} completed requests"
        );
        queued_total += queued;
    }
    eprintln!(
        "{ITERATIONS} iterations: {queued_total} queued connections, every one answered and counted"
    );
}
