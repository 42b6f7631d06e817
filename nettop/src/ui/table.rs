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
use crate::text::{age, bytes, bytes_short, elide_middle, escape_cow, rate, rate_short};
use crate::tracer::{Connection, Direction, Proto, State};

/// How rates and totals are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbers {
    /// `8.6 MiB/s`, `17.2 MiB`.
    Full,
    /// `8.6M/s`, `17M`: for narrow terminals.
    Short,
}

/// Left out first when the terminal is too narrow, in this order.
const LEFT_OUT_FIRST: [Column; 9] = [
    Column::Pid,
    Column::Age,
    Column::Local,
    Column::Recv,
    Column::Sent,
    Column::Proto,
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
        Column::State if short => 8,
        Column::State => 9,
        Column::SendRate | Column::RecvRate if short => 7,
        Column::SendRate | Column::RecvRate => 12,
        Column::Sent | Column::Recv if short => 6,
        Column::Sent | Column::Recv => 10,
        Column::Age => 6,
    }
}

fn constraint(c: Column, numbers: Numbers) -> Constraint {
    match c {
        Column::Process => Constraint::Fill(2),
        Column::Local | Column::Remote => Constraint::Fill(3),
        c => Constraint::Length(min_width(c, numbers)),
    }
}

/// The columns shown in `width` cells, and how numbers are written:
/// everything at full width where it fits, else short numbers, else
/// without the columns of `LEFT_OUT_FIRST`, in its order, until it fits.
pub fn fit(width: u16) -> (Vec<Column>, Numbers) {
    let fits = |cols: &[Column], numbers| {
        let need: u16 = cols.iter().map(|&c| min_width(c, numbers) + 1).sum();
        need.saturating_sub(1) <= width
    };
    let mut cols = Column::ALL.to_vec();
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
    !matches!(c, Column::Process | Column::Proto | Column::Local | Column::Remote | Column::State)
}

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let (cols, numbers) = fit(area.width);
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
    let height = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + height).min(app.lines.len());
    let rows = app.lines[app.offset.min(end)..end].iter().enumerate().map(|(i, &line)| {
        let cells = match line {
            Line::Conn(r) => conn_cells(&app.rows[r], app.rows.figures(r), app.grouped, numbers),
            Line::Group(g) => group_cells(app, g, numbers),
        };
        let cells = cols.iter().zip(rects.iter()).map(|(&c, rect)| {
            let text = &cells[Column::ALL.iter().position(|&k| k == c).unwrap_or(0)];
            // Addresses lose their middle, not their port.
            let text = match c {
                Column::Local | Column::Remote => elide_middle(text, rect.width.into()),
                _ => text.as_str().into(),
            };
            let text = text.into_owned();
            Cell::from(if right(c) { TextLine::from(text).right_aligned() } else { text.into() })
        });
        let mut style = match line {
            Line::Conn(r) if app.rows[r].state == State::Closed => t.closed(),
            Line::Group(_) => t.group(),
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
/// direction); `*` marks a connection that predates nettop.
pub fn state_text(state: State, dir: Direction, backfilled: bool) -> String {
    let arrow = match dir {
        Direction::Outgoing => '→',
        Direction::Incoming => '←',
        Direction::Unknown => '·',
    };
    let s = match state {
        State::Open => "open",
        State::Closed => "closed",
    };
    format!("{arrow} {s}{}", if backfilled { "*" } else { "" })
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

fn conn_cells(c: &Connection, r: RowFigures, grouped: bool, numbers: Numbers) -> [String; 11] {
    let (rate, bytes) = (|v| numbers.rate(v), |n| numbers.bytes(n));
    let name = escape_cow(&c.owner.comm);
    [
        c.owner.pid.to_string(),
        if grouped { format!("  └ {name}") } else { name.into_owned() },
        proto_text(c.tuple.proto, c.tuple.family).into(),
        c.tuple.local(),
        c.tuple.remote(),
        state_text(c.state, c.direction, c.backfilled),
        rate(r.send),
        rate(r.recv),
        bytes(c.bytes_sent),
        bytes(c.bytes_recv),
        // Older than nettop: its age is at least this.
        if c.backfilled { format!("{}+", age(r.age_s)) } else { age(r.age_s) },
    ]
}

fn group_cells(app: &App, g: usize, numbers: Numbers) -> [String; 11] {
    let (rate, bytes) = (|v| numbers.rate(v), |n| numbers.bytes(n));
    let grp = &app.groups[g];
    let owner = &app.rows[grp.first].owner;
    let mark = if app.expanded.contains(&grp.pid) { '▾' } else { '▸' };
    let n = grp.members.len();
    [
        grp.pid.to_string(),
        format!("{mark} {}", escape_cow(&owner.comm)),
        String::new(),
        format!("{n} connection{}", if n == 1 { "" } else { "s" }),
        String::new(),
        format!("{} open", grp.open),
        rate(grp.send_rate),
        rate(grp.recv_rate),
        bytes(grp.sent),
        bytes(grp.recv),
        age(grp.age_s),
    ]
}
