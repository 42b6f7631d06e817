//! `nettop list`: one snapshot of every connection, then exit.
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use nettop::sandbox::Allowed;
use nettop::tracer::Connection;

use super::escape;

pub struct Options {
    pub json: bool,
    /// Read twice, this far apart, for the TCP connections' health.
    pub interval: Option<Duration>,
}

pub fn run(config: nettop::Config, opts: Options, allowed: &Allowed) -> Result<ExitCode> {
    let json = opts.json;
    let (tracer, _) = super::start_tracer(config, allowed)?;
    if let Some(why) = &tracer.info().backfill_error {
        eprintln!("nettop: warning: {}", escape(why));
    }
    if let Some(interval) = opts.interval {
        // The first read is the base the second judges against.
        tracer.for_each_connection(|_| {});
        std::thread::sleep(interval);
    }
    let mut conns = tracer.connections();
    conns.sort_by_key(|c| (c.owner.pid, c.tuple.lport, c.tuple.rport));
    let stats = tracer.stats();
    tracer.stop();
    if json {
        println!("{}", serde_json::to_string(&conns)?);
        // The array is the contract; loss counters go beside it.
        eprintln!("{}", serde_json::json!({ "stats": stats }));
    } else {
        print_table(&conns);
        eprintln!(
            "{} connections; lost {} events, {} full-table drops{}",
            conns.len(),
            stats.events_lost + stats.events_dropped,
            stats.evicted(),
            stats.kprobe_missed.map(|m| format!(", {m} kprobe misses")).unwrap_or_default()
                + &stats
                    .prog_missed
                    .map(|m| format!(", {m} skipped program runs"))
                    .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(conns: &[Connection]) {
    println!(
        "{:<5} {:>7} {:<16} {:<45} {:<9} {:>12} {:>12}",
        "PROTO", "PID", "COMM", "LOCAL -> REMOTE", "DIR", "SENT", "RECV"
    );
    for c in conns {
        let tuple = format!("{} -> {}", c.tuple.local(), c.tuple.remote());
        let dir = match c.direction {
            nettop::tracer::Direction::Outgoing => "out",
            nettop::tracer::Direction::Incoming => "in",
            nettop::tracer::Direction::Unknown => "?",
        };
        println!(
            "{:<5} {:>7} {:<16} {:<45} {:<9} {:>12} {:>12}{}",
            format!("{:?}", c.tuple.proto).to_lowercase(),
            c.owner.pid,
            escape(&c.owner.comm),
            escape(&tuple),
            dir,
            c.bytes_sent,
            c.bytes_recv,
            if c.backfilled { "  (before start)" } else { "" }
        );
    }
}
