//! The connection table: merges the kernel's counters, its lifecycle events
//! and the backfill of connections older than nettop into one entry per
//! connection. Pure logic: the caller does every read and write of BPF maps.
use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::Duration;

use super::health::{self, Health};
use super::sock_diag::TcpInfo;

use nettop_shared::{
    CLOSE_FIN_RECEIVED, CLOSE_NO_RECORD, CLOSE_RESET, ConnKey, ConnStats, DIR_OUTGOING,
    DIR_UNKNOWN, EV_ACCEPT, EV_CLOSE, EV_CONNECT, EV_CONNECT_FAILED, EV_RETRANSMIT, EV_SOCK_CLOSE,
    Event as RawEvent, IPPROTO_TCP, IPPROTO_UDP,
};

/// Where the table files a connection: a TCP tuple is one socket whatever
/// process the probe or the backfill named, so TCP slots leave the owner
/// out (a socket older than nettop ends with no owner known). UDP flows are
/// per process: several can share a socket.
pub(super) fn slot(key: &ConnKey) -> ConnKey {
    if key.proto == IPPROTO_TCP { ConnKey { tgid: 0, ..*key } } else { *key }
}

/// Open connections by `slot(key)`, each stored once: a map keyed by the
/// tuple would keep the 48-byte key again beside every entry, and at 100 000
/// connections half of a hash table's buckets are empty.
#[derive(Default)]
struct OpenSet(hashbrown::HashTable<Entry>);

fn slot_hash(key: &ConnKey) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(slot(key))
}

impl OpenSet {
    fn get(&self, key: &ConnKey) -> Option<&Entry> {
        let k = slot(key);
        self.0.find(slot_hash(key), |e| slot(&e.key) == k)
    }

    fn get_mut(&mut self, key: &ConnKey) -> Option<&mut Entry> {
        let k = slot(key);
        self.0.find_mut(slot_hash(key), |e| slot(&e.key) == k)
    }

    fn contains_key(&self, key: &ConnKey) -> bool {
        self.get(key).is_some()
    }

    fn remove(&mut self, key: &ConnKey) -> Option<Entry> {
        let k = slot(key);
        let found = self.0.find_entry(slot_hash(key), |e| slot(&e.key) == k);
        found.ok().map(|o| o.remove().0)
    }

    /// The entry for `key`'s slot, made by `make` (whose key must have the
    /// same slot) if there is none.
    fn get_or_insert_with(&mut self, key: &ConnKey, make: impl FnOnce() -> Entry) -> &mut Entry {
        let k = slot(key);
        match self.0.entry(slot_hash(key), |e| slot(&e.key) == k, |e| slot_hash(&e.key)) {
            hashbrown::hash_table::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_table::Entry::Vacant(v) => v.insert(make()).into_mut(),
        }
    }

    fn values(&self) -> hashbrown::hash_table::Iter<'_, Entry> {
        self.0.iter()
    }

    fn values_mut(&mut self) -> hashbrown::hash_table::IterMut<'_, Entry> {
        self.0.iter_mut()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// Payload bytes from `tcp_sock`'s raw counters (`bytes_acked`,
/// `bytes_received`), which count in sequence space: `bytes_acked` has 1 for
/// the active opener's SYN (the guesser checks that this kernel counts so)
/// and 1 for our FIN once acknowledged; `bytes_received` has 1 for the
/// peer's FIN once it came in order.
pub fn payload(raw: (u64, u64), direction: u8, fin_acked: bool, fin_received: bool) -> (u64, u64) {
    let syn = u64::from(direction == DIR_OUTGOING);
    (
        raw.0.saturating_sub(syn + u64::from(fin_acked)),
        raw.1.saturating_sub(u64::from(fin_received)),
    )
}

/// Which FINs a live socket's counters hold, by its state: ours was
/// acknowledged in FIN_WAIT2; the peer's came in CLOSE_WAIT, LAST_ACK and
/// CLOSING.
pub fn fins_live(state: u8) -> (bool, bool) {
    (state == TCP_FIN_WAIT2, matches!(state, TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING))
}

/// Which FINs the counters hold at the change to CLOSE, from the state the
/// socket left: ours was acknowledged if it left FIN_WAIT2, or CLOSING or
/// LAST_ACK unless a reset ended it there; whether the peer's came, the
/// probe read from SOCK_DONE.
pub fn fins_at_close(left: u8, fin_received: bool, reset: bool) -> (bool, bool) {
    let acked = left == TCP_FIN_WAIT2 || (matches!(left, TCP_CLOSING | TCP_LAST_ACK) && !reset);
    (acked, fin_received)
}

/// One connection as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unique for the table's lifetime (a reused tuple gets a new one).
    pub id: u64,
    pub key: ConnKey,
    /// The kernel's counters (since it first saw the connection), and the
    /// socket's kernel address (`stats.sk`).
    pub stats: ConnStats,
    /// Bytes from before nettop started (backfill), added to `stats`.
    pub base_sent: u64,
    pub base_recv: u64,
    pub direction: u8,
    /// The probe saw it connect or accept: its counters are complete.
    pub born: bool,
    pub backfilled: bool,
    /// The kernel-reported thread name: the fallback when /proc has no process.
    pub comm: [u8; 16],
    /// Monotonic ns when it closed; closed entries linger, then go. (Not
    /// an `Option<u64>`, which is 8 bytes more per entry.)
    pub closed_ns: Option<NonZeroU64>,
    /// TCP: the kernel's `tcp_info` at the last refresh, and when it was read.
    pub tcp: TcpInfo,
    pub tcp_at_ns: u64,
    /// TCP: what changed between the last two reads of `tcp`.
    pub health: Option<Health>,
    /// TCP: the refresh that last found it in the kernel's table.
    pub seen: u32,
    /// TCP: when the first of the reads that have not found it since it
    /// was last found was taken (0: the last read found it).
    pub absent_since_ns: u64,
    /// Ended because the kernel no longer had it at a refresh (its close
    /// event was lost), not by a close the probe saw.
    pub vanished: bool,
}

