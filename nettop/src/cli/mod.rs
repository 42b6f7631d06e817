//! Subcommands' output. Everything printed that the host's users control
//! (process names, addresses, error text quoting them) goes through `escape`.
pub mod clients;
pub mod event_json;
pub mod list;
pub mod offsets;
pub mod serve;
pub mod trace;

pub use nettop::probe::kernel_release;
pub use nettop::text::escape;
