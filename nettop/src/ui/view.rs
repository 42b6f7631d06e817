//! From a snapshot of connections to the ordered lines the table shows:
//! rates from cumulative counters, filtering, grouping by process, sorting.
//! Pure data; nothing here draws.
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::filter::{Filter, Subject};
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
}

impl Column {
    pub const ALL: [Column; 11] = [
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
        }
    }

    /// Numbers read best largest first; names A to Z.
    pub fn descending_by_default(self) -> bool {
        matches!(
            self,
            Column::SendRate | Column::RecvRate | Column::Sent | Column::Recv | Column::Age
        )
    }

    pub fn next(self) -> Column {
        let i = Column::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Column::ALL[(i + 1) % Column::ALL.len()]
    }
}

/// One connection with the rates of its last interval (bytes/s).
#[derive(Clone, Debug)]
pub struct Row {
    pub conn: Connection,
    pub send_rate: f64,
    pub recv_rate: f64,
    /// Seconds since it was first seen, or its lifetime once closed.
    pub age_s: u64,
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
}

/// What stays selected while lines re-sort: a connection's id, or a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Conn(u64),
    Group(u32),
}

/// Rates need the previous snapshot's counters.
#[derive(Default)]
pub struct RateState {
    prev: HashMap<u64, (u64, u64)>,
    prev_ns: u64,
}

impl RateState {
    /// Rows for a new snapshot taken at `now_ns` (CLOCK_MONOTONIC).
    pub fn rows(&mut self, conns: Vec<Connection>, now_ns: u64) -> Vec<Row> {
        let dt = now_ns.saturating_sub(self.prev_ns) as f64 / 1e9;
        let first = self.prev_ns == 0 || dt <= 0.0;
        let mut next = HashMap::with_capacity(conns.len());
        let rows = conns
            .into_iter()
            .map(|c| {
                next.insert(c.id, (c.bytes_sent, c.bytes_recv));
                // New since the last snapshot: all its bytes are this
                // interval's, unless it predates nettop (backfilled).
                let before = match self.prev.get(&c.id) {
                    Some(&p) => Some(p),
                    None if c.backfilled => None,
                    None => Some((0, 0)),
                };
                let (send_rate, recv_rate) = match before {
                    Some((s, r)) if !first => (
                        c.bytes_sent.saturating_sub(s) as f64 / dt,
                        c.bytes_recv.saturating_sub(r) as f64 / dt,
                    ),
                    _ => (0.0, 0.0),
                };
                let end = if c.state == State::Closed { c.last_ns } else { now_ns };
                let age_s =
                    if c.first_ns == 0 { 0 } else { end.saturating_sub(c.first_ns) / 1e9 as u64 };
                Row { conn: c, send_rate, recv_rate, age_s }
            })
            .collect();
        self.prev = next;
        self.prev_ns = now_ns;
        rows
    }
}

pub struct Options<'a> {
    pub filter: &'a Filter,
    pub show_closed: bool,
    pub grouped: bool,
    pub expanded: &'a HashSet<u32>,
    pub sort: Column,
    pub reverse: bool,
}

/// The table's lines, in order, and the groups they refer to.
pub fn lines(rows: &[Row], o: &Options) -> (Vec<Line>, Vec<Group>) {
    let mut shown: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            let c = &rows[i].conn;
            (o.show_closed || c.state == State::Open)
                && o.filter.matches(&Subject {
                    tuple: &c.tuple,
                    owner: &c.owner,
                    state: c.state,
                    direction: c.direction,
                })
        })
        .collect();
    let order = |a: &usize, b: &usize| {
        let o2 =
            compare(&rows[*a], &rows[*b], o.sort).then(rows[*a].conn.id.cmp(&rows[*b].conn.id));
        direct(o2, o)
    };
    shown.sort_unstable_by(order);
    if !o.grouped {
        return (shown.into_iter().map(Line::Conn).collect(), Vec::new());
    }
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for &i in &shown {
        let r = &rows[i];
        let g = *by_pid.entry(r.conn.owner.pid).or_insert_with(|| {
            groups.push(Group {
                pid: r.conn.owner.pid,
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
        g.send_rate += r.send_rate;
        g.recv_rate += r.recv_rate;
        g.sent += r.conn.bytes_sent;
        g.recv += r.conn.bytes_recv;
        g.age_s = g.age_s.max(r.age_s);
        g.open += usize::from(r.conn.state == State::Open);
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
            out.extend(groups[g].members.iter().map(|&i| Line::Conn(i)));
        }
    }
    (out, groups)
}

fn direct(ord: Ordering, o: &Options) -> Ordering {
    if o.sort.descending_by_default() != o.reverse { ord.reverse() } else { ord }
}

fn float(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

pub fn compare(a: &Row, b: &Row, col: Column) -> Ordering {
    let (x, y) = (&a.conn, &b.conn);
    match col {
        Column::Pid => x.owner.pid.cmp(&y.owner.pid),
        Column::Process => x.owner.comm.cmp(&y.owner.comm).then(x.owner.pid.cmp(&y.owner.pid)),
        Column::Proto => (x.tuple.proto as u8).cmp(&(y.tuple.proto as u8)),
        Column::Local => (x.tuple.laddr, x.tuple.lport).cmp(&(y.tuple.laddr, y.tuple.lport)),
        Column::Remote => (x.tuple.raddr, x.tuple.rport).cmp(&(y.tuple.raddr, y.tuple.rport)),
        Column::State => {
            (x.state as u8, x.direction as u8).cmp(&(y.state as u8, y.direction as u8))
        }
        // Ties in one rate fall to the other, so the busiest lead either way.
        Column::SendRate => float(a.send_rate, b.send_rate).then(float(a.recv_rate, b.recv_rate)),
        Column::RecvRate => float(a.recv_rate, b.recv_rate).then(float(a.send_rate, b.send_rate)),
        Column::Sent => x.bytes_sent.cmp(&y.bytes_sent),
        Column::Recv => x.bytes_recv.cmp(&y.bytes_recv),
        Column::Age => a.age_s.cmp(&b.age_s),
    }
}

fn compare_groups(rows: &[Row], a: &Group, b: &Group, col: Column) -> Ordering {
    match col {
        Column::Pid => a.pid.cmp(&b.pid),
        Column::Process => rows[a.first].conn.owner.comm.cmp(&rows[b.first].conn.owner.comm),
        Column::SendRate => float(a.send_rate, b.send_rate).then(float(a.recv_rate, b.recv_rate)),
        Column::RecvRate => float(a.recv_rate, b.recv_rate).then(float(a.send_rate, b.send_rate)),
        Column::Sent => a.sent.cmp(&b.sent),
        Column::Recv => a.recv.cmp(&b.recv),
        Column::Age => a.age_s.cmp(&b.age_s),
        // Columns without a per-process meaning sort by how many connections.
        Column::Proto | Column::Local | Column::Remote | Column::State => {
            a.members.len().cmp(&b.members.len())
        }
    }
}

pub fn key_of(line: Line, rows: &[Row], groups: &[Group]) -> Key {
    match line {
        Line::Conn(i) => Key::Conn(rows[i].conn.id),
        Line::Group(g) => Key::Group(groups[g].pid),
    }
}
