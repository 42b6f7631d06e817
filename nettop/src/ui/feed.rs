//! The tracer's side of the TUI: a thread that owns the `Tracer`, takes a
//! snapshot every interval and forwards events, so the UI never waits on it.
//! Stopping the feed drops the tracer, which detaches the probes. Each
//! update also writes a byte to `wake`, which the UI sleeps on.
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::app::Snapshot;
use crate::tracer::{Event, Tracer};
use crate::worker::Worker;

pub enum Update {
    Snapshot(Snapshot),
    Events(Vec<Event>),
}

pub struct Feed {
    pub rx: Receiver<Update>,
    /// Readable once an update is waiting.
    wake: UnixStream,
    worker: Worker,
}

const FEED_TICK: Duration = Duration::from_millis(50);

impl Feed {
    pub fn start(mut tracer: Tracer, interval: Duration) -> Result<Feed> {
        let (tx, rx) = sync_channel(256);
        let (wake, mut bell) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        bell.set_nonblocking(true)?;
        let mut events = tracer.events();
        let worker = Worker::spawn("nettop-feed", move |stop| {
            let mut dropped = 0;
            let mut next = Instant::now();
            while !stop.is_set() {
                // The tracer's batches, one update per tick: the first taken
                // whole, any others appended to it.
                let mut batch: Option<Vec<Event>> = None;
                while let Some(mut b) = events.as_mut().and_then(|s| s.try_next_batch()) {
                    match &mut batch {
                        Some(all) => all.append(&mut b),
                        None => batch = Some(b),
                    }
                }
                if let Some(batch) = batch {
                    let n = batch.len() as u64;
                    match tx.try_send(Update::Events(batch)) {
                        // A full socket already wakes the UI.
                        Ok(()) => drop(bell.write(&[1])),
                        Err(TrySendError::Full(_)) => dropped += n,
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
                if Instant::now() >= next {
                    next += interval;
                    let mut stats = tracer.stats();
                    stats.events_dropped += dropped;
                    let snap = Snapshot {
                        now_ns: crate::tracer::monotonic_ns(),
                        conns: tracer.connections(),
                        stats,
                    };
                    match tx.try_send(Update::Snapshot(snap)) {
                        Ok(()) => drop(bell.write(&[1])),
                        Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
                std::thread::sleep(FEED_TICK);
            }
            tracer.stop();
        })?;
        Ok(Feed { rx, wake, worker })
    }

    /// What the UI waits on for updates.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Empty the wake socket before taking the updates it announced.
    pub fn woken(&self) {
        let mut drain = [0u8; 256];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
    }

    /// Stop and wait: once this returns, the probes are detached.
    pub fn stop(self) {
        self.worker.stop();
    }
}
