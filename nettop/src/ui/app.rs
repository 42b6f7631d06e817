//! The TUI's state and what keys and the mouse do to it. Drawing lives in
//! the sibling modules; this one never touches a terminal.
use std::collections::HashSet;

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use super::busiest::{self, BusyKey, BusyRow, BusySort, View};
use super::history::History;
use super::ledger::Ledger;
use super::theme::Theme;
use super::trends::{Sample, Trends};
use super::view::{self, Column, Group, Key, Line, RateState, Rows};
use crate::filter::Filter;
use crate::names::Dns;
use crate::tracer::{Connection, Event, Info, Stats};

/// What the tracer reported at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC ns, the clock of the connections' timestamps.
    pub now_ns: u64,
    pub conns: Vec<Connection>,
    pub stats: Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

/// The filter line while it is being typed.
#[derive(Clone, Debug, Default)]
pub struct FilterInput {
    pub text: String,
    pub error: Option<String>,
}

/// Events kept while paused, to be taken in on resuming.
const HELD_EVENTS: usize = super::history::RECENT;

pub struct App {
    pub info: Info,
    /// The protections in force (`nettop::sandbox`), for the help screen.
    pub protections: String,
    pub theme: Theme,
    pub interval_s: f64,
    pub rows: Rows,
    pub lines: Vec<Line>,
    pub groups: Vec<Group>,
    pub stats: Stats,
    pub now_ns: u64,
    rates: RateState,
    pub send_total: f64,
    pub recv_total: f64,

    pub filter: Filter,
    /// The text of `filter`, as last kept.
    pub filter_text: String,
    pub input: Option<FilterInput>,
    pub sort: Column,
    pub reverse: bool,
    /// The columns chosen (`--columns`, else the default set), and whether
    /// the TCP health set (`t`) is shown instead.
    pub chosen_columns: Vec<Column>,
    pub health_columns: bool,
    /// Reverse DNS (None with `--no-resolve`), and whether remote ends show
    /// as names (`d`) and ports as services (`p`).
    pub dns: Option<Dns>,
    pub names: bool,
    pub services: bool,
    /// Connections, or the busiest processes or peers (`1`, `2`, `3`, Tab);
    /// the bytes those views add up, and their rows, ranked.
    pub view: View,
    pub ledger: Ledger,
    pub busy: Vec<BusyRow>,
    pub busy_sort: BusySort,
    pub busy_reverse: bool,
    /// Recent rates for the graph pane (`G`) and the details' sparklines.
    pub trends: Trends,
    pub graph: bool,
    pub grouped: bool,
    pub expanded: HashSet<u32>,
    pub show_closed: bool,
    pub paused: bool,
    pub help: bool,
    pub details: bool,
    pub events_pane: bool,

    /// The line the user chose, by identity, so it survives re-sorting;
    /// None until they move.
    pub selected: Option<Key>,
    pub cursor: usize,
    pub offset: usize,
    /// Set by drawing: where the table's rows and header are, for the mouse
    /// and for page-sized moves.
    pub table_area: Rect,
    pub column_x: Vec<(u16, u16, Column)>,

    /// The events pane's log and each connection's timeline.
    pub history: History,
    /// While paused, the newest snapshot and the events since, kept for later.
    held: Option<Snapshot>,
    held_events: Vec<Event>,
}

impl App {
    pub fn new(info: Info, filter: Filter, theme: Theme, interval_s: f64) -> App {
        App {
            info,
            protections: String::new(),
            theme,
            interval_s,
            rows: Rows::default(),
            lines: Vec::new(),
            groups: Vec::new(),
            stats: Stats::default(),
            now_ns: 0,
            rates: RateState::default(),
            send_total: 0.0,
            recv_total: 0.0,
            filter_text: filter.to_string(),
            filter,
            input: None,
            sort: Column::RecvRate,
            reverse: false,
            chosen_columns: Column::DEFAULT.to_vec(),
            health_columns: false,
            dns: None,
            names: true,
            services: true,
            view: View::Connections,
            ledger: Ledger::default(),
            busy: Vec::new(),
            busy_sort: BusySort::Rate,
            busy_reverse: false,
            trends: Trends::default(),
            graph: false,
            grouped: false,
            expanded: HashSet::new(),
            show_closed: true,
            paused: false,
            help: false,
            details: false,
            events_pane: false,
            selected: None,
            cursor: 0,
            offset: 0,
            table_area: Rect::default(),
            column_x: Vec::new(),
            history: History::default(),
            held: None,
            held_events: Vec::new(),
        }
    }

