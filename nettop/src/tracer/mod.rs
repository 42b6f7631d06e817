//! The tracer: turns the probe's maps and events into a table of
//! connections with owners, and a stream of lifecycle events. It knows
//! nothing of any UI.
pub mod attribution;
pub mod backfill;
