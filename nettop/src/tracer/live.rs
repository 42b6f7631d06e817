//! Live TCP totals: each tracked TCP connection's counters and health, read
//! from the kernel's own `tcp_info` through `sock_diag`, in every network
//! namespace that holds one. No program runs per TCP packet for them, and
//! every data path (sendfile, splice, kTLS...) moves these counters.
//!
//! A read is three steps, so that the slow one holds no lock the reader of
//! events needs for long: `plan` (under the table's lock: which
//! namespaces, and the newest connection so far), `dump` (sock_diag,
//! holding this module's own lock, and the table's only while it takes in
//! each reply of a hundred or so sockets), then `Table::read_applied`.
//!
//! Listings read with the counters. The reader, which ends connections the
//! kernel no longer has, uses the latest listing's read, and dumps only
//! when none came for a while, and then without the counters.
use anyhow::Result;
use nettop_shared::{ConnKey, IPPROTO_TCP};
use rustc_hash::FxHashMap;

use super::backfill::key_of;
use super::conntrack::{ReadMark, Table, slot};
use super::sock_diag::{CONNECTED_STATES, Detail, LOOKUPS_AT_MOST, Namespaces, SocketEntry};

/// How long a listing waits for the reader to take in the closes of the
/// connections a lookup missed, before dumping to find them.
const MISS_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

pub(super) struct Live {
    pub namespaces: Namespaces,
    generation: u32,
    /// Connections a lookup did not find in the last read. An exact lookup
    /// names no interface, so it misses a socket bound to one (IPv6
    /// link-local, VRF, SO_BINDTODEVICE) as surely as a closed one: a miss
    /// the table cannot explain by a close is looked for in a dump of its
    /// namespace before anything concludes it is gone. (Under churn a miss
    /// is nearly always a close whose event is on its way.)
    missed: rustc_hash::FxHashSet<ConnKey>,
}

/// What a read will cover: each namespace holding a TCP connection, with a
/// few of its owners (one of them is the way in), and the newest
/// connection's id when it was planned.
pub(super) struct Plan {
    wanted: FxHashMap<u32, Vec<u32>>,
    /// Each namespace's connections, where there are few enough to look
    /// up one by one.
    lookups: Option<FxHashMap<u32, Vec<ConnKey>>>,
    last_id: u64,
}

/// One reply's worth of a read, to take into the table.
pub(super) struct Batch<'a> {
    detail: Detail,
    generation: u32,
    sockets: &'a [SocketEntry],
}

pub(super) fn plan(table: &Table) -> Plan {
    let mut wanted: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    let mut lookups: Option<FxHashMap<u32, Vec<ConnKey>>> = Some(FxHashMap::default());
    let mut count = 0;
    for e in table.open_entries().filter(|e| e.key.proto == IPPROTO_TCP) {
        let pids = wanted.entry(e.key.netns).or_default();
        if pids.len() < 4 && e.key.tgid != 0 && !pids.contains(&e.key.tgid) {
            pids.push(e.key.tgid);
        }
        count += 1;
        if count > LOOKUPS_AT_MOST {
            lookups = None;
        }
        if let Some(l) = &mut lookups {
            l.entry(e.key.netns).or_default().push(e.key);
        }
    }
    Plan { wanted, lookups, last_id: table.last_id() }
}

impl Live {
    pub fn new() -> Result<Live> {
        Ok(Live { namespaces: Namespaces::new()?, generation: 0, missed: Default::default() })
    }

    /// Read the connected TCP sockets of every namespace `plan` names,
    /// handing them to `take` reply by reply. The mark to give
    /// `Table::read_applied` once the batches are in. `still_open` (for
    /// listings, while the reader takes in events) says whether the table
    /// still has a connection open; without it a connection a lookup
    /// misses twice running is looked for in a dump.
    pub fn dump(
        &mut self,
        plan: Plan,
        detail: Detail,
        still_open: Option<&dyn Fn(&ConnKey) -> bool>,
        mut take: impl FnMut(Batch),
    ) -> ReadMark {
        self.generation = self.generation.wrapping_add(1).max(1);
        let generation = self.generation;
        let mut netns = Vec::with_capacity(plan.wanted.len());
        let mut next_missed = rustc_hash::FxHashSet::default();
        for (ns, pids) in &plan.wanted {
            let Some(sock) = self.namespaces.open(*ns, pids.iter().copied()) else {
                continue;
            };
            // A namespace whose dump failed part way is left out of the
            // mark: what it did not list is not thereby gone.
            let mut each = |sockets: &[SocketEntry]| take(Batch { detail, generation, sockets });
            let read = match plan.lookups.as_ref().and_then(|l| l.get(ns)) {
                Some(keys) => {
                    let mut found = rustc_hash::FxHashSet::default();
                    let looked = sock.lookup_tcp(keys, CONNECTED_STATES, detail, |sockets| {
                        found.extend(sockets.iter().map(|s| slot(&key_of(s))));
                        each(sockets)
                    });
                    let missed: Vec<ConnKey> =
                        keys.iter().map(slot).filter(|k| !found.contains(k)).collect();
                    let unexplained = !missed.is_empty()
                        && match still_open {
                            // A close on its way is taken in by the reader
                            // within moments: what is still open after that
                            // the lookup itself missed, and a listing must
                            // show its counters now.
                            Some(still_open) => {
                                std::thread::sleep(MISS_GRACE);
                                missed.iter().any(still_open)
                            }
                            None => missed.iter().any(|k| self.missed.contains(k)),
                        };
                    let looked = if looked.is_ok() && unexplained {
                        sock.stream_tcp(CONNECTED_STATES, detail, |sockets| {
                            found.extend(sockets.iter().map(|s| slot(&key_of(s))));
                            each(sockets)
                        })
                    } else {
                        looked
                    };
                    next_missed.extend(missed.into_iter().filter(|k| !found.contains(k)));
                    looked
                }
                None => sock.stream_tcp(CONNECTED_STATES, detail, each),
            };
            if read.is_ok() {
                netns.push(*ns);
            }
        }
        self.missed = next_missed;
        self.namespaces.retain(|ns| plan.wanted.contains_key(&ns));
        ReadMark { generation, netns, last_id: plan.last_id, at_ns: super::monotonic_ns() }
    }
}

impl Batch<'_> {
    /// Into the table: what a listing shows is what the kernel said now,
    /// and which connections it still has (`Table::end_vanished`).
    pub fn apply(&self, table: &mut Table, now_ns: u64) {
        for s in self.sockets {
            let key: ConnKey = key_of(s);
            match self.detail {
                Detail::Counters => {
                    let raw = (s.bytes_acked.unwrap_or(0), s.bytes_received.unwrap_or(0));
                    let tcp = s.tcp.unwrap_or_default();
                    table.live_tcp(&key, raw, s.state, tcp, self.generation, now_ns);
                }
                Detail::Presence => table.live_present(&key, self.generation),
            }
        }
    }
}
