//! The connection table: only the visible lines are turned into rows. On a
//! narrow terminal numbers are shortened first, then the columns a
//! diagnosis needs least are left out: the process and the remote end stay
//! longest.
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line as TextLine;
use ratatui::widgets::{Cell, Row as TableRow, Table};

use super::app::App;
use super::view::{Column, Line, RowFigures};
use crate::names::{Dns, Services};
use crate::text::{
    age, bytes, bytes_short, duration_us, elide_endpoint, escape_cow, rate, rate_short,
};
use crate::tracer::Tuple;
use crate::tracer::sock_diag::TcpInfo;
use crate::tracer::{Connection, Direction, Proto, State};
use std::net::IpAddr;

/// How rates and totals are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbers {
    /// `8.6 MiB/s`, `17.2 MiB`.
    Full,
    /// `8.6M/s`, `17M`: for narrow terminals.
    Short,
}

/// Left out first when the terminal is too narrow, in this order; the
/// process and the remote end never are.
const LEFT_OUT_FIRST: [Column; 16] = [
    Column::Pid,
    Column::Age,
    Column::Local,
    Column::Recv,
    Column::Sent,
    Column::Proto,
    Column::Delivery,
    Column::Cwnd,
    Column::Limit,
    Column::RecvQueue,
    Column::SendQueue,
    Column::Retrans,
    Column::Rtt,
    Column::RecvRate,
    Column::SendRate,
    Column::State,
];

/// The least a column needs: an IPv4 address and port, a rate with the
/// sort arrow in its title.
fn min_width(c: Column, numbers: Numbers) -> u16 {
    let short = numbers == Numbers::Short;
    match c {
        Column::Pid => 7,
        Column::Process => 12,
        Column::Proto => 5,
        Column::Local | Column::Remote if short => 16,
        Column::Local | Column::Remote => 21,
        // `← open* !`
        Column::State => 9,
        Column::SendRate | Column::RecvRate if short => 7,
        Column::SendRate | Column::RecvRate => 12,
        Column::Sent | Column::Recv if short => 6,
        Column::Sent | Column::Recv => 10,
        Column::Age => 6,
        Column::Rtt | Column::SendQueue | Column::RecvQueue => 7,
        Column::Retrans => 8,
        Column::Cwnd => 6,
        Column::Delivery if short => 7,
        Column::Delivery => 12,
        Column::Limit => 9,
    }
}

fn constraint(c: Column, numbers: Numbers) -> Constraint {
    match c {
        Column::Process => Constraint::Fill(2),
        Column::Local | Column::Remote => Constraint::Fill(3),
        c => Constraint::Length(min_width(c, numbers)),
    }
}

/// Which of `chosen` are shown in `width` cells, and how numbers are
/// written: everything at full width where it fits, else short numbers,
/// else without the columns of `LEFT_OUT_FIRST`, in its order, until it
/// fits.
pub fn fit(chosen: &[Column], width: u16) -> (Vec<Column>, Numbers) {
    let fits = |cols: &[Column], numbers| {
        let need: u16 = cols.iter().map(|&c| min_width(c, numbers) + 1).sum();
        need.saturating_sub(1) <= width
    };
    let mut cols = chosen.to_vec();
    if fits(&cols, Numbers::Full) {
        return (cols, Numbers::Full);
    }
    for c in LEFT_OUT_FIRST {
        if fits(&cols, Numbers::Short) {
            break;
        }
        cols.retain(|&k| k != c);
    }
    (cols, Numbers::Short)
}

