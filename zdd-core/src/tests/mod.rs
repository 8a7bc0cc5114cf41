//! Models of zdd's own synchronisation (the drain's counter, the phase waiter's fast path),
//! run under loom: `RUSTFLAGS="--cfg zdd_loom"
//! cargo test -p zdd-core --lib --release loom_` (`.ci/run` does, in a target directory of
//! its own).

mod loom_counter;
mod loom_reached;
