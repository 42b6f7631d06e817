//! `nettop trace`: stream lifecycle events until interrupted.
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use nettop::sandbox::Allowed;
use nettop::tracer::{Event, EventKind};
use tokio::signal::unix::{SignalKind, signal};

use super::escape;
use super::event_json::EventWriter;

pub fn run(config: nettop::Config, json: bool, allowed: &Allowed) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(stream(config, json, allowed))
}

async fn stream(config: nettop::Config, json: bool, allowed: &Allowed) -> Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let (mut tracer, protections) = super::start_tracer(config, allowed)?;
    let mut events = tracer.events().expect("first call");
    let info = tracer.info().clone();
    if let Some(why) = &info.backfill_error {
        eprintln!("nettop: warning: {}", escape(why));
    }
    if json {
        let mut ready = serde_json::to_value(&info)?;
        ready["event"] = "ready".into();
        ready["protections"] = serde_json::to_value(&protections)?;
        println!("{ready}");
    } else {
        eprintln!(
            "nettop: tracing on the {} backend (offsets {}); Ctrl-C to stop",
            info.backend, info.offsets
        );
        println!(
            "{:<14} {:<14} {:>7} {:<16} {:<5} {:<45} {:>10} {:>10}",
            "TIME(s)", "EVENT", "PID", "COMM", "PROTO", "LOCAL -> REMOTE", "SENT", "RECV"
        );
    }
    // One write per batch, not per event: the lines go out as soon as no
    // further event is waiting.
    let mut stdout = std::io::stdout().lock();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut writer = EventWriter::default();
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => {
                    print_event(&mut buf, &mut writer, &ev, json)?;
                    while let Some(ev) = events.try_next() {
                        print_event(&mut buf, &mut writer, &ev, json)?;
                    }
                    stdout.write_all(&buf).and_then(|()| stdout.flush()).context("write to stdout")?;
                    buf.clear();
                }
                None => break,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(stdout);
    let stats = tracer.stats();
    tracer.stop();
    if json {
        println!("{}", serde_json::json!({ "event": "stats", "stats": stats }));
    } else {
        eprintln!("nettop: {}", serde_json::to_string(&stats)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(out: &mut Vec<u8>, writer: &mut EventWriter, ev: &Event, json: bool) -> Result<()> {
    if json {
        // serde_json escapes control characters in strings.
        writer.write(out, ev)?;
        out.push(b'\n');
        return Ok(());
    }
    let kind = serde_json::to_value(ev.event)?.as_str().unwrap_or("?").to_owned();
    let time = format!("{:.6}", ev.ts_ns as f64 / 1e9);
    match (&ev.conn, ev.event) {
        (Some(c), _) => {
            let tuple = format!("{} -> {}", c.tuple.local(), c.tuple.remote());
            let bytes = |b: Option<u64>| b.map_or_else(String::new, |b| b.to_string());
            let extra = ev.errno.map(|e| format!(" errno {e}")).unwrap_or_default();
            writeln!(
                out,
                "{time:<14} {kind:<14} {:>7} {:<16} {:<5} {:<45} {:>10} {:>10}{extra}",
                c.owner.pid,
                escape(&c.owner.comm),
                format!("{:?}", c.tuple.proto).to_lowercase(),
                escape(&tuple),
                bytes(ev.bytes_sent),
                bytes(ev.bytes_recv),
            )?;
        }
        (None, EventKind::Lost) => {
            writeln!(out, "{time:<14} lost           {} events", ev.lost.unwrap_or(0))?
        }
        (None, _) => {}
    }
    Ok(())
}
