//! The drain's counter under every interleaving loom finds: a waiter, the last release and
//! the close racing each other never lose the wake-up (a lost one is a deadlock, which
//! loom reports).

use loom::{future::block_on, sync::Arc, thread};

use crate::tracker::Counter;

#[test]
fn loom_the_last_release_and_the_close_racing_a_waiter_lose_no_wakeup() {
    loom::model(|| {
        let counter = Arc::new(Counter::default());
        counter.acquire();
        let releaser = {
            let counter = Arc::clone(&counter);
            thread::spawn(move || counter.release())
        };
        let closer = {
            let counter = Arc::clone(&counter);
            thread::spawn(move || counter.close())
        };
        block_on(counter.wait());
        assert_eq!(counter.len(), 0);
        releaser.join().unwrap();
        closer.join().unwrap();
    });
}

#[test]
fn loom_closing_an_empty_counter_wakes_a_waiter_racing_it() {
    loom::model(|| {
        let counter = Arc::new(Counter::default());
        let closer = {
            let counter = Arc::clone(&counter);
            thread::spawn(move || counter.close())
        };
        block_on(counter.wait());
        closer.join().unwrap();
    });
}

#[test]
fn loom_two_releases_to_zero_after_the_close_wake_the_waiter_once_done() {
    loom::model(|| {
        let counter = Arc::new(Counter::default());
        counter.acquire();
        counter.acquire();
        counter.close();
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let counter = Arc::clone(&counter);
                thread::spawn(move || counter.release())
            })
            .collect();
        block_on(counter.wait());
        assert_eq!(counter.len(), 0, "the wait ends only at zero");
        for releaser in releasers {
            releaser.join().unwrap();
        }
    });
}