impl Entry {
    fn new(id: &mut u64, key: ConnKey, sk: u64, direction: u8, comm: [u8; 16]) -> Entry {
        *id += 1;
        Entry {
            id: *id,
            key,
            stats: ConnStats { sk, ..ConnStats::default() },
            base_sent: 0,
            base_recv: 0,
            direction,
            born: false,
            backfilled: false,
            comm,
            closed_ns: None,
            tcp: TcpInfo::default(),
            tcp_at_ns: 0,
            health: None,
            seen: 0,
            absent_since_ns: 0,
            vanished: false,
        }
    }

    pub fn bytes_sent(&self) -> u64 {
        self.base_sent + self.stats.bytes_sent
    }

    pub fn bytes_recv(&self) -> u64 {
        self.base_recv + self.stats.bytes_recv
    }

    pub fn is_udp(&self) -> bool {
        self.key.proto == IPPROTO_UDP
    }
}

/// What happened, for the event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Connect(Entry),
    Accept(Entry),
    /// Final totals, reported once.
    Close(Entry),
    ConnectFailed {
        key: ConnKey,
        errno: Option<i32>,
        comm: [u8; 16],
    },
    Retransmit(Entry),
}

/// Open connections are hashed by tuple; closed ones only wait out their
/// linger, in the order they closed. Under churn nearly every entry is a
/// closed one (5 s of them at tens of thousands a second): kept out of the
/// hash, they neither slow the lookup of every event nor cost a scan to
/// expire.
pub struct Table {
    open: OpenSet,
    closed: VecDeque<Entry>,
    last_id: u64,
    linger_ns: u64,
    max_closed: usize,
    /// At most this many open connections: a local user who opens
    /// connections without end cannot make the table grow without end.
    max_open: usize,
    /// New connections refused because `max_open` were open.
    refused: u64,
    udp_timeout_ns: u64,
    /// The latest read of the kernel's TCP table taken in, by a listing or
    /// by the reader, and the generation `end_vanished` last used.
    latest_read: Option<ReadMark>,
    vanish_checked: u32,
}

/// What `Table::sync_one` did with a flow of the kernel's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Synced {
    Tracked,
    /// The table was full.
    Refused,
}

/// How long reads of the kernel's table must go on not finding a TCP
/// connection before it is ended as vanished (`Table::end_vanished`).
pub const VANISH_AFTER_NS: u64 = 2_000_000_000;

/// Found by read `generation` or a later one: reads take their sockets in
/// a reply at a time, so the next one may be part way in already.
/// Generations count up from 1 and wrap.
fn seen_since(seen: u32, generation: u32) -> bool {
    seen != 0 && seen.wrapping_sub(generation) < 1 << 31
}

/// A read of the kernel's TCP table, once taken in: which namespaces it
/// covered, the newest connection when it was planned, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadMark {
    pub generation: u32,
    pub netns: Vec<u32>,
    pub last_id: u64,
    pub at_ns: u64,
}

impl Table {
    pub fn new(linger: Duration, udp_timeout: Duration) -> Table {
        Table {
            open: OpenSet::default(),
            closed: VecDeque::new(),
            last_id: 0,
            latest_read: None,
            vanish_checked: 0,
            linger_ns: linger.as_nanos() as u64,
            max_closed: usize::MAX,
            max_open: usize::MAX,
            refused: 0,
            udp_timeout_ns: udp_timeout.as_nanos() as u64,
        }
    }

    /// Keep at most `n` closed connections, the latest; older ones go
    /// before their linger is over.
    pub fn max_closed(mut self, n: usize) -> Table {
        self.max_closed = n;
        self
    }

    /// Keep at most `n` open connections: past that, a new one is not
    /// tracked until one closes, and each refusal is counted (`refused`).
    pub fn max_open(mut self, n: usize) -> Table {
        self.max_open = n;
        self
    }

    /// How many times a new connection found the table full: every event
    /// or read that named an untracked connection counts once.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Room for one more open connection under `key`? Counts a refusal.
    fn has_room_for(&mut self, key: &ConnKey) -> bool {
        if self.open.len() < self.max_open || self.open.contains_key(key) {
            return true;
        }
        self.refused += 1;
        false
    }

