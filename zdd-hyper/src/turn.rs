//! The drain's event turn: telling the lifecycle when this runtime has read its sockets'
//! events after draining began, so that idle HTTP/1 connections close then
//! ([`EventTurn`]), microseconds after the drain began instead of at the lifecycle's own
//! timer turn, about a millisecond.
//!
//! A socket pair made readable and then registered with the runtime after draining began is
//! reported after every socket that was ready before it: the kernel keeps ready sockets in
//! a first come, first served list, and the runtime wakes each socket's reader as it reads
//! its event. So when the pair is reported, a request that reached an idle connection's
//! socket before is known to that connection's reader, however many sockets were ready at
//! once (the runtime reads at most 1,024 events at a time).

use std::{
    io::{self, Write},
    os::unix::net::UnixStream,
    pin::pin,
    time::Duration,
};

use tokio::time::{Instant, sleep_until};
use zdd_core::{EventTurn, LifecycleHandle, Phase};

/// Waits for draining, then for the runtime's event turn, and says so with `turn`. Forcing
/// ends the wait: it tells idle connections to close whatever is outstanding.
pub(crate) async fn at_drain(handle: LifecycleHandle, turn: EventTurn) {
    let mut forcing = pin!(handle.reached(Phase::Forcing));
    tokio::select! {
        biased;
        () = &mut forcing => {}
        () = async {
            handle.draining().await;
            let began = Instant::now();
            event_turn(UnixStream::pair).await;
            let turn_us = began.elapsed().as_micros() as u64;
            tracing::debug!(target: "zdd", turn_us, "the runtime read the sockets' events after the drain began: idle connections close");
        } => {}
    }
    turn.turned();
}

/// Completes once the runtime has read every socket event that was ready when it was
/// called: through a socket pair from `pair`, or, when there is none (no file descriptor
/// left), at the timer's next turn, which comes after a read of the events too.
async fn event_turn(pair: impl FnOnce() -> io::Result<(UnixStream, UnixStream)>) {
    if let Err(error) = reported_after_ready(pair).await {
        tracing::debug!(target: "zdd", error = %error, "no socket pair for the drain's event turn; waiting for a timer's turn");
        // A deadline past now: tokio's timer would fire one of now at once when now falls
        // on a whole millisecond it has turned past.
        sleep_until(Instant::now() + Duration::from_nanos(1)).await;
    }
}

/// Makes one end of a pair readable, registers it with the runtime, and waits until the
/// runtime reports it.
async fn reported_after_ready(
    pair: impl FnOnce() -> io::Result<(UnixStream, UnixStream)>,
) -> io::Result<()> {
    let (writer, reader) = pair()?;
    // A new pair's buffer is empty: the write does not block.
    (&writer).write_all(&[1])?;
    reader.set_nonblocking(true)?;
    // Registered while readable: the kernel adds it at the end of the ready list.
    let reader = tokio::net::UnixStream::from_std(reader)?;
    reader.readable().await
}

#[cfg(test)]
mod tests {
    use tokio_test::{assert_pending, assert_ready, task};

    use super::*;

    /// More sockets ready than the runtime reads events at a time (16 here, 1,024 by
    /// default), and a runtime busy until the timer's next turn is due before it reads
    /// them (the clock is moved, as a runtime busy with other tasks lets it pass): when the
    /// turn completes, every socket that was ready before it began has been reported to its
    /// reader. A timer's turn does not wait for that: this fails with `event_turn` given no
    /// socket pair (checked when it was written).
    #[test]
    fn when_the_turn_completes_every_socket_ready_before_it_has_been_reported() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .max_io_events_per_tick(16)
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut writers, mut readers) = (Vec::new(), Vec::new());
            for _ in 0..200 {
                let (writer, reader) = UnixStream::pair().unwrap();
                reader.set_nonblocking(true).unwrap();
                readers.push(tokio::net::UnixStream::from_std(reader).unwrap());
                writers.push(writer);
            }
            // The registrations' own events (writable) are read first.
            event_turn(UnixStream::pair).await;
            for writer in &writers {
                (&*writer).write_all(b"GET").unwrap();
            }
            let mut turn = task::spawn(event_turn(UnixStream::pair));
            assert_pending!(turn.poll());
            tokio::time::advance(Duration::from_millis(5)).await;
            turn.await;
            // `try_read` reads only what the runtime has reported readable (and spends no
            // cooperative budget, which would answer `Pending` after 128 polls).
            let unreported = readers
                .iter()
                .filter(|reader| {
                    let read = reader.try_read(&mut [0; 8]);
                    matches!(read, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
                })
                .count();
            assert_eq!(unreported, 0, "of {} ready sockets", readers.len());
        });
    }

    #[tokio::test]
    async fn the_turn_completes_once_the_runtime_reports_the_pair() {
        let mut turn = task::spawn(event_turn(UnixStream::pair));
        assert_pending!(
            turn.poll(),
            "the pair is reported by the runtime, not at once"
        );
        tokio::time::timeout(Duration::from_secs(10), turn)
            .await
            .expect("the runtime reports the pair");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_socket_pair_the_turn_is_the_timers() {
        let no_files = || Err(io::Error::from_raw_os_error(24)); // EMFILE
        let mut turn = task::spawn(event_turn(no_files));
        assert_pending!(turn.poll());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_ready!(turn.poll());
    }
}
