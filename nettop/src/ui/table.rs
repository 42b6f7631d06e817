//! The connection table: only the visible lines are turned into rows.
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line as TextLine;
use ratatui::widgets::{Cell, Row as TableRow, Table};

use super::app::App;
use super::view::{Column, Line, RowFigures};
use crate::text::{age, bytes, escape_cow, rate};
use crate::tracer::{Connection, Direction, Proto, State};

fn constraint(c: Column) -> Constraint {
    match c {
        Column::Pid => Constraint::Length(7),
        Column::Process => Constraint::Fill(2),
        Column::Proto => Constraint::Length(5),
        Column::Local | Column::Remote => Constraint::Fill(3),
        Column::State => Constraint::Length(9),
        Column::SendRate | Column::RecvRate => Constraint::Length(12),
        Column::Sent | Column::Recv => Constraint::Length(10),
        Column::Age => Constraint::Length(6),
    }
}

fn right(c: Column) -> bool {
    !matches!(c, Column::Process | Column::Proto | Column::Local | Column::Remote | Column::State)
}

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let rects = Layout::horizontal(Column::ALL.map(constraint)).spacing(1).split(area);
    app.table_area = area;
    app.column_x = Column::ALL.iter().zip(rects.iter()).map(|(&c, r)| (r.x, r.width, c)).collect();
    let t = app.theme;
    let arrow = if app.sort.descending_by_default() != app.reverse { "▼" } else { "▲" };
    let header = TableRow::new(Column::ALL.map(|c| {
        let title = if c == app.sort { format!("{}{arrow}", c.title()) } else { c.title().into() };
        let line = if right(c) { TextLine::from(title).right_aligned() } else { title.into() };
        Cell::from(line).style(if c == app.sort { t.sorted_column() } else { t.header_row() })
    }))
    .style(t.header_row());
    let height = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + height).min(app.lines.len());
    let rows = app.lines[app.offset.min(end)..end].iter().enumerate().map(|(i, &line)| {
        let cells = match line {
            Line::Conn(r) => conn_cells(&app.rows[r], app.rows.figures(r), app.grouped),
            Line::Group(g) => group_cells(app, g),
        };
        let cells = Column::ALL.iter().zip(cells).map(|(&c, text)| {
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

fn conn_cells(c: &Connection, r: RowFigures, grouped: bool) -> [String; 11] {
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

fn group_cells(app: &App, g: usize) -> [String; 11] {
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
