//! Bytes per process and per remote peer since nettop started, kept after
//! their connections close and leave the table: what the process and peer
//! views rank. Bounded: past a cap, the oldest processes without an open
//! connection are folded into one "exited" row, the oldest idle peers into
//! "other peers".
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::view::Rows;

/// Processes, and peers, kept apart; past it, the oldest fold.
pub const MAX_PROCESSES: usize = 1000;
pub const MAX_PEERS: usize = 5000;
/// Distinct peers (of a process) or processes (of a peer) counted; past it
/// the count shows as at least this.
pub const MAX_DISTINCT: usize = 64;

/// One process's, or one peer's, account.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// The process's name, or the peer's address as text.
    pub label: Arc<str>,
    pub sent: u64,
    pub recv: u64,
    /// Connections seen since nettop started.
    pub connections: u64,
    /// The peers a process talked to, the processes a peer talked to.
    pub distinct: FxHashSet<Counterpart>,
    /// Monotonic ns of its last new connection or byte.
    pub last_ns: u64,
}

/// Who was at the other end of a tally's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counterpart {
    Peer(IpAddr),
    Process(u32),
}

impl Tally {
    fn new(label: Arc<str>) -> Tally {
        Tally { label, ..Tally::default() }
    }

    fn add(&mut self, sent: u64, recv: u64, first: bool, other: Option<Counterpart>, now_ns: u64) {
        self.sent += sent;
        self.recv += recv;
        self.last_ns = now_ns;
        if first {
            self.connections += 1;
            if let Some(o) = other.filter(|_| self.distinct.len() < MAX_DISTINCT) {
                self.distinct.insert(o);
            }
        }
    }

    fn fold(&mut self, other: Tally) {
        self.sent += other.sent;
        self.recv += other.recv;
        self.connections += other.connections;
        self.last_ns = self.last_ns.max(other.last_ns);
        for o in other.distinct {
            if self.distinct.len() >= MAX_DISTINCT {
                break;
            }
            self.distinct.insert(o);
        }
    }
}

#[derive(Default)]
pub struct Ledger {
    pub processes: FxHashMap<u32, Tally>,
    pub peers: FxHashMap<IpAddr, Tally>,
    /// Processes folded away: they had no open connection, and were the
    /// oldest when the cap was reached.
    pub exited: Tally,
    /// Peers folded away likewise.
    pub other_peers: Tally,
    /// The sizes after the last folding: folding again waits until a map
    /// has grown by a tenth of its cap (when every entry has an open
    /// connection, none can fold, and trying each refresh costs a walk).
    folded_at: (usize, usize),
}

impl Ledger {
    /// Take in a snapshot's rows: each connection's bytes since the last.
    pub fn take(&mut self, rows: &Rows, now_ns: u64) {
        for i in 0..rows.len() {
            let f = rows.figures(i);
            if f.sent_delta == 0 && f.recv_delta == 0 && !f.first {
                continue;
            }
            let c = &rows[i];
            let peer = c.tuple.raddr;
            self.processes
                .entry(f.pid)
                .or_insert_with(|| Tally::new(c.owner.comm.as_str().into()))
                .add(f.sent_delta, f.recv_delta, f.first, peer.map(Counterpart::Peer), now_ns);
            if let Some(ip) = peer {
                self.peers.entry(ip).or_insert_with(|| Tally::new(ip.to_string().into())).add(
                    f.sent_delta,
                    f.recv_delta,
                    f.first,
                    Some(Counterpart::Process(f.pid)),
                    now_ns,
                );
            }
        }
        let grown = |len: usize, at: usize, cap: usize| len > cap && len >= at.max(cap) + cap / 10;
        if grown(self.processes.len(), self.folded_at.0, MAX_PROCESSES)
            || grown(self.peers.len(), self.folded_at.1, MAX_PEERS)
        {
            self.bound(rows);
            self.folded_at = (self.processes.len(), self.peers.len());
        }
    }

    /// Fold the oldest processes without an open connection, and the
    /// oldest peers without one, until each map is back under its cap.
    fn bound(&mut self, rows: &Rows) {
        let mut open_pids = FxHashSet::default();
        let mut open_peers = FxHashSet::default();
        for i in 0..rows.len() {
            let f = rows.figures(i);
            if f.open {
                open_pids.insert(f.pid);
                if self.peers.len() > MAX_PEERS {
                    open_peers.extend(rows[i].tuple.raddr);
                }
            }
        }
        fold_oldest(&mut self.processes, &mut self.exited, MAX_PROCESSES, |pid| {
            open_pids.contains(pid)
        });
        fold_oldest(&mut self.peers, &mut self.other_peers, MAX_PEERS, |ip| {
            open_peers.contains(ip)
        });
    }
}