    /// The resolver, while names are shown.
    pub fn dns_shown(&self) -> Option<&Dns> {
        self.dns.as_ref().filter(|_| self.names)
    }

    /// The columns the table shows, before narrowing to the terminal.
    pub fn columns(&self) -> &[Column] {
        if self.health_columns { &Column::HEALTH } else { &self.chosen_columns }
    }

    pub fn ingest(&mut self, snap: Snapshot) {
        if self.paused {
            self.held = Some(snap);
            return;
        }
        self.now_ns = snap.now_ns;
        self.stats = snap.stats;
        let mut old = std::mem::take(&mut self.rows);
        let reuse = std::mem::take(&mut old.figures);
        self.rows = self.rates.rows(snap.conns, snap.now_ns, reuse);
        drop_elsewhere(old);
        self.ledger.take(&self.rows, snap.now_ns);
        self.send_total = self.rows.figures.iter().map(|r| r.send).sum();
        self.recv_total = self.rows.figures.iter().map(|r| r.recv).sum();
        let rates = &self.rates;
        self.history.prune(|id| rates.has(id));
        self.rebuild();
        self.sample_trends();
    }

    /// This refresh's figures for the host and for each line on screen.
    fn sample_trends(&mut self) {
        self.trends.host(self.send_total, self.recv_total);
        let end = (self.offset + self.page()).min(self.lines.len());
        for i in self.offset.min(end)..end {
            let line = self.lines[i];
            let sample = match line {
                Line::Conn(r) => {
                    let f = self.rows.figures(r);
                    let rtt_us = self.rows[r].tcp.map(|t| t.rtt_us);
                    Sample { send: f.send, recv: f.recv, rtt_us }
                }
                Line::Group(g) => {
                    let g = &self.groups[g];
                    Sample { send: g.send_rate, recv: g.recv_rate, rtt_us: None }
                }
                Line::Busy(b) => {
                    let b = &self.busy[b];
                    Sample { send: b.send_rate, recv: b.recv_rate, rtt_us: None }
                }
            };
            let key = view::key_of(line, &self.rows, &self.groups, &self.busy);
            self.trends.line(key, sample);
        }
    }

    /// The selected line's recent samples.
    pub fn selected_trend(&self) -> Option<&std::collections::VecDeque<Sample>> {
        self.current_key().and_then(|k| self.trends.of(k))
    }

    pub fn push_events(&mut self, events: Vec<Event>) {
        if self.paused {
            self.held_events.extend(events);
            let excess = self.held_events.len().saturating_sub(HELD_EVENTS);
            self.held_events.drain(..excess);
            return;
        }
        let rates = &self.rates;
        self.history.push_batch(events, |id| rates.has(id));
    }

    /// Re-filter, re-group and re-sort, keeping the selection on the same
    /// connection or process.
    pub fn rebuild(&mut self) {
        if self.view != View::Connections {
            self.busy = busiest::rows(
                &self.ledger,
                &self.rows,
                self.view,
                self.busy_sort,
                self.busy_reverse,
            );
            self.lines = (0..self.busy.len()).map(Line::Busy).collect();
            let found = match self.selected {
                Some(Key::Busy(k)) => self.busy.iter().position(|r| r.key == k),
                _ => None,
            };
            self.settle(found);
            return;
        }
        let (lines, groups) = view::lines(
            &self.rows,
            &view::Options {
                filter: &self.filter,
                dns: self.dns_shown(),
                show_closed: self.show_closed,
                grouped: self.grouped,
                expanded: &self.expanded,
                sort: self.sort,
                reverse: self.reverse,
            },
        );
        self.lines = lines;
        self.groups = groups;
        // Compare line indices, not keys: a key lookup per line would read
        // every connection (100 000 cache misses).
        let target = match self.selected {
            Some(Key::Conn(id)) => self.rows.index_of(id).map(Line::Conn),
            Some(Key::Group(pid)) => self.groups.iter().position(|g| g.pid == pid).map(Line::Group),
            Some(Key::Busy(_)) | None => None,
        };
        let found = target.and_then(|t| self.lines.iter().position(|&l| l == t));
        self.settle(found);
    }

