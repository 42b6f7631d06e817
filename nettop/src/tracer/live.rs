//! Live TCP totals: each tracked TCP connection's counters and health, read
//! from the kernel's own `tcp_info` through `sock_diag`, in every network
//! namespace that holds one. No program runs per TCP packet for them, and
//! every data path (sendfile, splice, kTLS...) moves these counters.
//!
//! A read is three steps, so that the slow one holds no lock the reader of
//! events needs: `plan` (under the table's lock: which namespaces, and the
//! newest connection so far), `dump` (sock_diag, holding only this
//! module's own lock), `apply` (under the table's lock again).
use anyhow::Result;
use nettop_shared::{ConnKey, IPPROTO_TCP};
use rustc_hash::FxHashMap;

use super::backfill::key_of;
use super::conntrack::{Change, Table};
use super::sock_diag::{CONNECTED_STATES, Namespaces, Proto, SocketEntry};

pub(super) struct Live {
    pub namespaces: Namespaces,
    generation: u32,
}

/// What a read will cover: each namespace holding a TCP connection, with a
/// few of its owners (one of them is the way in), and the newest
/// connection's id when it was planned.
pub(super) struct Plan {
    wanted: FxHashMap<u32, Vec<u32>>,
    last_id: u64,
}

/// One read of the kernel's TCP table.
pub(super) struct Read {
    generation: u32,
    netns: Vec<u32>,
    last_id: u64,
    sockets: Vec<SocketEntry>,
}

pub(super) fn plan(table: &Table) -> Plan {
    let mut wanted: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for e in table.open_entries().filter(|e| e.key.proto == IPPROTO_TCP) {
        let pids = wanted.entry(e.key.netns).or_default();
        if pids.len() < 4 && e.key.tgid != 0 && !pids.contains(&e.key.tgid) {
            pids.push(e.key.tgid);
        }
    }
    Plan { wanted, last_id: table.last_id() }
}

impl Live {
    pub fn new() -> Result<Live> {
        Ok(Live { namespaces: Namespaces::new()?, generation: 0 })
    }

    /// Dump the connected TCP sockets of every namespace `plan` names.
    pub fn dump(&mut self, plan: Plan) -> Read {
        self.generation = self.generation.wrapping_add(1).max(1);
        let mut netns = Vec::with_capacity(plan.wanted.len());
        let mut sockets = Vec::new();
        for (ns, pids) in &plan.wanted {
            let Some(sock) = self.namespaces.open(*ns, pids.iter().copied()) else {
                continue;
            };
            let before = sockets.len();
            if sock.dump(Proto::Tcp, CONNECTED_STATES, &mut sockets).is_err() {
                sockets.truncate(before);
                continue;
            }
            netns.push(*ns);
        }
        self.namespaces.retain(|ns| plan.wanted.contains_key(&ns));
        Read { generation: self.generation, netns, last_id: plan.last_id, sockets }
    }
}

impl Read {
    /// Into the table: what a listing shows is what the kernel said now.
    pub fn apply(&self, table: &mut Table, now_ns: u64) {
        for s in &self.sockets {
            let key: ConnKey = key_of(s);
            let raw = (s.bytes_acked.unwrap_or(0), s.bytes_received.unwrap_or(0));
            let tcp = s.tcp.unwrap_or_default();
            table.live_tcp(&key, raw, s.state, tcp, self.generation, now_ns);
        }
    }

    /// End what this read (and the one before) did not find and the table
    /// still holds open. The caller drains the probe's events between the
    /// dump and this: a connection closed before the dump has its close
    /// event waiting there, so only a lost one is left for this.
    pub fn end_vanished(&self, table: &mut Table, now_ns: u64) -> Vec<Change> {
        table.end_vanished(&self.netns, self.generation, self.last_id, now_ns)
    }
}
