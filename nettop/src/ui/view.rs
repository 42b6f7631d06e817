//! From a snapshot of connections to the ordered lines the table shows:
//! rates from cumulative counters, filtering, grouping by process, sorting.
//! Pure data; nothing here draws.
use std::cmp::Ordering;
use std::collections::HashSet;

use rustc_hash::FxHashMap;
use std::net::IpAddr;

use super::busiest::BusyRow;
use crate::filter::{Filter, Subject};
use crate::names::Dns;
use crate::tracer::sock_diag::TcpInfo;
use crate::tracer::{Connection, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Pid,
    Process,
    Proto,
    Local,
    Remote,
    State,
    SendRate,
    RecvRate,
    Sent,
    Recv,
    Age,
    /// TCP health, from the kernel's `tcp_info` at each refresh.
    Rtt,
    Retrans,
    SendQueue,
    RecvQueue,
    Cwnd,
    Delivery,
    Limit,
}

impl Column {
    pub const EVERY: [Column; 18] = [
        Column::Pid,
        Column::Process,
        Column::Proto,
        Column::Local,
        Column::Remote,
        Column::State,
        Column::SendRate,
        Column::RecvRate,
        Column::Sent,
        Column::Recv,
        Column::Age,
        Column::Rtt,
        Column::Retrans,
        Column::SendQueue,
        Column::RecvQueue,
        Column::Cwnd,
        Column::Delivery,
        Column::Limit,
    ];

    /// Shown at start: all of it fits 120 columns with short numbers.
    pub const DEFAULT: [Column; 12] = [
        Column::Pid,
        Column::Process,
        Column::Proto,
        Column::Local,
        Column::Remote,
        Column::State,
        Column::Rtt,
        Column::SendRate,
        Column::RecvRate,
        Column::Sent,
        Column::Recv,
        Column::Age,
    ];

    /// The `t` key's set: how each TCP connection is doing.
    pub const HEALTH: [Column; 12] = [
        Column::Pid,
        Column::Process,
        Column::Remote,
        Column::State,
        Column::Rtt,
        Column::Retrans,
        Column::SendQueue,
        Column::RecvQueue,
        Column::Cwnd,
        Column::Limit,
        Column::SendRate,
        Column::RecvRate,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Pid => "PID",
            Column::Process => "PROCESS",
            Column::Proto => "PROTO",
            Column::Local => "LOCAL",
            Column::Remote => "REMOTE",
            Column::State => "STATE",
            Column::SendRate => "SEND/s",
            Column::RecvRate => "RECV/s",
            Column::Sent => "SENT",
            Column::Recv => "RECV",
            Column::Age => "AGE",
            Column::Rtt => "RTT",
            Column::Retrans => "RETRANS",
            Column::SendQueue => "SEND-Q",
            Column::RecvQueue => "RECV-Q",
            Column::Cwnd => "CWND",
            Column::Delivery => "DELIVERY",
            Column::Limit => "LIMIT",
        }
    }

    /// The name `--columns` takes.
    pub fn name(self) -> &'static str {
        match self {
            Column::Pid => "pid",
            Column::Process => "process",
            Column::Proto => "proto",
            Column::Local => "local",
            Column::Remote => "remote",
            Column::State => "state",
            Column::SendRate => "send-rate",
            Column::RecvRate => "recv-rate",
            Column::Sent => "sent",
            Column::Recv => "recv",
            Column::Age => "age",
            Column::Rtt => "rtt",
            Column::Retrans => "retrans",
            Column::SendQueue => "send-q",
            Column::RecvQueue => "recv-q",
            Column::Cwnd => "cwnd",
            Column::Delivery => "delivery",
            Column::Limit => "limit",
        }
    }

    /// `--columns`: names separated by commas, in the order shown.
    pub fn parse_list(text: &str) -> Result<Vec<Column>, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let Some(&c) = Column::EVERY.iter().find(|c| c.name().eq_ignore_ascii_case(word))
            else {
                let names: Vec<&str> = Column::EVERY.iter().map(|c| c.name()).collect();
                return Err(format!("unknown column {word:?}; columns: {}", names.join(",")));
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err("--columns names no column".into());
        }
        Ok(out)
    }

    /// Values only a TCP connection has: `—` for UDP.
    pub fn tcp_only(self) -> bool {
        matches!(
            self,
            Column::Rtt
                | Column::Retrans
                | Column::SendQueue
                | Column::RecvQueue
                | Column::Cwnd
                | Column::Delivery
                | Column::Limit
        )
    }

    /// Numbers read best largest first; names A to Z.
    pub fn descending_by_default(self) -> bool {
        !matches!(
            self,
            Column::Pid
                | Column::Process
                | Column::Proto
                | Column::Local
                | Column::Remote
                | Column::State
                | Column::Limit
        )
    }

    /// The column after this one among `shown`, for the sort key.
    pub fn next_in(self, shown: &[Column]) -> Column {
        match shown.iter().position(|&c| c == self) {
            Some(i) => shown[(i + 1) % shown.len()],
            None => shown.first().copied().unwrap_or(self),
        }
    }
}