    /// Put the cursor on the chosen line where it still is (`found`).
    fn settle(&mut self, found: Option<usize>) {
        match found {
            Some(i) => self.cursor = i,
            None => {
                // Nothing chosen yet (the top line is highlighted, whatever
                // it is), or the chosen line is gone: stay at that height.
                self.cursor = self.cursor.min(self.lines.len().saturating_sub(1));
                if self.selected.is_some() {
                    self.selected = self.current_key();
                }
            }
        }
        self.scroll_into_view();
    }

    fn current_key(&self) -> Option<Key> {
        self.lines.get(self.cursor).map(|&l| view::key_of(l, &self.rows, &self.groups, &self.busy))
    }

    /// Show another view, its top line chosen.
    fn show(&mut self, view: View) {
        self.view = view;
        (self.selected, self.cursor, self.offset) = (None, 0, 0);
        self.rebuild();
    }

    /// Enter on a process or peer: its connections.
    fn open_busy(&mut self, i: usize) {
        let text = match self.busy[i].key {
            BusyKey::Process(pid) => format!("pid:{pid}"),
            BusyKey::Peer(ip) => format!("addr:{ip}"),
            BusyKey::Exited | BusyKey::OtherPeers => return,
        };
        if let Ok(f) = Filter::parse(&text) {
            self.filter = f;
            self.filter_text = text;
        }
        self.show(View::Connections);
    }

    pub fn selected_line(&self) -> Option<Line> {
        self.lines.get(self.cursor).copied()
    }

    fn page(&self) -> usize {
        usize::from(self.table_area.height.saturating_sub(1)).max(1)
    }

    fn move_to(&mut self, i: usize) {
        self.cursor = i.min(self.lines.len().saturating_sub(1));
        self.selected = self.current_key();
        self.scroll_into_view();
    }

    fn move_by(&mut self, d: isize) {
        self.move_to(self.cursor.saturating_add_signed(d));
    }

