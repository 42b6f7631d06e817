//! The process and peer views: who has been busiest, by rate now and by
//! bytes since nettop started (closed connections included, from the
//! ledger). Enter lists a row's connections.
use std::cmp::Ordering;
use std::net::IpAddr;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line as TextLine;
use ratatui::widgets::{Cell, Row as TableRow, Table};
use rustc_hash::FxHashMap;

use super::app::App;
use super::ledger::{Ledger, MAX_DISTINCT, Tally};
use super::view::{RowFigures, Rows};
use crate::text::{bytes, elide_middle, escape_cow, rate};

/// Which table the screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Connections,
    Processes,
    Peers,
}

impl View {
    pub fn title(self) -> &'static str {
        match self {
            View::Connections => "connections",
            View::Processes => "processes",
            View::Peers => "peers",
        }
    }

    pub fn next(self) -> View {
        match self {
            View::Connections => View::Processes,
            View::Processes => View::Peers,
            View::Peers => View::Connections,
        }
    }
}

/// What a process or peer row stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BusyKey {
    Process(u32),
    Peer(IpAddr),
    /// Processes folded away (exited, oldest first).
    Exited,
    /// Peers folded away.
    OtherPeers,
}

/// How the process and peer views rank their rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusySort {
    /// Send plus receive rate now.
    Rate,
    /// Bytes both ways since nettop started.
    Total,
    SendRate,
    RecvRate,
    Sent,
    Recv,
}

impl BusySort {
    pub fn next(self) -> BusySort {
        match self {
            BusySort::Rate => BusySort::Total,
            BusySort::Total => BusySort::SendRate,
            BusySort::SendRate => BusySort::RecvRate,
            BusySort::RecvRate => BusySort::Sent,
            BusySort::Sent => BusySort::Recv,
            BusySort::Recv => BusySort::Rate,
        }
    }