/// What the table shows of a connection besides the connection itself: its
/// rates over the last interval (bytes/s), its age, and what grouping and
/// the common views need without touching the connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowFigures {
    pub send: f64,
    pub recv: f64,
    /// Seconds since it was first seen, or its lifetime once closed.
    pub age_s: u64,
    /// Open, and the owner's pid: kept here so that the common views never
    /// touch the (much larger) connections at all.
    pub open: bool,
    pub pid: u32,
    /// Totals, for grouping without reading the connections.
    pub total_sent: u64,
    pub total_recv: u64,
    /// Bytes since the previous snapshot (all of a new connection's, none
    /// of one older than nettop when first seen): what the process and peer
    /// views add up.
    pub sent_delta: u64,
    pub recv_delta: u64,
    /// Not in the previous snapshot.
    pub first: bool,
}

/// A snapshot's connections, kept as the tracer made them (100 000 of them
/// are not copied), and their figures: entry i of one belongs to entry i of
/// the other.
#[derive(Default)]
pub struct Rows {
    pub conns: Vec<Connection>,
    pub figures: Vec<RowFigures>,
    /// In id order (as the tracer hands them out).
    pub sorted: bool,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn figures(&self, i: usize) -> RowFigures {
        self.figures[i]
    }

    /// The row of a connection id: a binary search, as the tracer hands
    /// connections out in id order (a scan otherwise).
    pub fn index_of(&self, id: u64) -> Option<usize> {
        if self.sorted {
            self.conns.binary_search_by_key(&id, |c| c.id).ok()
        } else {
            self.conns.iter().position(|c| c.id == id)
        }
    }
}

impl std::ops::Index<usize> for Rows {
    type Output = Connection;

    fn index(&self, i: usize) -> &Connection {
        &self.conns[i]
    }
}

/// One process's connections, summed.
#[derive(Clone, Debug)]
pub struct Group {
    pub pid: u32,
    /// Index of a member row, for the process's name and command line.
    pub first: usize,
    pub members: Vec<usize>,
    pub send_rate: f64,
    pub recv_rate: f64,
    pub sent: u64,
    pub recv: u64,
    pub age_s: u64,
    pub open: usize,
}

/// What a line of the table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Line {
    Conn(usize),
    Group(usize),
    /// A row of the process or peer view (`App::busy`).
    Busy(usize),
}

/// What stays selected while lines re-sort: a connection's id, or a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Conn(u64),
    Group(u32),
    Busy(super::busiest::BusyKey),
}

/// Rates need the previous snapshot's counters: (id, sent, received),
/// sorted by id, so a snapshot (which the tracer hands out in id order) is
/// matched in one sequential walk instead of 100 000 hash lookups.
#[derive(Default)]
pub struct RateState {
    prev: Vec<(u64, u64, u64)>,
    /// The one before, kept for its memory.
    spare: Vec<(u64, u64, u64)>,
    prev_ns: u64,
}

