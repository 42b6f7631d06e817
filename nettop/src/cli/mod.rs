//! Subcommands' output. Everything printed that the host's users control
//! (process names, addresses, error text quoting them) goes through `escape`.
pub mod event_json;
pub mod list;
pub mod offsets;
pub mod serve;
pub mod trace;

pub use nettop::text::escape;

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}