    fn marks(self, title: &str) -> bool {
        matches!(
            (self, title),
            (BusySort::Rate | BusySort::SendRate, "SEND/s")
                | (BusySort::Rate | BusySort::RecvRate, "RECV/s")
                | (BusySort::Total | BusySort::Sent, "SENT")
                | (BusySort::Total | BusySort::Recv, "RECV")
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BusyRow {
    pub key: BusyKey,
    pub label: String,
    /// Connections open now, and seen since nettop started.
    pub open: usize,
    pub connections: u64,
    /// Distinct peers of a process, or processes of a peer (at most
    /// MAX_DISTINCT counted).
    pub distinct: usize,
    pub send_rate: f64,
    pub recv_rate: f64,
    pub sent: u64,
    pub recv: u64,
}

/// Rates and open connections now, per process or per peer.
#[derive(Default, Clone, Copy)]
struct Now {
    open: usize,
    send: f64,
    recv: f64,
}

/// The rows of `view` (Processes or Peers), ranked.
pub fn rows(
    ledger: &Ledger,
    rows: &Rows,
    view: View,
    sort: BusySort,
    reverse: bool,
) -> Vec<BusyRow> {
    let row = |key, t: &Tally, now: Now| BusyRow {
        key,
        label: t.label.to_string(),
        open: now.open,
        connections: t.connections,
        distinct: t.distinct.len(),
        send_rate: now.send,
        recv_rate: now.recv,
        sent: t.sent,
        recv: t.recv,
    };
    // Each row's rates and open connections now, keyed as the ledger is.
    fn ranked<K: Copy + Eq + std::hash::Hash>(
        tallies: &FxHashMap<K, Tally>,
        folded: (BusyKey, &Tally),
        key: fn(K) -> BusyKey,
        each_now: impl Iterator<Item = (K, RowFigures)>,
        row: impl Fn(BusyKey, &Tally, Now) -> BusyRow,
    ) -> Vec<BusyRow> {
        let mut now: FxHashMap<K, Now> = FxHashMap::default();
        for (k, f) in each_now {
            let n = now.entry(k).or_default();
            n.open += usize::from(f.open);
            (n.send, n.recv) = (n.send + f.send, n.recv + f.recv);
        }
        let mut v: Vec<BusyRow> = tallies
            .iter()
            .map(|(&k, t)| row(key(k), t, now.get(&k).copied().unwrap_or_default()))
            .collect();
        if folded.1.connections > 0 {
            v.push(row(folded.0, folded.1, Now::default()));
        }
        v
    }
    let mut out: Vec<BusyRow> = match view {
        View::Processes => ranked(
            &ledger.processes,
            (BusyKey::Exited, &ledger.exited),
            BusyKey::Process,
            rows.figures.iter().map(|f| (f.pid, *f)),
            row,
        ),
        View::Peers => ranked(
            &ledger.peers,
            (BusyKey::OtherPeers, &ledger.other_peers),
            BusyKey::Peer,
            (0..rows.len()).filter_map(|i| rows[i].tuple.raddr.map(|ip| (ip, rows.figures(i)))),
            row,
        ),
        View::Connections => Vec::new(),
    };
    let float = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    out.sort_by(|a, b| {
        let o = match sort {
            BusySort::Rate => float(a.send_rate + a.recv_rate, b.send_rate + b.recv_rate)
                .then((a.sent + a.recv).cmp(&(b.sent + b.recv))),
            BusySort::Total => (a.sent + a.recv).cmp(&(b.sent + b.recv)),
            BusySort::SendRate => float(a.send_rate, b.send_rate),
            BusySort::RecvRate => float(a.recv_rate, b.recv_rate),
            BusySort::Sent => a.sent.cmp(&b.sent),
            BusySort::Recv => a.recv.cmp(&b.recv),
        };
        // Largest first; ties by label, then key, so the order holds still.
        let o = if reverse { o } else { o.reverse() };
        o.then_with(|| a.label.cmp(&b.label)).then_with(|| a.key.cmp(&b.key))
    });
    out
}

const TITLES: [&str; 8] = ["", "", "CONNS", "", "SEND/s", "RECV/s", "SENT", "RECV"];

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let t = app.theme;
    let (first, second, distinct) = match app.view {
        View::Peers => ("PEER", "NAME", "PROCS"),
        _ => ("PID", "PROCESS", "PEERS"),
    };
    let arrow = if app.busy_reverse { "▲" } else { "▼" };
    let header = TableRow::new(TITLES.iter().enumerate().map(|(i, &title)| {
        let title = match i {
            0 => first,
            1 => second,
            3 => distinct,
            _ => title,
        };
        let marked = app.busy_sort.marks(title);
        let text = if marked { format!("{title}{arrow}") } else { title.to_owned() };
        let line = if i >= 2 { TextLine::from(text).right_aligned() } else { text.into() };
        Cell::from(line).style(if marked { t.sorted_column() } else { t.header_row() })
    }))
    .style(t.header_row());
    app.table_area = area;
    app.column_x.clear();
    let height = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + height).min(app.busy.len());
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    let first_width = usize::from(area.width / 5);
    let rows = app.busy[app.offset.min(end)..end].iter().enumerate().map(|(i, r)| {
        let (first, second) = match r.key {
            BusyKey::Process(pid) => (pid.to_string(), escape_cow(&r.label).into_owned()),
            BusyKey::Peer(ip) => {
                let name = app.dns_shown().and_then(|d| d.name(ip));
                let addr = elide_middle(&r.label, first_width).into_owned();
                (addr, name.map(|n| escape_cow(&n).into_owned()).unwrap_or_default())
            }
            BusyKey::Exited => ("—".into(), "(exited)".into()),
            BusyKey::OtherPeers => ("—".into(), "(other peers)".into()),
        };
        let distinct = if r.distinct >= MAX_DISTINCT {
            format!("{MAX_DISTINCT}+")
        } else {
            r.distinct.to_string()
        };
        let right = |s: String| Cell::from(TextLine::from(s).right_aligned());
        let cells = vec![
            Cell::from(first),
            Cell::from(second),
            right(format!("{}/{}", r.open, r.connections)),
            right(distinct),
            right(rate(r.send_rate)),
            right(rate(r.recv_rate)),
            right(bytes(r.sent)),
            right(bytes(r.recv)),
        ];
        let mut style = ratatui::style::Style::new();
        if r.open == 0 {
            style = t.closed();
        }
        if app.offset + i == app.cursor {
            style = style.patch(t.selected());
        }
        TableRow::new(cells).style(style)
    });
    f.render_widget(Table::new(rows, widths).header(header).column_spacing(1), area);
}