impl RateState {
    /// Rows for a new snapshot taken at `now_ns` (CLOCK_MONOTONIC).
    /// `reuse`: the previous snapshot's rates, whose memory is refilled
    /// (fresh pages for 100 000 rows cost more than computing them).
    pub fn rows(&mut self, conns: Vec<Connection>, now_ns: u64, reuse: Vec<RowFigures>) -> Rows {
        let dt = now_ns.saturating_sub(self.prev_ns) as f64 / 1e9;
        let first = self.prev_ns == 0 || dt <= 0.0;
        // The tracer hands them out in id order; anyone else may not.
        let sorted = conns.windows(2).all(|w| w[0].id < w[1].id);
        let order: Box<dyn Iterator<Item = usize>> = if sorted {
            Box::new(0..conns.len())
        } else {
            let mut order: Vec<usize> = (0..conns.len()).collect();
            order.sort_unstable_by_key(|&i| conns[i].id);
            Box::new(order.into_iter())
        };
        let mut rates = reuse;
        rates.clear();
        rates.resize(conns.len(), RowFigures::default());
        let mut next = std::mem::take(&mut self.spare);
        next.clear();
        let mut j = 0;
        for i in order {
            let c = &conns[i];
            while j < self.prev.len() && self.prev[j].0 < c.id {
                j += 1;
            }
            // New since the last snapshot: all its bytes are this
            // interval's, unless it predates nettop (backfilled).
            let before = match self.prev.get(j) {
                Some(&(id, s, r)) if id == c.id => Some((s, r)),
                _ if c.backfilled => None,
                _ => Some((0, 0)),
            };
            let seen = matches!(self.prev.get(j), Some(&(id, _, _)) if id == c.id);
            let (sent_delta, recv_delta) = match before {
                Some((s, r)) => (c.bytes_sent.saturating_sub(s), c.bytes_recv.saturating_sub(r)),
                None => (0, 0),
            };
            let (send, recv) =
                if first { (0.0, 0.0) } else { (sent_delta as f64 / dt, recv_delta as f64 / dt) };
            let end = if c.state == State::Closed { c.last_ns } else { now_ns };
            let age_s =
                if c.first_ns == 0 { 0 } else { end.saturating_sub(c.first_ns) / 1_000_000_000 };
            rates[i] = RowFigures {
                send,
                recv,
                age_s,
                open: c.state == State::Open,
                pid: c.owner.pid,
                total_sent: c.bytes_sent,
                total_recv: c.bytes_recv,
                sent_delta,
                recv_delta,
                first: !seen,
            };
            next.push((c.id, c.bytes_sent, c.bytes_recv));
        }
        self.spare = std::mem::replace(&mut self.prev, next);
        self.prev_ns = now_ns;
        Rows { conns, figures: rates, sorted }
    }

    /// Whether the last snapshot had this connection.
    pub fn has(&self, id: u64) -> bool {
        self.prev.binary_search_by_key(&id, |p| p.0).is_ok()
    }
}

pub struct Options<'a> {
    pub filter: &'a Filter,
    /// Resolves remote names for `host:` terms; None with names off.
    pub dns: Option<&'a Dns>,
    pub show_closed: bool,
    pub grouped: bool,
    pub expanded: &'a HashSet<u32>,
    pub sort: Column,
    pub reverse: bool,
}

