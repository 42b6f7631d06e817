//! The events between the reader thread and their consumer. They cross in
//! batches, one per drain of the ring buffer: a channel operation per event
//! cost more than many events' handling under churn. The queue is bounded by
//! the events in it, not by batches, which hold one event or tens of
//! thousands: a consumer that falls behind loses events (counted in
//! `events_dropped`) after the same number at any rate.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::Event;

/// A queue holding at most `limit` events; what does not fit is counted in
/// `dropped`.
pub fn queue(limit: usize, dropped: Arc<AtomicU64>) -> (Sender, EventStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let stream = EventStream { rx, batch: Vec::new().into_iter(), queued: queued.clone() };
    (Sender { tx, queued, limit, dropped }, stream)
}

pub struct Sender {
    tx: mpsc::UnboundedSender<Vec<Event>>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    /// Queue `batch` whole, or count it dropped; true if queued.
    pub fn send(&self, batch: Vec<Event>) -> bool {
        let n = batch.len() as u64;
        let queued = self.try_send(batch);
        if !queued {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
        queued
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queue `batch` whole if it fits, counting nothing if not (for a
    /// report its maker will make again); true if queued.
    pub fn try_send(&self, batch: Vec<Event>) -> bool {
        let n = batch.len();
        if n == 0 {
            return true;
        }
        // Only this sender adds, so the room seen here cannot shrink
        // before the add.
        if self.queued.load(Ordering::Acquire) + n > self.limit {
            return false;
        }
        self.queued.fetch_add(n, Ordering::AcqRel);
        if self.tx.send(batch).is_err() {
            // Nobody will take them: the stream is gone.
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// The lifecycle events, in order; `next` waits for one.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Vec<Event>>,
    batch: std::vec::IntoIter<Event>,
    queued: Arc<AtomicUsize>,
}

impl EventStream {
    /// A batch taken off the queue makes room for as many.
    fn took(&self, batch: Vec<Event>) -> Vec<Event> {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        batch
    }

    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            let b = self.rx.recv().await?;
            self.batch = self.took(b).into_iter();
        }
    }

    /// For callers outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            let b = self.rx.blocking_recv()?;
            self.batch = self.took(b).into_iter();
        }
    }

    /// The events waiting, as they came (a batch or what is left of one);
    /// never blocks. For consumers that pass events on in bulk.
    pub fn try_next_batch(&mut self) -> Option<Vec<Event>> {
        if self.batch.len() > 0 {
            return Some(std::mem::take(&mut self.batch).collect());
        }
        let b = self.rx.try_recv().ok()?;
        Some(self.took(b))
    }

    /// The next event if one is waiting; never blocks (for UI loops).
    pub fn try_next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            let b = self.rx.try_recv().ok()?;
            self.batch = self.took(b).into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracer::EventKind;

    fn events(n: usize) -> Vec<Event> {
        let ev = Event {
            event: EventKind::Lost,
            ts_ns: 0,
            conn: None,
            bytes_sent: None,
            bytes_recv: None,
            errno: None,
            lost: Some(1),
            vanished: false,
            row: None,
        };
        vec![ev; n]
    }

    #[test]
    fn bounded_by_events_not_batches() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = queue(10, dropped.clone());
        assert!(tx.send(events(6)));
        assert!(!tx.send(events(5)), "6 + 5 > 10");
        assert_eq!(dropped.load(Ordering::Relaxed), 5);
        assert!(tx.send(events(4)));
        // Taking a batch makes its room again.
        assert_eq!(rx.try_next_batch().map(|b| b.len()), Some(6));
        assert!(tx.send(events(6)), "4 + 6 fit");
        assert!(!tx.send(events(1)));
        // So does taking one event at a time, a batch at a time.
        assert!(rx.try_next().is_some());
        assert!(tx.send(events(4)), "the first batch of 4 is out");
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        // Full again: try_send refuses without counting.
        assert!(!tx.try_send(events(1)));
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        assert!(tx.send(Vec::new()), "nothing to queue");
        drop(rx);
        assert!(!tx.send(events(1)), "no consumer");
    }
}
