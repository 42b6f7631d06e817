//! The events the TUI keeps: the latest in one ring, which the events pane
//! shows and the details pane searches for a connection's timeline. An event
//! leaving the ring is kept apart only if its connection is in the latest
//! snapshot, so a long-lived connection keeps its connect or accept as long
//! as the ring outlasts one refresh interval: hours on a quiet host, but
//! under heavy churn (the ring turns over in a fraction of a second) a new
//! connection's first events can be gone before a snapshot lists it. In
//! exchange, under churn nearly every event costs no more than its place in
//! the ring: a hash entry and a queue per connection, for every event, had
//! been the TUI's largest cost. The ring keeps the feed's batches whole.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::tracer::Event;

/// Events in the ring: seconds of the heaviest churn, hours of a quiet host.
pub const RECENT: usize = 8192;
/// The most events one connection's timeline shows (the newest).
pub const TIMELINE: usize = 64;

#[derive(Default)]
pub struct History {
    /// The ring: batches as the feed sent them, oldest first, so that an
    /// event costs no move of its own on the way in. The first
    /// `front_left` events of the front batch have left the ring; the batch
    /// goes once all have.
    batches: VecDeque<Vec<Event>>,
    front_left: usize,
    len: usize,
    /// Events that left the ring while their connection was listed.
    older: FxHashMap<u64, VecDeque<Event>>,
}

fn id_of(ev: &Event) -> u64 {
    ev.conn.as_ref().and_then(|c| c.id).unwrap_or(0)
}

impl History {
    /// Keep `ev`; `listed` says whether a connection is still shown, for
    /// the event this pushes out of the ring.
    pub fn push(&mut self, ev: Event, listed: impl Fn(u64) -> bool) {
        self.push_batch(vec![ev], listed);
    }

    /// Keep a batch of events, in order.
    pub fn push_batch(&mut self, batch: Vec<Event>, listed: impl Fn(u64) -> bool) {
        if batch.is_empty() {
            return;
        }
        self.len += batch.len();
        self.batches.push_back(batch);
        while self.len > RECENT {
            let Some(front) = self.batches.front() else { break };
            let old = &front[self.front_left];
            let id = id_of(old);
            if id != 0 && listed(id) {
                let t = self.older.entry(id).or_default();
                if t.len() == TIMELINE {
                    t.pop_front();
                }
                t.push_back(old.clone());
            }
            self.front_left += 1;
            self.len -= 1;
            if self.front_left == front.len() {
                self.batches.pop_front();
                self.front_left = 0;
            }
        }
    }

    /// The ring, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &Event> {
        let skip = self.front_left;
        self.batches.iter().enumerate().flat_map(move |(i, b)| &b[if i == 0 { skip } else { 0 }..])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Connection `id`'s events, oldest first, at most TIMELINE.
    pub fn timeline(&self, id: u64) -> Vec<&Event> {
        let mut t: Vec<&Event> = self.older.get(&id).into_iter().flatten().collect();
        t.extend(self.recent().filter(|e| id_of(e) == id));
        let excess = t.len().saturating_sub(TIMELINE);
        t.drain(..excess);
        t
    }

    /// Forget the kept-apart events of connections no longer shown.
    pub fn prune(&mut self, listed: impl Fn(u64) -> bool) {
        self.older.retain(|id, _| listed(*id));
    }

    /// How many connections have events kept apart (for tests).
    #[cfg(test)]
    pub fn kept_apart(&self) -> usize {
        self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracer::{EventConn, EventKind};
    use nettop_shared::ConnKey;

    fn ev(id: u64, ts_ns: u64) -> Event {
        Event {
            event: EventKind::Retransmit,
            ts_ns,
            conn: Some(EventConn::new(Some(id), &ConnKey::default(), 1, std::sync::Arc::default())),
            bytes_sent: None,
            bytes_recv: None,
            errno: None,
            lost: None,
            vanished: false,
            row: None,
        }
    }

    #[test]
    fn a_listed_connection_keeps_its_newest_events_in_order_past_the_ring() {
        let mut h = History::default();
        // Connection 1 is listed, 2 is not; 2's events fill the ring.
        for ts in 0..100 {
            h.push(ev(1, ts), |id| id == 1);
        }
        for ts in 100..100 + RECENT as u64 {
            h.push(ev(2, ts), |id| id == 1);
        }
        assert_eq!(h.len(), RECENT);
        let t: Vec<u64> = h.timeline(1).iter().map(|e| e.ts_ns).collect();
        assert_eq!(t, (100 - TIMELINE as u64..100).collect::<Vec<_>>());
        // Newer ones in the ring follow the kept-apart ones.
        h.push(ev(1, 1_000_000), |id| id == 1);
        let t: Vec<u64> = h.timeline(1).iter().map(|e| e.ts_ns).collect();
        assert_eq!(t.len(), TIMELINE);
        assert_eq!(t[TIMELINE - 2..], [99, 1_000_000]);
        assert_eq!(h.timeline(2).len(), TIMELINE, "the ring's, newest");
        h.prune(|_| false);
        assert_eq!(h.timeline(1).len(), 1, "only what the ring holds");
    }
}
