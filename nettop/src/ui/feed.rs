//! The tracer's side of the TUI: a thread that owns the `Tracer`, takes a
//! snapshot every interval and forwards events, so the UI never waits on it.
//! Stopping the feed drops the tracer, which detaches the probes.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::app::Snapshot;
use crate::tracer::{Event, Tracer};

pub enum Update {
    Snapshot(Snapshot),
    Events(Vec<Event>),
}

pub struct Feed {
    pub rx: Receiver<Update>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(50);
const BATCH: usize = 4096;

impl Feed {
    pub fn start(mut tracer: Tracer, interval: Duration) -> Result<Feed> {
        let (tx, rx) = sync_channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let events = tracer.events();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("nettop-feed".into())
                .spawn(move || {
                    let mut events = events;
                    let dropped = AtomicU64::new(0);
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let mut batch = Vec::new();
                        while let Some(e) = events.as_mut().and_then(|s| s.try_next()) {
                            batch.push(e);
                            if batch.len() == BATCH {
                                break;
                            }
                        }
                        if !batch.is_empty() {
                            let n = batch.len() as u64;
                            if let Err(TrySendError::Full(_)) = tx.try_send(Update::Events(batch)) {
                                dropped.fetch_add(n, Ordering::Relaxed);
                            }
                        }
                        if Instant::now() >= next {
                            next += interval;
                            let mut stats = tracer.stats();
                            stats.events_dropped += dropped.load(Ordering::Relaxed);
                            let snap = Snapshot {
                                now_ns: crate::tracer::monotonic_ns(),
                                conns: tracer.connections(),
                                stats,
                            };
                            if let Err(TrySendError::Disconnected(_)) =
                                tx.try_send(Update::Snapshot(snap))
                            {
                                break;
                            }
                        }
                        std::thread::sleep(TICK);
                    }
                    tracer.stop();
                })
                .context("spawn the tracer feed thread")?
        };
        Ok(Feed { rx, stop, thread: Some(thread) })
    }

    /// Stop and wait: once this returns, the probes are detached.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.halt();
    }
}
