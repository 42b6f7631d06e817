//! `?`: every key, over the table.
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::app::App;

/// The key table; docs/usage.md shows the same (README.md the main keys).
pub const KEYS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("↑ ↓ j k", "move"),
    ("PgUp PgDn Home End", "move by a page, to the ends"),
    ("1 2 3, Tab", "views: connections, processes, peers (busiest first)"),
    ("s / S", "next sort column / reverse it (or click a column title)"),
    ("t", "TCP health columns: RTT, retransmits, queues, send limit"),
    ("/", "filter as you type; Enter keeps it, Esc clears it"),
    ("g", "group by process; Enter, → and ← open and close a process"),
    ("Enter", "details of the selected connection, with its timeline"),
    ("e", "live events: connect, accept, close, failed, retransmit"),
    ("G", "graph of the host's send and receive rates, last 5 minutes"),
    ("c", "show or hide closed connections (shown dimmed)"),
    ("d / p", "remote ends as names (reverse DNS) / ports as service names"),
    ("space", "pause the display (tracing goes on)"),
    ("mouse wheel", "scroll"),
    ("?, F1", "this help; any key closes it"),
];

const FILTER: &[&str] = &[
    "port:443 (either end; 8000-8100 for a range)  lport:  rport:  pid:",
    "proc:NAME (name or command line)  proto:tcp|udp  state:open|closed|in|out",
    "addr:10.0.0.0/8 (IP or CIDR, either end)  host:NAME (resolved remote name)",
    "port:https (a service name)  health:bad  user:  cgroup:  container:  netns:",
    "a bare word matches process, command line or address; !term negates",
];

const STATE: &str =
    "state: → connected  ← accepted  · UDP  * older than nettop (age+)  ! unhealthy";

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = app.theme;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![Span::styled(format!("{k:>20}  "), t.key()), Span::raw(*what)])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled("filter terms (all must match):", t.title()));
    lines.extend(FILTER.iter().map(|l| Line::raw(format!("  {l}"))));
    lines.push(Line::raw(""));
    lines.push(Line::raw(STATE));
    if !app.protections.is_empty() {
        lines.push(Line::raw(format!("protections: {}", app.protections)));
    }
    let h = (lines.len() as u16 + 2).min(area.height);
    let w = 84.min(area.width);
    let [v] = Layout::vertical([Constraint::Length(h)]).flex(Flex::Center).areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w)]).flex(Flex::Center).areas(v);
    f.render_widget(Clear, r);
    let block = Block::new().borders(Borders::ALL).title(" nettop keys ").title_style(t.title());
    f.render_widget(Paragraph::new(lines).block(block), r);
}