    /// Open connections, then closed ones.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.open.values().chain(&self.closed)
    }

    pub fn open_entries(&self) -> impl Iterator<Item = &Entry> {
        self.open.values()
    }

    /// How many are open, and closed.
    pub fn counts(&self) -> (u64, u64) {
        (self.open.len() as u64, self.closed.len() as u64)
    }

    /// Whether a connection with this tuple is open.
    pub fn is_open(&self, key: &ConnKey) -> bool {
        self.open.get(key).is_some()
    }

    /// The open connection with this tuple, else the latest closed one.
    pub fn get(&self, key: &ConnKey) -> Option<&Entry> {
        self.open.get(key).or_else(|| self.closed.iter().rev().find(|e| slot(&e.key) == slot(key)))
    }

    /// A closed tuple seen again (a reused port) is a new connection: the
    /// closed one lingers beside it. None when the table is full.
    fn open_entry(
        &mut self,
        key: ConnKey,
        sk: u64,
        direction: u8,
        comm: [u8; 16],
    ) -> Option<&mut Entry> {
        if !self.has_room_for(&key) {
            return None;
        }
        Some(self.entry_to_close(key, sk, direction, comm))
    }

    /// `open_entry` for a connection about to close: made even when the
    /// table is full, as it leaves the open set at once (the closed ones
    /// have a bound of their own).
    fn entry_to_close(
        &mut self,
        key: ConnKey,
        sk: u64,
        direction: u8,
        comm: [u8; 16],
    ) -> &mut Entry {
        let id = &mut self.last_id;
        let e = self.open.get_or_insert_with(&key, || Entry::new(id, key, sk, direction, comm));
        if e.direction == DIR_UNKNOWN {
            e.direction = direction;
        }
        e
    }

    /// Apply one ring-buffer event. `final_udp` gives the kernel's last
    /// counters of a UDP flow whose socket closed (the caller then removes
    /// the flow from the kernel's table).
    #[cfg(test)]
    pub fn apply(
        &mut self,
        ev: &RawEvent,
        now_ns: u64,
        final_udp: impl FnMut(&ConnKey) -> Option<ConnStats>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        self.apply_into(ev, now_ns, final_udp, |c| out.push(c));
        out
    }

    /// `apply`, handing each change to `out`: no allocation per event.
    pub fn apply_into(
        &mut self,
        ev: &RawEvent,
        now_ns: u64,
        mut final_udp: impl FnMut(&ConnKey) -> Option<ConnStats>,
        mut out: impl FnMut(Change),
    ) {
        match ev.kind {
            EV_CONNECT | EV_ACCEPT => {
                // A connection is born once: one born on this tuple before
                // is another socket's, whose close was lost. (The reader
                // drops the tracepoint backend's repeated accepts.)
                if let Some(stale) = self.open.get_mut(&ev.key).filter(|e| e.born) {
                    stale.vanished = true;
                    self.close(&ev.key, None, now_ns).into_iter().for_each(&mut out);
                }
                let Some(e) = self.open_entry(ev.key, ev.sk, ev.direction, ev.comm) else {
                    return;
                };
                e.born = true;
                let e = e.clone();
                out(if ev.kind == EV_CONNECT { Change::Connect(e) } else { Change::Accept(e) })
            }
            EV_CLOSE => {
                // A socket the probe never knew ends only a connection the
                // table lists (the backfill's); others are not news.
                if ev.close_flags & CLOSE_NO_RECORD != 0 && !self.open.contains_key(&ev.key) {
                    return;
                }
                let e = self.entry_to_close(ev.key, ev.sk, ev.direction, ev.comm);
                // The kernel's raw counters over the socket's whole life.
                let (fin_acked, fin_received) = fins_at_close(
                    ev.sk_state,
                    ev.close_flags & CLOSE_FIN_RECEIVED != 0,
                    ev.close_flags & CLOSE_RESET != 0,
                );
                let raw = (ev.bytes_sent, ev.bytes_recv);
                (e.stats.bytes_sent, e.stats.bytes_recv) =
                    payload(raw, e.direction, fin_acked, fin_received);
                (e.base_sent, e.base_recv) = (0, 0);
                if ev.close_flags & CLOSE_NO_RECORD != 0 {
                    self.close(&ev.key, None, now_ns).into_iter().for_each(out);
                    return;
                }
                e.stats.msgs_sent = ev.msgs_sent;
                e.stats.msgs_recv = ev.msgs_recv;
                e.stats.retransmits = ev.retransmits;
                e.stats.last_ns = ev.ts_ns;
                self.close(&ev.key, None, now_ns).into_iter().for_each(out)
            }
            EV_CONNECT_FAILED => out(Change::ConnectFailed {
                key: ev.key,
                errno: (ev.err != 0).then_some(ev.err),
                comm: ev.comm,
            }),
            EV_RETRANSMIT => {
                let Some(e) = self.open_entry(ev.key, ev.sk, ev.direction, ev.comm) else {
                    return;
                };
                e.stats.retransmits = e.stats.retransmits.max(ev.retransmits);
                out(Change::Retransmit(e.clone()))
            }
            EV_SOCK_CLOSE => {
                let keys: Vec<ConnKey> = self
                    .open
                    .values()
                    .filter(|e| e.is_udp() && e.stats.sk == ev.sk)
                    .map(|e| e.key)
                    .collect();
                for k in keys {
                    let last = final_udp(&k);
                    self.close(&k, last, now_ns).into_iter().for_each(&mut out);
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, key: &ConnKey, last: Option<ConnStats>, now_ns: u64) -> Option<Change> {
        let mut e = self.open.remove(key)?;
        if let Some(s) = last {
            // The probe does not date packets: activity since the last sync
            // happened by now.
            let moved = (s.msgs_sent, s.msgs_recv) != (e.stats.msgs_sent, e.stats.msgs_recv);
            let last_ns = if moved { now_ns } else { e.stats.last_ns.max(s.last_ns) };
            e.stats = s;
            e.stats.last_ns = last_ns;
        }
        e.closed_ns = Some(NonZeroU64::new(now_ns).unwrap_or(NonZeroU64::MIN));
        let change = Change::Close(e.clone());
        self.closed.push_back(e);
        Some(change)
    }

    /// `sync_one` for each of `live` (tests give the kernel's table so).
    #[cfg(test)]
    pub fn sync(&mut self, live: &[(ConnKey, ConnStats)], now_ns: u64) {
        for (key, stats) in live {
            let _ = self.sync_one(key, stats, now_ns);
        }
    }

    /// Take in the kernel's current counters of one live connection, read
    /// at `now_ns` (the caller streams the kernel's table through here). A
    /// connection whose message counts moved since the last sync was active
    /// at `now_ns`: that is its `last_ns`, to the interval between syncs.
    ///
    /// A closed tuple seen here is a new connection on it, never a stale
    /// read of the old one: the probe deletes a connection's entry before
    /// it reports the close, and the caller reads the kernel's table and
    /// applies events under one lock, so a close is never applied between
    /// the read of the table and its sync.
    ///
    /// Refused (the table full): the caller removes the flow from the
    /// kernel's table, which would otherwise keep it for good.
    pub fn sync_one(&mut self, key: &ConnKey, stats: &ConnStats, now_ns: u64) -> Synced {
        if !self.has_room_for(key) {
            return Synced::Refused;
        }
        let id = &mut self.last_id;
        let e = self
            .open
            .get_or_insert_with(key, || Entry::new(id, *key, stats.sk, stats.direction, [0; 16]));
        let moved = (stats.msgs_sent, stats.msgs_recv) != (e.stats.msgs_sent, e.stats.msgs_recv);
        let last = if moved { now_ns } else { e.stats.last_ns };
        e.stats = *stats;
        e.stats.last_ns = last.max(stats.last_ns);
        if e.direction == DIR_UNKNOWN {
            e.direction = stats.direction;
        }
        Synced::Tracked
    }

    /// A connection that predates nettop, with the kernel's own totals at
    /// backfill time (`bytes_now`) and what the probe had already counted of
    /// it by then (`counted`), so that no byte is counted twice.
    pub fn backfill(
        &mut self,
        key: ConnKey,
        direction: u8,
        bytes_now: (u64, u64),
        counted: Option<ConnStats>,
        now_ns: u64,
    ) {
        if self.open.get(&key).is_some_and(|e| e.born) || !self.has_room_for(&key) {
            return;
        }
        let id = &mut self.last_id;
        let e = self.open.get_or_insert_with(&key, || Entry::new(id, key, 0, direction, [0; 16]));
        e.backfilled = true;
        e.direction = direction;
        let counted = counted.unwrap_or_default();
        e.base_sent = bytes_now.0.saturating_sub(counted.bytes_sent);
        e.base_recv = bytes_now.1.saturating_sub(counted.bytes_recv);
        // Alive now: a quiet UDP socket is not idle from the start of time.
        e.stats.last_ns = e.stats.last_ns.max(now_ns);
    }

    /// The newest id given so far: entries made after a refresh began
    /// have larger ones.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Take in a live TCP socket's counters and health from the kernel's
    /// table, read by refresh `generation` at `now_ns`. A socket the table
    /// does not track is left alone: new ones come with their events.
    pub fn live_tcp(
        &mut self,
        key: &ConnKey,
        raw: (u64, u64),
        state: u8,
        tcp: TcpInfo,
        generation: u32,
        now_ns: u64,
    ) {
        let Some(e) = self.open.get_mut(key) else {
            return;
        };
        let (fin_acked, fin_received) = fins_live(state);
        let (sent, recv) = payload(raw, e.direction, fin_acked, fin_received);
        if (sent, recv) != (e.bytes_sent(), e.bytes_recv()) {
            e.stats.last_ns = now_ns;
        }
        (e.stats.bytes_sent, e.stats.bytes_recv, e.base_sent, e.base_recv) = (sent, recv, 0, 0);
        e.stats.retransmits = e.stats.retransmits.max(tcp.total_retrans);
        // Reads too close together keep the older one, to judge the next
        // against.
        let elapsed = now_ns.saturating_sub(e.tcp_at_ns);
        if e.tcp_at_ns == 0 || elapsed >= health::MIN_INTERVAL_NS {
            if e.tcp_at_ns != 0 {
                e.health = health::judge(&e.tcp, &tcp, elapsed);
            }
            (e.tcp, e.tcp_at_ns) = (tcp, now_ns);
        }
        e.seen = generation;
        e.absent_since_ns = 0;
    }

    /// The kernel's table found this connection in read `generation`,
    /// without its counters.
    pub fn live_present(&mut self, key: &ConnKey, generation: u32) {
        if let Some(e) = self.open.get_mut(key) {
            e.seen = generation;
            e.absent_since_ns = 0;
        }
    }

    /// A read has been taken in (its connections marked with its
    /// generation).
    pub fn read_applied(&mut self, mark: ReadMark) {
        self.latest_read = Some(mark);
    }

    /// How long ago the latest read was taken, if there was one.
    pub fn read_age_ns(&self, now_ns: u64) -> Option<u64> {
        self.latest_read.as_ref().map(|r| now_ns.saturating_sub(r.at_ns))
    }

    /// End the open TCP connections of the namespaces the latest read
    /// covered that no read has found for `VANISH_AFTER_NS` (made no later
    /// than it was planned): the kernel no longer has them, and their close
    /// event was lost. Not at the first miss, because the kernel unhashes a
    /// socket going to TIME_WAIT just before the probe reports its close,
    /// and a read can fall in between; a virtual CPU the host holds still
    /// there can make that last. Each read counts once, however often this
    /// is called; the caller drains the probe's events first.
    pub fn end_vanished(&mut self, now_ns: u64) -> Vec<Change> {
        let Some(read) = self.latest_read.clone().filter(|r| r.generation != self.vanish_checked)
        else {
            return Vec::new();
        };
        self.vanish_checked = read.generation;
        let mut gone = Vec::new();
        for e in self.open.values_mut() {
            if e.key.proto != IPPROTO_TCP
                || e.id > read.last_id
                || seen_since(e.seen, read.generation)
                || !read.netns.contains(&e.key.netns)
            {
                continue;
            }
            if e.absent_since_ns == 0 {
                e.absent_since_ns = read.at_ns.max(1);
            } else if read.at_ns.saturating_sub(e.absent_since_ns) >= VANISH_AFTER_NS {
                gone.push(e.key);
            }
        }
        gone.iter()
            .filter_map(|k| {
                if let Some(e) = self.open.get_mut(k) {
                    e.vanished = true;
                }
                self.close(k, None, now_ns)
            })
            .collect()
    }

    /// UDP flows idle for longer than the timeout end like a TCP close; the
    /// caller removes them from the kernel's table.
    pub fn expire_udp(&mut self, now_ns: u64) -> Vec<Change> {
        let idle: Vec<ConnKey> = self
            .open
            .values()
            .filter(|e| e.is_udp())
            .filter(|e| now_ns.saturating_sub(e.stats.last_ns) > self.udp_timeout_ns)
            .map(|e| e.key)
            .collect();
        idle.into_iter().filter_map(|k| self.close(&k, None, now_ns)).collect()
    }

    /// Forget closed connections whose linger is over.
    pub fn expire_closed(&mut self, now_ns: u64) {
        let linger = self.linger_ns;
        while self
            .closed
            .front()
            .is_some_and(|e| e.closed_ns.is_some_and(|c| now_ns.saturating_sub(c.get()) >= linger))
        {
            self.closed.pop_front();
        }
        let excess = self.closed.len().saturating_sub(self.max_closed);
        self.closed.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nettop_shared::{DIR_INCOMING, DIR_OUTGOING, IPPROTO_TCP};

    fn key(proto: u8, lport: u16, rport: u16) -> ConnKey {
        ConnKey { netns: 1, tgid: 42, proto, family: 2, lport, rport, ..Default::default() }
    }

    /// A raw event; a close's counts as the kernel's counters have them
    /// (this outgoing connection's acknowledged SYN included).
    fn ev(kind: u8, key: ConnKey, sent: u64, recv: u64) -> RawEvent {
        RawEvent {
            key,
            kind,
            bytes_sent: if kind == EV_CLOSE { sent + 1 } else { sent },
            bytes_recv: recv,
            direction: DIR_OUTGOING,
            sk: 7,
            ts_ns: 10,
            ..Default::default()
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn close_reports_final_totals_once_then_lingers() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_TCP, 1000, 80);
        assert!(matches!(t.apply(&ev(EV_CONNECT, k, 0, 0), 0, |_| None)[..], [Change::Connect(_)]));
        t.sync(&[(k, ConnStats { bytes_sent: 100, bytes_recv: 5, ..Default::default() })], 0);
        let out = t.apply(&ev(EV_CLOSE, k, 512, 32768), SEC, |_| None);
        let [Change::Close(e)] = &out[..] else { panic!("{out:?}") };
        assert_eq!((e.bytes_sent(), e.bytes_recv()), (512, 32768));
        assert_eq!(t.counts(), (0, 1));
        t.expire_closed(5 * SEC);
        assert!(t.get(&k).is_some(), "still lingering");
        t.expire_closed(6 * SEC + 1);
        assert!(t.get(&k).is_none());
        assert_eq!(t.counts(), (0, 0));
    }

    #[test]
    fn a_reused_tuple_is_a_new_connection_beside_the_lingering_one() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_TCP, 1000, 80);
        t.apply(&ev(EV_CONNECT, k, 0, 0), 0, |_| None);
        t.apply(&ev(EV_CLOSE, k, 512, 7), SEC, |_| None);
        // The kernel counts the tuple again: a new connection, counted from zero.
        t.sync(&[(k, ConnStats { bytes_sent: 100, ..Default::default() })], 2 * SEC);
        t.apply(&ev(EV_CONNECT, k, 0, 0), 2 * SEC, |_| None);
        let all: Vec<(u64, u64, bool)> =
            t.entries().map(|e| (e.id, e.bytes_sent(), e.closed_ns.is_some())).collect();
        assert_eq!(all, [(2, 100, false), (1, 512, true)]);
        assert_eq!(t.counts(), (1, 1));
        // Its close is reported once; both then linger and go in close order.
        let out = t.apply(&ev(EV_CLOSE, k, 300, 0), 3 * SEC, |_| None);
        assert!(matches!(&out[..], [Change::Close(e)] if e.id == 2 && e.bytes_sent() == 300));
        t.expire_closed(6 * SEC + 1);
        assert_eq!(t.entries().map(|e| e.id).collect::<Vec<_>>(), [2]);
        t.expire_closed(8 * SEC + 1);
        assert_eq!(t.counts(), (0, 0));
    }

    #[test]
    fn past_max_closed_the_oldest_closed_go_before_their_linger_is_over() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30)).max_closed(2);
        let open = key(IPPROTO_TCP, 999, 80);
        t.apply(&ev(EV_CONNECT, open, 0, 0), 0, |_| None);
        for port in 1000..1004 {
            let k = key(IPPROTO_TCP, port, 80);
            t.apply(&ev(EV_CONNECT, k, 0, 0), 0, |_| None);
            t.apply(&ev(EV_CLOSE, k, 1, 1), SEC, |_| None);
        }
        assert_eq!(t.counts(), (1, 4), "bounded when expiry runs, not on every close");
        t.expire_closed(2 * SEC);
        let ports: Vec<u16> = t.entries().map(|e| e.key.lport).collect();
        assert_eq!(ports, [999, 1002, 1003], "open ones stay; the latest closed ones stay");
    }

    #[test]
    fn past_max_open_new_connections_are_refused_and_counted_until_one_closes() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30)).max_open(2);
        let (a, b, c) =
            (key(IPPROTO_TCP, 1000, 80), key(IPPROTO_TCP, 1001, 80), key(IPPROTO_TCP, 1002, 80));
        for k in [a, b] {
            assert!(matches!(
                t.apply(&ev(EV_CONNECT, k, 0, 0), 0, |_| None)[..],
                [Change::Connect(_)]
            ));
        }
        assert!(t.apply(&ev(EV_CONNECT, c, 0, 0), 0, |_| None).is_empty(), "refused");
        assert!(t.apply(&ev(EV_RETRANSMIT, c, 0, 0), 0, |_| None).is_empty(), "still refused");
        assert_eq!((t.counts(), t.refused()), ((2, 0), 2));
        // Known connections still take their events; a refused one's close
        // is still reported, with the kernel's totals.
        assert_eq!(t.apply(&ev(EV_RETRANSMIT, a, 0, 0), 0, |_| None).len(), 1);
        let out = t.apply(&ev(EV_CLOSE, c, 10, 20), SEC, |_| None);
        let [Change::Close(e)] = &out[..] else { panic!("{out:?}") };
        assert_eq!((e.bytes_sent(), e.bytes_recv()), (10, 20));
        // The kernel's other readings of untracked connections are refused too.
        let udp = key(IPPROTO_UDP, 53, 1111);
        t.sync(&[(udp, ConnStats::default())], SEC);
        t.backfill(key(IPPROTO_TCP, 1003, 80), DIR_OUTGOING, (1, 1), None, SEC);
        assert_eq!((t.counts(), t.refused()), ((2, 1), 4));
        // A close makes room.
        t.apply(&ev(EV_CLOSE, a, 1, 1), SEC, |_| None);
        assert_eq!(t.apply(&ev(EV_CONNECT, c, 0, 0), SEC, |_| None).len(), 1);
        t.sync(&[(udp, ConnStats::default())], SEC);
        assert_eq!((t.counts(), t.refused()), ((2, 2), 5), "full again: the flow is refused");
    }

    #[test]
    fn failed_connect_is_not_a_connection() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let mut e = ev(EV_CONNECT_FAILED, key(IPPROTO_TCP, 0, 9), 0, 0);
        e.err = 111;
        let out = t.apply(&e, 0, |_| None);
        assert!(matches!(out[..], [Change::ConnectFailed { errno: Some(111), .. }]));
        assert_eq!(t.entries().count(), 0);
    }

    #[test]
    fn udp_flows_expire_when_idle_and_when_their_socket_closes() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let a = key(IPPROTO_UDP, 53, 1111);
        let b = key(IPPROTO_UDP, 53, 2222);
        let mut other = key(IPPROTO_UDP, 99, 3333);
        other.tgid = 43;
        let stats =
            |sent, last_ns, sk| ConnStats { bytes_sent: sent, last_ns, sk, ..Default::default() };
        t.sync(
            &[(a, stats(10, SEC, 7)), (b, stats(20, 20 * SEC, 7)), (other, stats(5, SEC, 8))],
            0,
        );
        // a and other idle since 1 s: at 32 s they expire, b (20 s) does not.
        let out = t.expire_udp(32 * SEC);
        assert_eq!(out.len(), 2);
        assert!(t.get(&b).unwrap().closed_ns.is_none());
        // b's socket closes: final counters come from the kernel.
        let mut close = ev(EV_SOCK_CLOSE, ConnKey::default(), 0, 0);
        close.sk = 7;
        let out = t.apply(&close, 33 * SEC, |k| (*k == b).then(|| stats(25, 33 * SEC, 7)));
        let [Change::Close(e)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(e.bytes_sent(), 25);
        // Nothing is closed twice.
        assert!(t.expire_udp(100 * SEC).is_empty());
    }

    #[test]
    fn activity_is_dated_by_the_sync_that_sees_the_counters_move() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_UDP, 53, 1111);
        // The probe dates only the flow's start.
        let at = |msgs, ns| ConnStats {
            msgs_sent: msgs,
            first_ns: ns,
            last_ns: ns,
            ..Default::default()
        };
        t.sync(&[(k, at(0, SEC))], 2 * SEC);
        assert_eq!(t.get(&k).unwrap().stats.last_ns, SEC, "no traffic yet");
        t.sync(&[(k, at(3, SEC))], 10 * SEC);
        assert_eq!(t.get(&k).unwrap().stats.last_ns, 10 * SEC);
        t.sync(&[(k, at(3, SEC))], 20 * SEC);
        assert_eq!(t.get(&k).unwrap().stats.last_ns, 10 * SEC, "unchanged counters: idle");
        // Its socket closes: the final counters keep the activity's date...
        let mut t2 = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        t2.sync(&[(k, at(3, SEC))], 10 * SEC);
        let mut close = ev(EV_SOCK_CLOSE, ConnKey::default(), 0, 0);
        close.sk = 0;
        let out = t2.apply(&close, 20 * SEC, |_| Some(at(3, SEC)));
        assert!(matches!(&out[..], [Change::Close(e)] if e.stats.last_ns == 10 * SEC), "{out:?}");
        // ...or date new activity by the close.
        t2.sync(&[(k, at(3, SEC))], 30 * SEC);
        let out = t2.apply(&close, 40 * SEC, |_| Some(at(5, SEC)));
        assert!(matches!(&out[..], [Change::Close(e)] if e.stats.last_ns == 40 * SEC), "{out:?}");
        // Idle from 10 s: alive at 39 s, ended at 41 s.
        assert!(t.expire_udp(39 * SEC).is_empty());
        t.sync(&[(k, at(4, SEC))], 40 * SEC);
        assert!(t.expire_udp(69 * SEC).is_empty(), "a send at 40 s keeps it");
        assert_eq!(t.expire_udp(71 * SEC).len(), 1);
    }

    #[test]
    fn backfill_adds_what_the_probe_had_not_counted() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_UDP, 2000, 443);
        // The kernel said 1000/3000 at backfill; the probe had seen 100/0 of that.
        t.backfill(
            k,
            DIR_INCOMING,
            (1000, 3000),
            Some(ConnStats { bytes_sent: 100, ..Default::default() }),
            0,
        );
        t.sync(&[(k, ConnStats { bytes_sent: 150, bytes_recv: 10, ..Default::default() })], 0);
        let e = t.get(&k).unwrap();
        assert_eq!((e.bytes_sent(), e.bytes_recv()), (1050, 3010));
        assert!(e.backfilled);
        assert_eq!(e.direction, DIR_INCOMING);
    }

    #[test]
    fn a_connection_born_again_on_its_tuple_ends_the_one_whose_close_was_lost() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_TCP, 80, 3000);
        let accept = RawEvent { direction: DIR_INCOMING, ..ev(EV_ACCEPT, k, 0, 0) };
        assert!(matches!(t.apply(&accept, 0, |_| None)[..], [Change::Accept(_)]));
        // The same tuple accepted again, even on the same socket memory:
        // the first one's close was lost.
        let out = t.apply(&accept, SEC, |_| None);
        let [Change::Close(old), Change::Accept(new)] = &out[..] else { panic!("{out:?}") };
        assert!(old.vanished && !new.vanished && new.id == old.id + 1, "{out:?}");
        assert_eq!(t.counts(), (1, 1));
    }

    #[test]
    fn a_connection_born_under_the_probe_is_not_backfilled() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let k = key(IPPROTO_TCP, 3000, 80);
        t.apply(&ev(EV_CONNECT, k, 0, 0), 0, |_| None);
        t.backfill(k, DIR_OUTGOING, (500, 500), None, 0);
        let e = t.get(&k).unwrap();
        assert_eq!((e.bytes_sent(), e.backfilled), (0, false));
    }

    #[test]
    fn sequence_space_counts_become_payload() {
        // The client: its SYN acked, then 1000 bytes; the server sent 333.
        assert_eq!(payload((1001, 333), DIR_OUTGOING, false, false), (1000, 333));
        assert_eq!(payload((333, 1000), DIR_INCOMING, false, false), (333, 1000));
        // Live: FIN_WAIT2 has our FIN acked; CLOSE_WAIT the peer's FIN in.
        assert_eq!(fins_live(TCP_FIN_WAIT2), (true, false));
        assert_eq!(fins_live(TCP_CLOSE_WAIT), (false, true));
        assert_eq!(fins_live(TCP_LAST_ACK), (false, true));
        assert_eq!(fins_live(1), (false, false));
        // At CLOSE, from the state it left, and SOCK_DONE.
        assert_eq!(fins_at_close(TCP_LAST_ACK, true, false), (true, true));
        assert_eq!(fins_at_close(TCP_FIN_WAIT2, false, false), (true, false));
        assert_eq!(fins_at_close(1, false, false), (false, false));
        // A reset in LAST_ACK: the FIN went unacknowledged (a full
        // time-wait table on the peer, seen under a burst).
        assert_eq!(fins_at_close(TCP_LAST_ACK, true, true), (false, true));
        assert_eq!(fins_at_close(TCP_CLOSING, true, true), (false, true));
        assert_eq!(payload((1002, 334), DIR_OUTGOING, true, true), (1000, 333));
        // Never below zero (a SYN_SENT socket has nothing acked).
        assert_eq!(payload((0, 0), DIR_OUTGOING, true, true), (0, 0));
    }

    fn close_with_counters(k: ConnKey, raw: (u64, u64), left: u8, flags: u8) -> RawEvent {
        RawEvent {
            sk_state: left,
            close_flags: flags,
            bytes_sent: raw.0,
            ..ev(EV_CLOSE, k, raw.0, raw.1)
        }
    }

    #[test]
    fn a_close_with_the_kernels_counters_reports_payload_and_finds_the_owner_less() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        // Backfilled, owned by 42; the probe never knew the socket.
        let owned = ConnKey { tgid: 42, ..key(IPPROTO_TCP, 4000, 80) };
        t.backfill(owned, DIR_OUTGOING, (10, 20), None, 0);
        let nobody = ConnKey { tgid: 0, ..owned };
        let c = t.apply(
            &close_with_counters(
                nobody,
                (5557, 778),
                TCP_FIN_WAIT2,
                CLOSE_NO_RECORD | CLOSE_FIN_RECEIVED,
            ),
            SEC,
            |_| None,
        );
        let [Change::Close(e)] = c.as_slice() else { panic!("{c:?}") };
        assert_eq!((e.key.tgid, e.bytes_sent(), e.bytes_recv()), (42, 5555, 777));
        // An owner-less close of a connection the table never listed is no news.
        let stranger = ConnKey { tgid: 0, ..key(IPPROTO_TCP, 4001, 80) };
        let c = t.apply(&close_with_counters(stranger, (9, 9), 1, CLOSE_NO_RECORD), SEC, |_| None);
        assert!(c.is_empty(), "{c:?}");
        assert!(t.get(&stranger).is_none());
    }

    #[test]
    fn health_is_judged_between_reads_far_enough_apart() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let a = ConnKey { tgid: 7, ..key(IPPROTO_TCP, 5000, 80) };
        t.apply(&ev(EV_CONNECT, a, 0, 0), 0, |_| None);
        let dump_key = ConnKey { tgid: 0, ..a };
        let read = |t: &mut Table, retrans, at_ns| {
            let info = TcpInfo { total_retrans: retrans, rtt_us: retrans, ..TcpInfo::default() };
            t.live_tcp(&dump_key, (1, 0), 1, info, 1, at_ns);
            t.get(&a).unwrap().clone()
        };
        assert_eq!(read(&mut t, 1, SEC).health, None, "one read: nothing to compare");
        // 100 ms later: too soon to judge, and the first read stays the base.
        let e = read(&mut t, 2, SEC + SEC / 10);
        assert_eq!((e.health, e.tcp.rtt_us, e.tcp_at_ns), (None, 1, SEC));
        let e = read(&mut t, 4, 2 * SEC);
        let h = e.health.unwrap();
        assert_eq!((h.retransmits, h.interval_ms, e.tcp.rtt_us), (3, 1000, 4));
        assert!(h.marked());
        let h = read(&mut t, 4, 3 * SEC).health.unwrap();
        assert!(!h.marked(), "a quiet interval clears the mark");
    }

    #[test]
    fn live_reads_set_totals_and_what_a_read_misses_vanishes() {
        let mut t = Table::new(Duration::from_secs(5), Duration::from_secs(30));
        let a = ConnKey { tgid: 7, ..key(IPPROTO_TCP, 5000, 80) };
        let b = ConnKey { tgid: 7, ..key(IPPROTO_TCP, 5001, 80) };
        t.apply(&ev(EV_CONNECT, a, 0, 0), 0, |_| None);
        t.apply(&ev(EV_CONNECT, b, 0, 0), 0, |_| None);
        let mark = t.last_id();
        // The read finds `a` only (by tuple: dumps know no owner).
        let info = TcpInfo { rtt_us: 250, ..TcpInfo::default() };
        t.live_tcp(&ConnKey { tgid: 0, ..a }, (1001, 50), 1, info, 3, SEC);
        // Made after the read began: not the read's to end.
        let c = ConnKey { tgid: 7, ..key(IPPROTO_TCP, 5002, 80) };
        t.apply(&ev(EV_CONNECT, c, 0, 0), 0, |_| None);
        let read = |generation, netns, last_id, at_ns| ReadMark {
            generation,
            netns: vec![netns],
            last_id,
            at_ns,
        };
        t.read_applied(read(3, a.netns, mark, SEC));
        // The next read is part way in (it found `a`) when the reader looks.
        t.live_present(&ConnKey { tgid: 0, ..a }, 4);
        // Missed once: perhaps unhashed with its close event on the way.
        assert!(t.end_vanished(2 * SEC).is_empty());
        // The same read counts once, however often the reader looks.
        assert!(t.end_vanished(2 * SEC).is_empty());
        assert_eq!(t.read_age_ns(2 * SEC), Some(SEC));
        // Read 4 found `a` without its counters: the totals stay.
        t.read_applied(read(4, a.netns, mark, 3 * SEC));
        let ended = t.end_vanished(3 * SEC);
        let [Change::Close(e)] = ended.as_slice() else { panic!("{ended:?}") };
        assert_eq!((e.key, e.vanished), (b, true));
        let live = t.get(&a).unwrap();
        assert_eq!((live.bytes_sent(), live.bytes_recv(), live.tcp.rtt_us), (1000, 50, 250));
        assert!(live.closed_ns.is_none() && t.get(&c).unwrap().closed_ns.is_none());
        // `a` missed once, by the read after: still open.
        t.read_applied(read(5, a.netns, mark, 4 * SEC));
        assert!(t.end_vanished(4 * SEC).is_empty());
        // Another namespace's read says nothing of these.
        t.read_applied(read(6, a.netns + 1, t.last_id(), 5 * SEC));
        assert!(t.end_vanished(5 * SEC).is_empty());
        t.read_applied(read(7, a.netns + 1, t.last_id(), 6 * SEC));
        assert!(t.end_vanished(6 * SEC).is_empty());
        // Found again, then missed by reads for less than VANISH_AFTER_NS
        // (a virtual CPU held still between the unhash and the close
        // event): open.
        for k in [a, c] {
            t.live_present(&ConnKey { tgid: 0, ..k }, 8);
        }
        t.read_applied(read(8, a.netns, t.last_id(), 7 * SEC));
        assert!(t.end_vanished(7 * SEC).is_empty());
        for (generation, at) in [(9, 8 * SEC), (10, 8 * SEC + SEC / 2), (11, 9 * SEC + SEC / 2)] {
            t.read_applied(read(generation, a.netns, t.last_id(), at));
            assert!(
                t.end_vanished(at).is_empty(),
                "ended {} ms after the first miss",
                (at - 8 * SEC) / 1_000_000
            );
        }
        t.read_applied(read(12, a.netns, t.last_id(), 10 * SEC));
        assert_eq!(t.end_vanished(10 * SEC).len(), 2, "a and c, missed for 2 s");
    }
}