    fn scroll_into_view(&mut self) {
        let page = self.page();
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        self.offset = self.offset.min(self.lines.len().saturating_sub(page));
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.input.is_some() {
            self.filter_key(k);
            return Action::Continue;
        }
        if self.help {
            // Any key leaves the help; q still quits.
            self.help = false;
            return if k.code == KeyCode::Char('q') { Action::Quit } else { Action::Continue };
        }
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-(self.page() as isize)),
            KeyCode::PageDown => self.move_by(self.page() as isize),
            KeyCode::Home => self.move_to(0),
            KeyCode::End => self.move_to(usize::MAX),
            KeyCode::Char('1') => self.show(View::Connections),
            KeyCode::Char('2') => self.show(View::Processes),
            KeyCode::Char('3') => self.show(View::Peers),
            KeyCode::Tab => self.show(self.view.next()),
            KeyCode::Char('s') if self.view != View::Connections => {
                self.busy_sort = self.busy_sort.next();
                self.rebuild();
            }
            KeyCode::Char('S') if self.view != View::Connections => {
                self.busy_reverse = !self.busy_reverse;
                self.rebuild();
            }
            KeyCode::Enter if self.view != View::Connections => {
                if let Some(Line::Busy(i)) = self.selected_line() {
                    self.open_busy(i);
                }
            }
            KeyCode::Char('s') => self.sort_by(self.sort.next_in(self.columns()), false),
            KeyCode::Char('t') => self.health_columns = !self.health_columns,
            KeyCode::Char('S') => {
                self.reverse = !self.reverse;
                self.rebuild();
            }
            KeyCode::Char('/') => {
                self.input = Some(FilterInput { text: self.filter_text.clone(), error: None })
            }
            KeyCode::Char('g') => {
                self.grouped = !self.grouped;
                // Stay on the selected connection's process, and back.
                self.selected = match (self.selected, self.selected_line()) {
                    (_, Some(Line::Conn(i))) if self.grouped => {
                        let pid = self.rows[i].owner.pid;
                        Some(Key::Group(pid))
                    }
                    (_, Some(Line::Group(g))) => {
                        self.groups[g].members.first().map(|&i| Key::Conn(self.rows[i].id))
                    }
                    (s, _) => s,
                };
                self.rebuild();
            }
            KeyCode::Enter => match self.selected_line() {
                Some(Line::Group(g)) => self.toggle_group(self.groups[g].pid, None),
                Some(Line::Conn(_)) => self.details = !self.details,
                Some(Line::Busy(_)) | None => {}
            },
            KeyCode::Right | KeyCode::Char('+') => {
                if let Some(Line::Group(g)) = self.selected_line() {
                    self.toggle_group(self.groups[g].pid, Some(true));
                }
            }
            KeyCode::Left | KeyCode::Char('-') => match self.selected_line() {
                Some(Line::Group(g)) => self.toggle_group(self.groups[g].pid, Some(false)),
                Some(Line::Conn(i)) if self.grouped => {
                    // Collapse the group this connection belongs to.
                    let pid = self.rows[i].owner.pid;
                    self.selected = Some(Key::Group(pid));
                    self.toggle_group(pid, Some(false));
                }
                _ => {}
            },
            KeyCode::Esc => {
                self.details = false;
                self.help = false;
            }
            KeyCode::Char('e') => self.events_pane = !self.events_pane,
            KeyCode::Char('G') => self.graph = !self.graph,
            KeyCode::Char('c') => {
                self.show_closed = !self.show_closed;
                self.rebuild();
            }
            KeyCode::Char(' ') => self.toggle_pause(),
            KeyCode::Char('d') => {
                self.names = !self.names;
                self.rebuild();
            }
            KeyCode::Char('p') => self.services = !self.services,
            _ => {}
        }
        Action::Continue
    }

    fn toggle_group(&mut self, pid: u32, open: Option<bool>) {
        let now = open.unwrap_or(!self.expanded.contains(&pid));
        if now {
            self.expanded.insert(pid);
        } else {
            self.expanded.remove(&pid);
        }
        self.rebuild();
    }

    fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused {
            let events = std::mem::take(&mut self.held_events);
            self.push_events(events);
            if let Some(s) = self.held.take() {
                self.ingest(s);
            }
        }
    }

    pub fn sort_by(&mut self, col: Column, toggle_if_same: bool) {
        if toggle_if_same && col == self.sort {
            self.reverse = !self.reverse;
        } else {
            self.sort = col;
            self.reverse = false;
        }
        self.rebuild();
    }

    fn filter_key(&mut self, k: KeyEvent) {
        let Some(input) = self.input.as_mut() else { return };
        match k.code {
            KeyCode::Esc => {
                self.input = None;
                self.set_filter(String::new(), Filter::default());
                return;
            }
            KeyCode::Enter => {
                // Keeps the last filter that parsed.
                self.input = None;
                return;
            }
            KeyCode::Backspace => {
                input.text.pop();
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                input.text.clear();
            }
            KeyCode::Char('w') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                let keep = input.text.trim_end().rfind(' ').map_or(0, |i| i + 1);
                input.text.truncate(keep);
            }
            KeyCode::Char(c) if !c.is_control() => input.text.push(c),
            _ => return,
        }
        // Live: every keystroke that parses is applied at once; one that
        // does not shows why and leaves the last good filter in force.
        let text = input.text.clone();
        match Filter::parse(&text) {
            Ok(f) => {
                input.error = None;
                self.set_filter(text, f);
            }
            Err(e) => input.error = Some(e.to_string()),
        }
    }

    fn set_filter(&mut self, text: String, f: Filter) {
        self.filter = f;
        self.filter_text = text;
        self.rebuild();
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let a = self.table_area;
        match m.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            MouseEventKind::Down(MouseButton::Left) => {
                let inside = m.column >= a.x && m.column < a.x + a.width;
                if !inside || m.row < a.y || m.row >= a.y + a.height {
                    return;
                }
                if m.row == a.y {
                    let hit =
                        self.column_x.iter().find(|(x, w, _)| m.column >= *x && m.column < x + w);
                    if let Some(&(_, _, col)) = hit {
                        self.sort_by(col, true);
                    }
                } else {
                    let i = self.offset + usize::from(m.row - a.y - 1);
                    if i < self.lines.len() {
                        self.move_to(i);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Freeing 100 000 connections' strings takes milliseconds the next frame
/// should not wait for: a short-lived thread does it.
fn drop_elsewhere(rows: Rows) {
    if rows.len() >= 10_000 {
        // Without a thread to be had, the closure and the rows drop here.
        let _ = std::thread::Builder::new().name("nettop-free".into()).spawn(move || drop(rows));
    }
}
