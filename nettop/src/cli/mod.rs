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

use anyhow::Result;
use nettop::sandbox::{Allowed, Protections};
use nettop::tracer::Tracer;

/// Start tracing, giving up what the running phase does not need once
/// start-up is done and before the tracer's threads exist
/// (`nettop::sandbox`). The notes say what could not be given up.
pub fn start_tracer(config: nettop::Config, allowed: &Allowed) -> Result<(Tracer, Protections)> {
    let prepared = Tracer::prepare(config)?;
    let mut allowed = allowed.clone();
    allowed.read_write.extend(prepared.kprobe_events());
    let protections = nettop::sandbox::confine(&allowed, &mut || prepared.can_read_maps());
    say_notes(&protections);
    let tracer = prepared.start()?;
    trim_free_memory();
    Ok((tracer, protections))
}

/// Each protection that is not in force, a line each on stderr.
pub fn say_notes(p: &Protections) {
    for n in &p.notes {
        eprintln!("nettop: note: {}", escape(n));
    }
    if !p.landlock.starts_with("enforced") {
        eprintln!("nettop: note: Landlock {}", escape(&p.landlock));
    }
}

/// Memory freed inside the allocator's heaps (a burst's event batches, freed
/// by another thread than made them) stays in RSS until trimmed: give it
/// back every few seconds. At 100 000 connections, after opening them, that
/// was 15 MB.
fn trim_free_memory() {
    #[cfg(target_env = "gnu")]
    let _ = std::thread::Builder::new().name("nettop-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            // SAFETY: malloc_trim only returns free pages to the system.
            unsafe { libc::malloc_trim(0) };
        }
    });
}