fn right(c: Column) -> bool {
    !matches!(
        c,
        Column::Process
            | Column::Proto
            | Column::Local
            | Column::Remote
            | Column::State
            | Column::Limit
    )
}

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let (cols, numbers) = fit(app.columns(), area.width);
    let rects =
        Layout::horizontal(cols.iter().map(|&c| constraint(c, numbers))).spacing(1).split(area);
    app.table_area = area;
    app.column_x = cols.iter().zip(rects.iter()).map(|(&c, r)| (r.x, r.width, c)).collect();
    let t = app.theme;
    let arrow = if app.sort.descending_by_default() != app.reverse { "▼" } else { "▲" };
    let header = TableRow::new(cols.iter().map(|&c| {
        let title = if c == app.sort { format!("{}{arrow}", c.title()) } else { c.title().into() };
        let line = if right(c) { TextLine::from(title).right_aligned() } else { title.into() };
        Cell::from(line).style(if c == app.sort { t.sorted_column() } else { t.header_row() })
    }))
    .style(t.header_row());
    let naming = Naming {
        dns: app.dns_shown(),
        services: app.services.then(Services::system),
        grouped: app.grouped,
    };
    let height = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + height).min(app.lines.len());
    let rows = app.lines[app.offset.min(end)..end].iter().enumerate().map(|(i, &line)| {
        let cells = cols.iter().zip(rects.iter()).map(|(&c, rect)| {
            let text = match line {
                Line::Conn(r) => conn_cell(c, &app.rows[r], app.rows.figures(r), &naming, numbers),
                Line::Group(g) => group_cell(c, app, g, numbers),
                Line::Busy(_) => String::new(),
            };
            // Addresses lose their middle, not their port.
            let text = match c {
                Column::Local | Column::Remote => {
                    elide_endpoint(&text, rect.width.into()).into_owned()
                }
                _ => text,
            };
            Cell::from(if right(c) { TextLine::from(text).right_aligned() } else { text.into() })
        });
        let mut style = match line {
            Line::Conn(r) if app.rows[r].state == State::Closed => t.closed(),
            Line::Conn(r) if marked(&app.rows[r]) => t.warn(),
            Line::Group(_) => t.group(),
            Line::Busy(_) => ratatui::style::Style::new(),
            Line::Conn(_) => ratatui::style::Style::new(),
        };
        if app.offset + i == app.cursor {
            style = style.patch(t.selected());
        }
        TableRow::new(cells).style(style)
    });
    let widths: Vec<Constraint> = rects.iter().map(|r| Constraint::Length(r.width)).collect();
    f.render_widget(Table::new(rows, widths).header(header).column_spacing(1), area);
}

pub fn proto_text(proto: Proto, family: u8) -> &'static str {
    match (proto, family) {
        (Proto::Tcp, 6) => "tcp6",
        (Proto::Tcp, _) => "tcp",
        (Proto::Udp, 6) => "udp6",
        (Proto::Udp, _) => "udp",
    }
}

/// `→ open` (we connected), `← open` (we accepted), `· open` (UDP: no
/// direction); `*` marks a connection that predates nettop, `!` one whose
/// last interval looked unhealthy (retransmits, a stall, a zero window).
pub fn state_text(c: &Connection) -> String {
    let arrow = match c.direction {
        Direction::Outgoing => '→',
        Direction::Incoming => '←',
        Direction::Unknown => '·',
    };
    let s = match c.state {
        State::Open => "open",
        State::Closed => "closed",
    };
    let older = if c.backfilled { "*" } else { "" };
    let mark = if marked(c) { " !" } else { "" };
    format!("{arrow} {s}{older}{mark}")
}

/// Whether the last interval looked unhealthy.
pub fn marked(c: &Connection) -> bool {
    c.health.is_some_and(|h| h.marked())
}

impl Numbers {
    fn rate(self, bytes_per_s: f64) -> String {
        match self {
            Numbers::Full => rate(bytes_per_s),
            Numbers::Short => rate_short(bytes_per_s),
        }
    }

    fn bytes(self, n: u64) -> String {
        match self {
            Numbers::Full => bytes(n),
            Numbers::Short => bytes_short(n),
        }
    }
}

/// How a row's ends and process read: names where the user wants them.
pub struct Naming<'a> {
    pub dns: Option<&'a Dns>,
    pub services: Option<&'a Services>,
    /// Rows under their process: the name indented.
    pub grouped: bool,
}

