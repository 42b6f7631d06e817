//! The agent contract of `GET /connections?client_id=ID`, as DataDog's
//! network-tracer offered it: each reply carries, once, what changed since
//! that client's previous reply, including connections that opened and
//! closed in between, with their final totals. Delivery is at most once:
//! what a reply carried is not sent again, whether or not it arrived.
//! Values are totals, not deltas. Memory is bounded: at most `max_clients`
//! clients, at most `buffer` closed connections kept per client (the oldest
//! go first, counted), and a client unseen for `forget_after` is forgotten.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nettop::tracer::{Connection, State};
use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    pub max_clients: usize,
    /// Closed connections kept for one client between its polls.
    pub buffer: usize,
    pub forget_after: Duration,
}

pub struct Clients {
    limits: ClientLimits,
    by_id: HashMap<String, Client>,
    totals: ClientTotals,
}

/// For `/status`: what the bounds cost, since start.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ClientTotals {
    /// Closed connections a client's buffer had no room for.
    pub dropped: u64,
    /// Clients forgotten after `--client-timeout` without a poll.
    pub forgotten: u64,
    /// Polls refused because `--max-clients` clients were known.
    pub refused: u64,
}

struct Client {
    last_seen: Instant,
    closed: VecDeque<Arc<Connection>>,
    /// Closed connections dropped since the last reply.
    dropped: u64,
    /// What the client was last told of each connection it may hear of
    /// again: an open one's totals, or that it closed.
    told: HashMap<u64, Told>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Told {
    Open { sent: u64, recv: u64 },
    Closed,
}

/// One reply: the rows, and how many closed connections the bound dropped
/// since the previous reply.
#[derive(Serialize)]
pub struct Reply {
    pub client_id: String,
    /// The first reply to this id (or the first since it was forgotten):
    /// every connection there is.
    pub first: bool,
    pub dropped: u64,
    pub connections: Vec<Arc<Connection>>,
}

/// Why a poll was not answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("client_id must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadId,
    #[error("too many clients ({0}, --max-clients)")]
    TooMany(usize),
}

impl Clients {
    pub fn new(limits: ClientLimits) -> Clients {
        Clients { limits, by_id: HashMap::default(), totals: ClientTotals::default() }
    }

    pub fn limits(&self) -> ClientLimits {
        self.limits
    }

    pub fn totals(&self) -> ClientTotals {
        self.totals
    }

    pub fn count(&self) -> usize {
        self.by_id.len()
    }

    /// A connection closed: every known client hears of it at its next poll.
    pub fn closed(&mut self, row: &Arc<Connection>) {
        let limits = self.limits;
        for c in self.by_id.values_mut() {
            if c.closed.len() >= limits.buffer {
                c.closed.pop_front();
                c.dropped += 1;
                self.totals.dropped += 1;
            }
            if limits.buffer > 0 {
                c.closed.push_back(row.clone());
            } else {
                c.dropped += 1;
                self.totals.dropped += 1;
            }
        }
    }

    /// Forget clients unseen for too long.
    pub fn expire(&mut self, now: Instant) {
        let limits = self.limits;
        let before = self.by_id.len();
        self.by_id.retain(|_, c| now.duration_since(c.last_seen) < limits.forget_after);
        self.totals.forgotten += (before - self.by_id.len()) as u64;
    }

