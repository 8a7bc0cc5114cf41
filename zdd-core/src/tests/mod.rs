//! Models of zdd's own synchronisation, run under loom: `RUSTFLAGS="--cfg zdd_loom"
//! cargo test -p zdd-core --lib --release loom_` (`.ci/run` does, in a target directory of
//! its own).

mod loom_counter;
