//! nettop: every TCP and UDP connection on a Linux host, per process, traced
//! with eBPF through a prebuilt probe that adapts to the running kernel by
//! guessing `struct sock` offsets at run time.
pub mod export;
pub mod filter;
pub mod helper;
pub mod names;
pub mod probe;
pub mod sandbox;
pub mod text;
pub mod tracer;
pub mod ui;
pub mod worker;

pub use filter::Filter;
pub use tracer::{Config, Connection, Event, EventKind, EventStream, Stats, Tracer};

/// What this binary is: its version, the commit it was built from, and the
/// SHA-256 of the probe object it embeds (`--version`, the ready line,
/// `/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    pub version: &'static str,
    pub commit: &'static str,
    pub probe_sha256: &'static str,
}

pub const PROVENANCE: Provenance = Provenance {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("NETTOP_COMMIT"),
    probe_sha256: env!("NETTOP_PROBE_SHA256"),
};

/// `nettop --version`'s text after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NETTOP_COMMIT"),
    ", probe sha256 ",
    env!("NETTOP_PROBE_SHA256"),
    ")"
);
