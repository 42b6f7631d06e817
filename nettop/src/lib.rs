//! nettop: every TCP and UDP connection on a Linux host, per process, traced
//! with eBPF through a prebuilt probe that adapts to the running kernel by
//! guessing `struct sock` offsets at run time.
pub mod export;
pub mod filter;
pub mod probe;
pub mod text;
pub mod tracer;
pub mod ui;
pub mod worker;

pub use filter::Filter;
pub use tracer::{Config, Connection, Event, EventKind, EventStream, Stats, Tracer};