/// The table's lines, in order, and the groups they refer to.
pub fn lines(rows: &Rows, o: &Options) -> (Vec<Line>, Vec<Group>) {
    let mut matcher = o.filter.matcher();
    // Names are asked for only when a term reads them: asking starts lookups.
    let dns = o.dns.filter(|_| o.filter.reads_names());
    let mut shown: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            let c = &rows[i];
            if !(o.show_closed || rows.figures[i].open) {
                return false;
            }
            if o.filter.is_empty() {
                return true;
            }
            let name = dns.zip(c.tuple.raddr).and_then(|(d, ip)| d.name(ip));
            matcher.matches(&Subject {
                tuple: &c.tuple,
                owner: &c.owner,
                state: c.state,
                direction: c.direction,
                health: c.health,
                remote_name: name.as_deref(),
            })
        })
        .collect();
    if !o.grouped {
        sort(rows, &mut shown, o);
        return (shown.into_iter().map(Line::Conn).collect(), Vec::new());
    }
    // Grouped, only the groups and the members of open groups need an
    // order: 100 000 rows are summed, not sorted. Only the compact rates
    // are read here.
    let mut by_pid: FxHashMap<u32, usize> = FxHashMap::default();
    let mut groups: Vec<Group> = Vec::new();
    for &i in &shown {
        let r = rows.figures(i);
        let g = *by_pid.entry(r.pid).or_insert_with(|| {
            groups.push(Group {
                pid: r.pid,
                first: i,
                members: Vec::new(),
                send_rate: 0.0,
                recv_rate: 0.0,
                sent: 0,
                recv: 0,
                age_s: 0,
                open: 0,
            });
            groups.len() - 1
        });
        let g = &mut groups[g];
        g.members.push(i);
        g.send_rate += r.send;
        g.recv_rate += r.recv;
        g.sent += r.total_sent;
        g.recv += r.total_recv;
        g.age_s = g.age_s.max(r.age_s);
        g.open += usize::from(r.open);
    }
    let mut gorder: Vec<usize> = (0..groups.len()).collect();
    gorder.sort_unstable_by(|&a, &b| {
        let o2 = compare_groups(rows, &groups[a], &groups[b], o.sort)
            .then(groups[a].pid.cmp(&groups[b].pid));
        direct(o2, o)
    });
    let mut out = Vec::with_capacity(groups.len());
    for g in gorder {
        out.push(Line::Group(g));
        if o.expanded.contains(&groups[g].pid) {
            sort(rows, &mut groups[g].members, o);
            out.extend(groups[g].members.iter().map(|&i| Line::Conn(i)));
        }
    }
    (out, groups)
}

fn sort(rows: &Rows, shown: &mut Vec<usize>, o: &Options) {
    let desc = o.sort.descending_by_default() != o.reverse;
    if o.sort == Column::Process {
        // Few distinct names, many rows: rank the names once, then sort
        // numbers rather than compare strings 100 000 · log times.
        // Rank by the name of each pid's first row: a process's rows share
        // its name, and reading each row's own name would cost a cache miss
        // per row (half of the sort's time at 100 000 rows).
        let mut names: Vec<&str> = Vec::new();
        let mut slot_of_pid: FxHashMap<u32, usize> = FxHashMap::default();
        let slots: Vec<usize> = shown
            .iter()
            .map(|&i| {
                *slot_of_pid.entry(rows.figures[i].pid).or_insert_with(|| {
                    names.push(rows[i].owner.comm.as_str());
                    names.len() - 1
                })
            })
            .collect();
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_unstable_by_key(|&slot| names[slot]);
        let mut rank = vec![0u64; names.len()];
        for (r, slot) in order.into_iter().enumerate() {
            rank[slot] = r as u64;
        }
        return by_keys(shown, desc, |pos, i| (rank[slots[pos]], u64::from(rows.figures[i].pid)));
    }
    let ip = |a: IpAddr| match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    // Rows are in id order, so their index breaks ties as the id would.
    match o.sort {
        Column::Local => {
            by_keys(shown, desc, |_, i| (ip(rows[i].tuple.laddr), u64::from(rows[i].tuple.lport)))
        }
        Column::Remote => by_keys(shown, desc, |_, i| {
            (rows[i].tuple.raddr.map_or(0, ip), u64::from(rows[i].tuple.rport))
        }),
        col => by_keys(shown, desc, |_, i| {
            let (c, r) = (&rows[i], rows.figures(i));
            // Rates are never negative, so their bits order like their values.
            match col {
                Column::Pid => (u64::from(r.pid), 0),
                Column::Proto => (c.tuple.proto as u64, 0),
                Column::State => (c.state as u64, c.direction as u64),
                // Ties in one rate fall to the other: the busiest lead.
                Column::SendRate => (r.send.to_bits(), r.recv.to_bits()),
                Column::RecvRate => (r.recv.to_bits(), r.send.to_bits()),
                Column::Sent => (c.bytes_sent, 0),
                Column::Recv => (c.bytes_recv, 0),
                Column::Age => (r.age_s, 0),
                Column::Rtt => (tcp_key(c, |t| u64::from(t.rtt_us)), 0),
                Column::Retrans => (
                    c.health.map_or(0, |h| u64::from(h.retransmits)),
                    tcp_key(c, |t| u64::from(t.total_retrans)),
                ),
                Column::SendQueue => (tcp_key(c, |t| u64::from(t.send_queue)), 0),
                Column::RecvQueue => (tcp_key(c, |t| u64::from(t.recv_queue)), 0),
                Column::Cwnd => (tcp_key(c, |t| u64::from(t.snd_cwnd)), 0),
                Column::Delivery => (tcp_key(c, |t| t.delivery_rate), 0),
                // Rows without a limit last.
                Column::Limit => {
                    (c.health.and_then(|h| h.send_limit).map_or(u64::MAX, |l| l as u64), 0)
                }
                Column::Process | Column::Local | Column::Remote => unreachable!("sorted above"),
            }
        }),
    }
}