    /// The reply to a poll by `id`; `current` is every connection now, as
    /// `Tracer::connections()` lists it (taken before this call).
    pub fn poll(
        &mut self,
        id: &str,
        now: Instant,
        current: Vec<Connection>,
    ) -> Result<Reply, Refused> {
        let limits = self.limits;
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if id.is_empty() || id.len() > 64 || !id.bytes().all(valid) {
            return Err(Refused::BadId);
        }
        self.expire(now);
        let first = !self.by_id.contains_key(id);
        if first && self.by_id.len() >= limits.max_clients {
            self.totals.refused += 1;
            return Err(Refused::TooMany(limits.max_clients));
        }
        let c = self.by_id.entry(id.to_owned()).or_insert_with(|| Client {
            last_seen: now,
            closed: VecDeque::new(),
            dropped: 0,
            told: HashMap::default(),
        });
        c.last_seen = now;
        let mut rows = Vec::new();
        for row in c.closed.drain(..) {
            if c.told.insert(row.id, Told::Closed) != Some(Told::Closed) {
                rows.push(row);
            }
        }
        let mut still = HashMap::default();
        for conn in current {
            let id = conn.id;
            let now_told = match conn.state {
                State::Closed => Told::Closed,
                State::Open => Told::Open { sent: conn.bytes_sent, recv: conn.bytes_recv },
            };
            // A close is final: the listing, taken before the buffer was
            // drained, may still show a connection the buffer said closed.
            let told = match c.told.get(&id) {
                Some(Told::Closed) => Told::Closed,
                Some(t) if *t == now_told => now_told,
                _ => {
                    rows.push(Arc::new(conn));
                    now_told
                }
            };
            still.insert(id, told);
        }
        // Only what may be listed again needs remembering.
        c.told = still;
        let dropped = std::mem::take(&mut c.dropped);
        Ok(Reply { client_id: id.to_owned(), first, dropped, connections: rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nettop::tracer::{Direction, Owner, Proto, Tuple};

    fn conn(id: u64, state: State, sent: u64) -> Connection {
        Connection {
            id,
            tuple: Tuple {
                proto: Proto::Tcp,
                family: 4,
                laddr: "127.0.0.1".parse().unwrap(),
                lport: id as u16,
                raddr: Some("127.0.0.1".parse().unwrap()),
                rport: 80,
                netns: 1,
            },
            owner: Arc::new(Owner::default()),
            direction: Direction::Outgoing,
            state,
            bytes_sent: sent,
            bytes_recv: 0,
            msgs_sent: 0,
            msgs_recv: 0,
            retransmits: 0,
            backfilled: false,
            counted_since_start: false,
            vanished: false,
            tcp: None,
            health: None,
            first_ns: 0,
            last_ns: 0,
        }
    }

    fn limits(buffer: usize) -> ClientLimits {
        ClientLimits { max_clients: 2, buffer, forget_after: Duration::from_secs(60) }
    }

    fn ids(r: &Reply) -> Vec<(u64, State, u64)> {
        r.connections.iter().map(|c| (c.id, c.state, c.bytes_sent)).collect()
    }

    #[test]
    fn each_change_is_told_once() {
        let mut cl = Clients::new(limits(10));
        let t = Instant::now();
        let r = cl.poll("a", t, vec![conn(1, State::Open, 5)]).unwrap();
        assert!(r.first);
        assert_eq!(ids(&r), [(1, State::Open, 5)]);
        // Nothing moved: nothing to tell.
        assert!(cl.poll("a", t, vec![conn(1, State::Open, 5)]).unwrap().connections.is_empty());
        // 1 moved; 2 opened and closed between polls; 3 closed and still lingers.
        cl.closed(&Arc::new(conn(2, State::Closed, 7)));
        cl.closed(&Arc::new(conn(3, State::Closed, 9)));
        let r = cl.poll("a", t, vec![conn(1, State::Open, 6), conn(3, State::Closed, 9)]).unwrap();
        assert!(!r.first);
        assert_eq!(ids(&r), [(2, State::Closed, 7), (3, State::Closed, 9), (1, State::Open, 6)]);
        // 3 still lingers, 1 closes: only 1 is news.
        cl.closed(&Arc::new(conn(1, State::Closed, 8)));
        let r =
            cl.poll("a", t, vec![conn(1, State::Closed, 8), conn(3, State::Closed, 9)]).unwrap();
        assert_eq!(ids(&r), [(1, State::Closed, 8)]);
        assert!(cl.poll("a", t, vec![conn(3, State::Closed, 9)]).unwrap().connections.is_empty());
    }

    #[test]
    fn a_close_is_final_though_the_listing_still_shows_it_open() {
        let mut cl = Clients::new(limits(10));
        let t = Instant::now();
        cl.poll("a", t, vec![conn(5, State::Open, 1)]).unwrap();
        // Listed open, then its close reached the buffer before the poll
        // drained it.
        cl.closed(&Arc::new(conn(5, State::Closed, 2)));
        let r = cl.poll("a", t, vec![conn(5, State::Open, 2)]).unwrap();
        assert_eq!(ids(&r), [(5, State::Closed, 2)]);
        assert!(cl.poll("a", t, vec![conn(5, State::Closed, 2)]).unwrap().connections.is_empty());
    }

    #[test]
    fn a_close_listed_before_its_event_arrives_is_told_once() {
        let mut cl = Clients::new(limits(10));
        let t = Instant::now();
        let r = cl.poll("a", t, vec![conn(4, State::Closed, 3)]).unwrap();
        assert_eq!(ids(&r), [(4, State::Closed, 3)]);
        cl.closed(&Arc::new(conn(4, State::Closed, 3)));
        assert!(cl.poll("a", t, vec![]).unwrap().connections.is_empty());
    }

    #[test]
    fn bounds_drop_the_oldest_and_say_so() {
        let mut cl = Clients::new(limits(2));
        let t = Instant::now();
        cl.poll("a", t, vec![]).unwrap();
        cl.poll("b", t, vec![]).unwrap();
        assert_eq!(cl.poll("c", t, vec![]).err(), Some(Refused::TooMany(2)));
        for id in 10..15 {
            cl.closed(&Arc::new(conn(id, State::Closed, 1)));
        }
        let r = cl.poll("a", t, vec![]).unwrap();
        assert_eq!(r.dropped, 3);
        assert_eq!(ids(&r), [(13, State::Closed, 1), (14, State::Closed, 1)]);
        assert_eq!(cl.poll("a", t, vec![]).unwrap().dropped, 0, "counted once");
        assert_eq!(cl.totals().dropped, 6, "three for each of a and b");
        assert_eq!(cl.totals().refused, 1);
        // b, unseen past the timeout, is forgotten; a new id may then come.
        let later = t + Duration::from_secs(61);
        assert!(cl.poll("c", later, vec![]).unwrap().first);
        assert_eq!(cl.totals().forgotten, 2);
        assert_eq!(cl.poll("a b", t, vec![]).err(), Some(Refused::BadId));
        assert_eq!(cl.poll("", t, vec![]).err(), Some(Refused::BadId));
    }
}
