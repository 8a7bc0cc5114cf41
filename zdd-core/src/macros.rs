//! Crate-local macros: feature gates that also mark docs, and log macros that give every
//! event the `zdd` target.

/// Items that need the `tower` feature.
macro_rules! cfg_tower {
    ($($item:item)*) => {
        $(
            #[cfg(feature = "tower")]
            #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
            $item
        )*
    };
}

/// Items that need the `signal` feature, on Unix (signal-hook's iterator is Unix-only).
macro_rules! cfg_signal {
    ($($item:item)*) => {
        $(
            #[cfg(all(feature = "signal", unix))]
            #[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
            $item
        )*
    };
}

macro_rules! debug {
    ($($tt:tt)*) => {
        ::tracing::debug!(target: "zdd", $($tt)*)
    };
}

macro_rules! info {
    ($($tt:tt)*) => {
        ::tracing::info!(target: "zdd", $($tt)*)
    };
}

macro_rules! warn {
    ($($tt:tt)*) => {
        ::tracing::warn!(target: "zdd", $($tt)*)
    };
}

macro_rules! error {
    ($($tt:tt)*) => {
        ::tracing::error!(target: "zdd", $($tt)*)
    };
}
