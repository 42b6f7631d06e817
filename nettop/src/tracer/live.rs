//! Live TCP totals: each tracked TCP connection's counters and health, read
//! from the kernel's own `tcp_info` through `sock_diag`, in every network
//! namespace that holds one. No program runs per TCP packet for them, and
//! every data path (sendfile, splice, kTLS...) moves these counters.
use anyhow::Result;
use nettop_shared::{ConnKey, IPPROTO_TCP};
use rustc_hash::FxHashMap;

use super::backfill::key_of;
use super::conntrack::{Change, Table};
use super::sock_diag::{CONNECTED_STATES, Namespaces, Proto, SocketEntry};

pub(super) struct Live {
    pub namespaces: Namespaces,
    generation: u32,
    /// Reused between reads: a dump of 100 000 sockets is tens of MB.
    scratch: Vec<SocketEntry>,
}

/// What one read covered, for [`Live::end_vanished`].
pub(super) struct Read {
    generation: u32,
    netns: Vec<u32>,
    last_id: u64,
}

impl Live {
    pub fn new() -> Result<Live> {
        Ok(Live { namespaces: Namespaces::new()?, generation: 0, scratch: Vec::new() })
    }

    /// Read the kernel's counters of every open TCP connection of `table`
    /// into it: what a listing shows is what the kernel says now.
    pub fn read(&mut self, table: &mut Table, now_ns: u64) -> Read {
        self.generation = self.generation.wrapping_add(1).max(1);
        let last_id = table.last_id();
        // Each namespace holding a connection, and its owners: one of
        // them is the way in.
        let mut wanted: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for e in table.open_entries().filter(|e| e.key.proto == IPPROTO_TCP) {
            let pids = wanted.entry(e.key.netns).or_default();
            if pids.len() < 4 && e.key.tgid != 0 && !pids.contains(&e.key.tgid) {
                pids.push(e.key.tgid);
            }
        }
        let mut netns = Vec::with_capacity(wanted.len());
        for (ns, pids) in &wanted {
            let Some(sock) = self.namespaces.open(*ns, pids.iter().copied()) else {
                continue;
            };
            self.scratch.clear();
            if sock.dump(Proto::Tcp, CONNECTED_STATES, &mut self.scratch).is_err() {
                continue;
            }
            netns.push(*ns);
            for s in &self.scratch {
                let key: ConnKey = key_of(s);
                let raw = (s.bytes_acked.unwrap_or(0), s.bytes_received.unwrap_or(0));
                let tcp = s.tcp.unwrap_or_default();
                table.live_tcp(&key, raw, s.state, tcp, self.generation, now_ns);
            }
        }
        self.namespaces.retain(|ns| wanted.contains_key(&ns));
        if self.scratch.capacity() > 4 * self.scratch.len().max(1024) {
            self.scratch = Vec::new();
        }
        Read { generation: self.generation, netns, last_id }
    }

    /// End what `read` (and the read before) did not find and the table
    /// still holds open. The caller drains the probe's events between the
    /// two: a connection closed before the read has its close event
    /// waiting there, so only a lost one is left for this.
    pub fn end_vanished(read: &Read, table: &mut Table, now_ns: u64) -> Vec<Change> {
        table.end_vanished(&read.netns, read.generation, read.last_id, now_ns)
    }
}
