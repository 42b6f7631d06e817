//! Embedding nettop: start a tracer, print lifecycle events for a few
//! seconds, then the busiest connections and the loss counters.
//!
//!     cargo build --example watch && sudo target/debug/examples/watch [SECONDS]
use std::time::Duration;

use nettop::{Config, Tracer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut tracer = Tracer::start(Config::default())?;
    println!("tracing on the {} backend", tracer.info().backend);
    let mut events = tracer.events().expect("the stream is taken once");
    let deadline = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            Some(ev) = events.next() => println!("{}", serde_json::to_string(&ev)?),
            _ = &mut deadline => break,
        }
    }
    let mut conns = tracer.connections();
    conns.sort_by_key(|c| std::cmp::Reverse(c.bytes_sent + c.bytes_recv));
    for c in conns.iter().take(10) {
        println!(
            "{:>7} {:<16} {} -> {}  sent {} recv {}",
            c.owner.pid,
            c.owner.comm.escape_debug(),
            c.tuple.local(),
            c.tuple.remote(),
            c.bytes_sent,
            c.bytes_recv
        );
    }
    println!("{:?}", tracer.stats());
    tracer.stop(); // probes detach here (and on drop, and on every error path)
    Ok(())
}