/// A `tcp_info` figure as a sort key; 0 where there is none (UDP).
fn tcp_key(c: &Connection, f: impl Fn(&TcpInfo) -> u64) -> u64 {
    c.tcp.as_ref().map_or(0, f)
}

/// Sort through an array of small keys: comparing them in one array is
/// several times faster than chasing 100 000 rows.
/// `key` gets a row's position in `shown` and its index.
fn by_keys<K: Ord + Copy>(
    shown: &mut Vec<usize>,
    desc: bool,
    key: impl Fn(usize, usize) -> (K, u64),
) {
    let mut keys: Vec<(K, u64, u32)> = shown
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let (a, b) = key(pos, i);
            (a, b, i as u32)
        })
        .collect();
    if desc {
        keys.sort_unstable_by(|x, y| y.cmp(x));
    } else {
        keys.sort_unstable();
    }
    shown.clear();
    shown.extend(keys.into_iter().map(|k| k.2 as usize));
}

fn direct(ord: Ordering, o: &Options) -> Ordering {
    if o.sort.descending_by_default() != o.reverse { ord.reverse() } else { ord }
}

fn float(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

fn compare_groups(rows: &Rows, a: &Group, b: &Group, col: Column) -> Ordering {
    match col {
        Column::Pid => a.pid.cmp(&b.pid),
        Column::Process => rows[a.first].owner.comm.cmp(&rows[b.first].owner.comm),
        Column::SendRate => float(a.send_rate, b.send_rate).then(float(a.recv_rate, b.recv_rate)),
        Column::RecvRate => float(a.recv_rate, b.recv_rate).then(float(a.send_rate, b.send_rate)),
        Column::Sent => a.sent.cmp(&b.sent),
        Column::Recv => a.recv.cmp(&b.recv),
        Column::Age => a.age_s.cmp(&b.age_s),
        // Columns without a per-process meaning sort by how many connections.
        Column::Proto
        | Column::Local
        | Column::Remote
        | Column::State
        | Column::Rtt
        | Column::Retrans
        | Column::SendQueue
        | Column::RecvQueue
        | Column::Cwnd
        | Column::Delivery
        | Column::Limit => a.members.len().cmp(&b.members.len()),
    }
}

pub fn key_of(line: Line, rows: &Rows, groups: &[Group], busy: &[BusyRow]) -> Key {
    match line {
        Line::Conn(i) => Key::Conn(rows[i].id),
        Line::Group(g) => Key::Group(groups[g].pid),
        Line::Busy(b) => Key::Busy(busy[b].key),
    }
}