impl Naming<'_> {
    fn port(&self, port: u16, proto: Proto) -> String {
        match self.services.and_then(|s| s.name(port, proto)) {
            Some(name) => escape_cow(name).into_owned(),
            None => port.to_string(),
        }
    }

    /// `10.0.0.5:https`, `[2001:db8::5]:39000`.
    pub fn local(&self, t: &Tuple) -> String {
        format!("{}:{}", host_text(t.laddr), self.port(t.lport, t.proto))
    }

    /// `github.com:https` where the address has a name, `*` for a UDP
    /// socket's unknown peers.
    pub fn remote(&self, t: &Tuple) -> String {
        let Some(addr) = t.raddr else {
            return "*".into();
        };
        let host = match self.dns.and_then(|d| d.name(addr)) {
            Some(name) => escape_cow(&name).into_owned(),
            None => host_text(addr),
        };
        format!("{host}:{}", self.port(t.rport, t.proto))
    }
}

fn host_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn conn_cell(
    col: Column,
    c: &Connection,
    r: RowFigures,
    naming: &Naming,
    numbers: Numbers,
) -> String {
    if col.tcp_only() && c.tuple.proto == Proto::Udp {
        return "—".into();
    }
    let tcp = |f: &dyn Fn(&TcpInfo) -> String| c.tcp.as_ref().map(f).unwrap_or_default();
    match col {
        Column::Pid => c.owner.pid.to_string(),
        Column::Process => {
            let name = escape_cow(&c.owner.comm);
            if naming.grouped { format!("  └ {name}") } else { name.into_owned() }
        }
        Column::Proto => proto_text(c.tuple.proto, c.tuple.family).into(),
        Column::Local => naming.local(&c.tuple),
        Column::Remote => naming.remote(&c.tuple),
        Column::State => state_text(c),
        Column::SendRate => numbers.rate(r.send),
        Column::RecvRate => numbers.rate(r.recv),
        Column::Sent => numbers.bytes(c.bytes_sent),
        Column::Recv => numbers.bytes(c.bytes_recv),
        // Older than nettop: its age is at least this.
        Column::Age if c.backfilled => format!("{}+", age(r.age_s)),
        Column::Age => age(r.age_s),
        Column::Rtt => tcp(&|t| duration_us(t.rtt_us)),
        // The total, and what came in the last interval.
        Column::Retrans => match c.health {
            Some(h) if h.retransmits > 0 => format!("+{} {}", h.retransmits, c.retransmits),
            _ => c.retransmits.to_string(),
        },
        Column::SendQueue => tcp(&|t| bytes_short(u64::from(t.send_queue))),
        Column::RecvQueue => tcp(&|t| bytes_short(u64::from(t.recv_queue))),
        Column::Cwnd => tcp(&|t| t.snd_cwnd.to_string()),
        Column::Delivery => tcp(&|t| numbers.rate(t.delivery_rate as f64)),
        Column::Limit => {
            c.health.and_then(|h| h.send_limit).map(|l| l.label().into()).unwrap_or_default()
        }
    }
}

fn group_cell(col: Column, app: &App, g: usize, numbers: Numbers) -> String {
    let grp = &app.groups[g];
    match col {
        Column::Pid => grp.pid.to_string(),
        Column::Process => {
            let owner = &app.rows[grp.first].owner;
            let mark = if app.expanded.contains(&grp.pid) { '▾' } else { '▸' };
            format!("{mark} {}", escape_cow(&owner.comm))
        }
        Column::Local => {
            let n = grp.members.len();
            format!("{n} connection{}", if n == 1 { "" } else { "s" })
        }
        Column::State => format!("{} open", grp.open),
        Column::SendRate => numbers.rate(grp.send_rate),
        Column::RecvRate => numbers.rate(grp.recv_rate),
        Column::Sent => numbers.bytes(grp.sent),
        Column::Recv => numbers.bytes(grp.recv),
        Column::Age => age(grp.age_s),
        _ => String::new(),
    }
}