/// Fold the oldest entries `busy` does not hold into `into`, to 90 % of
/// `cap` (so that folding is not done again at the next refresh).
fn fold_oldest<K: Copy + Eq + std::hash::Hash>(
    map: &mut FxHashMap<K, Tally>,
    into: &mut Tally,
    cap: usize,
    busy: impl Fn(&K) -> bool,
) {
    if map.len() <= cap {
        return;
    }
    let mut idle: Vec<(u64, K)> =
        map.iter().filter(|(k, _)| !busy(k)).map(|(k, t)| (t.last_ns, *k)).collect();
    idle.sort_unstable_by_key(|&(last, _)| last);
    let excess = map.len() - cap * 9 / 10;
    for (_, k) in idle.into_iter().take(excess) {
        if let Some(t) = map.remove(&k) {
            into.fold(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracer::{Connection, Direction, Owner, Proto, State, Tuple};
    use crate::ui::view::RateState;

    const S: u64 = 1_000_000_000;

    fn conn(id: u64, pid: u32, peer: &str, sent: u64, recv: u64) -> Connection {
        Connection {
            id,
            tuple: Tuple {
                proto: Proto::Tcp,
                family: 4,
                laddr: "10.0.0.1".parse().unwrap(),
                lport: 40000 + id as u16,
                raddr: Some(peer.parse().unwrap()),
                rport: 443,
                netns: 1,
            },
            owner: Owner { pid, comm: format!("p{pid}"), ..Owner::default() }.into(),
            direction: Direction::Outgoing,
            state: State::Open,
            bytes_sent: sent,
            bytes_recv: recv,
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

    fn feed(ledger: &mut Ledger, rates: &mut RateState, t: u64, conns: Vec<Connection>) {
        let rows = rates.rows(conns, t * S, Vec::new());
        ledger.take(&rows, t * S);
    }

    /// A process's totals are its connections' bytes since nettop started:
    /// closed ones that have left the table included, an older one's bytes
    /// from before not.
    #[test]
    fn totals_keep_what_closed_connections_carried() {
        let (mut l, mut r) = (Ledger::default(), RateState::default());
        let mut old = conn(1, 7, "192.0.2.1", 5000, 5000);
        old.backfilled = true;
        feed(&mut l, &mut r, 1, vec![old.clone(), conn(2, 7, "192.0.2.2", 100, 10)]);
        let mut closing = conn(2, 7, "192.0.2.2", 300, 20);
        closing.state = State::Closed;
        old.bytes_sent = 5400;
        feed(&mut l, &mut r, 2, vec![old.clone(), closing, conn(3, 8, "192.0.2.2", 1, 2)]);
        // Connection 2 has left the table; 4 came and went between snapshots
        // but was seen once.
        feed(&mut l, &mut r, 3, vec![old.clone(), conn(4, 7, "192.0.2.3", 50, 0)]);
        feed(&mut l, &mut r, 4, vec![old.clone()]);
        let p7 = &l.processes[&7];
        assert_eq!((p7.sent, p7.recv), (400 + 300 + 50, 20), "{p7:?}");
        assert_eq!((p7.connections, p7.distinct.len()), (3, 3));
        assert_eq!((l.processes[&8].sent, l.processes[&8].recv), (1, 2));
        let peer2 = &l.peers[&"192.0.2.2".parse().unwrap()];
        assert_eq!((peer2.sent, peer2.connections, peer2.distinct.len()), (301, 2, 2));
    }

    /// Thousands of short-lived processes: the map stays bounded, the
    /// exited ones fold into one row with every byte kept, and a process
    /// with an open connection is never folded.
    #[test]
    fn short_lived_processes_fold_into_exited() {
        let (mut l, mut r) = (Ledger::default(), RateState::default());
        let long_lived = conn(1, 1, "192.0.2.1", 1, 0);
        let mut total = 1;
        for t in 0..5000u64 {
            let pid = 100 + t as u32;
            let c = conn(10 + t, pid, "192.0.2.9", 10, 0);
            total += 10;
            feed(&mut l, &mut r, t + 1, vec![long_lived.clone(), c]);
            assert!(
                l.processes.len() <= MAX_PROCESSES + MAX_PROCESSES / 10,
                "{}",
                l.processes.len()
            );
        }
        let kept: u64 = l.processes.values().map(|t| t.sent).sum();
        assert_eq!(kept + l.exited.sent, total, "no byte lost in folding");
        assert!(l.processes.contains_key(&1), "the process with an open connection stays");
        assert!(l.exited.connections >= 4000);
    }
}
