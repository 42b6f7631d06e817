//! The details pane (one connection or process, with its timeline) and the
//! live events pane.
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::app::App;
use super::table::{proto_text, state_text};
use super::view::Line as ViewLine;
use crate::text::{age, bytes, escape, rate};
use crate::tracer::{Connection, Event, EventKind, Owner, Proto};

fn field<'a>(app: &App, name: &'a str, value: String) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{name:<10}"), app.theme.key()), Span::raw(value)])
}

fn owner_lines<'a>(app: &App, o: &Owner) -> Vec<Line<'a>> {
    let mut v = vec![
        field(app, "process", format!("{} (pid {})", escape(&o.comm), o.pid)),
        field(app, "command", if o.cmdline.is_empty() { "—".into() } else { escape(&o.cmdline) }),
        field(
            app,
            "user",
            format!(
                "{}   container {}",
                o.user.as_deref().map_or("—".into(), escape),
                o.container.as_deref().map_or("—".into(), escape),
            ),
        ),
    ];
    if let Some(cg) = &o.cgroup {
        v.push(field(app, "cgroup", escape(cg)));
    }
    if let Some(note) = &o.owner_note {
        v.push(field(app, "owner", format!("not fully known: {}", escape(note))));
    }
    v
}

pub fn details(f: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    let title = match app.selected_line() {
        Some(ViewLine::Conn(i)) => {
            let (c, r) = (&app.rows[i], app.rows.figures(i));
            lines.extend(owner_lines(app, &c.owner));
            lines.extend(conn_lines(app, c, r.age_s));
            lines.push(Line::styled("timeline", app.theme.key()));
            let t = app.history.timeline(c.id);
            if t.is_empty() {
                lines.push(Line::raw("  (no events since nettop started)"));
            }
            lines.extend(t.iter().map(|e| Line::raw(format!("  {}", event_text(app, e)))));
            format!(" connection {} ", c.id)
        }
        Some(ViewLine::Group(g)) => {
            let grp = &app.groups[g];
            lines.extend(owner_lines(app, &app.rows[grp.first].owner));
            lines.push(field(app, "conns", format!("{} ({} open)", grp.members.len(), grp.open)));
            lines.push(field(
                app,
                "bytes",
                format!("sent {}   received {}", bytes(grp.sent), bytes(grp.recv)),
            ));
            format!(" process {} ", grp.pid)
        }
        Some(ViewLine::Busy(b)) => {
            let r = &app.busy[b];
            lines.push(field(app, "name", escape(&r.label)));
            lines.push(field(
                app,
                "conns",
                format!("{} open now, {} since nettop started", r.open, r.connections),
            ));
            lines.push(field(
                app,
                "bytes",
                format!(
                    "sent {}   received {}   (closed connections included)",
                    bytes(r.sent),
                    bytes(r.recv)
                ),
            ));
            " since nettop started ".into()
        }
        None => {
            lines.push(Line::raw("nothing selected"));
            " details ".into()
        }
    };
    let block = Block::new().borders(Borders::TOP).title(title).title_style(app.theme.title());
    f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

fn conn_lines<'a>(app: &App, c: &Connection, age_s: u64) -> Vec<Line<'a>> {
    let mut v = vec![
        field(
            app,
            "tuple",
            format!(
                "{} {} → {}   netns {}",
                proto_text(c.tuple.proto, c.tuple.family),
                c.tuple.local(),
                c.tuple.remote(),
                c.tuple.netns
            ),
        ),
        field(app, "state", format!("{}   age {}", state_text(c), age(age_s))),
        field(
            app,
            "bytes",
            match c.tuple.proto {
                // The kernel's own TCP counters: acknowledged, in order.
                Proto::Tcp => format!(
                    "sent {} (acknowledged)   received {}   retransmits {}",
                    bytes(c.bytes_sent),
                    bytes(c.bytes_recv),
                    c.retransmits
                ),
                Proto::Udp => format!(
                    "sent {} in {} datagrams   received {} in {} datagrams",
                    bytes(c.bytes_sent),
                    c.msgs_sent,
                    bytes(c.bytes_recv),
                    c.msgs_recv
                ),
            },
        ),
    ];
    if let Some(t) = &c.tcp {
        v.push(field(
            app,
            "tcp",
            format!(
                "rtt {:.1} ms (±{:.1})   cwnd {}   send queue {}   receive queue {}   delivery {}",
                f64::from(t.rtt_us) / 1e3,
                f64::from(t.rttvar_us) / 1e3,
                t.snd_cwnd,
                bytes(u64::from(t.send_queue)),
                bytes(u64::from(t.recv_queue)),
                rate(t.delivery_rate as f64)
            ),
        ));
    }
    if let Some(h) = &c.health {
        let conditions = h.conditions();
        let secs = f64::from(h.interval_ms) / 1e3;
        let health = if conditions.is_empty() {
            format!("healthy over the last {secs:.1} s")
        } else {
            format!("! over the last {secs:.1} s: {}", conditions.join("; "))
        };
        v.push(field(app, "health", health));
        if let Some(limit) = h.send_limit {
            v.push(field(app, "sending", format!("held back most by {}", limit.describe())));
        }
    }
    if c.backfilled {
        v.push(field(
            app,
            "note",
            if c.counted_since_start {
                "older than nettop: totals count only since nettop started".into()
            } else {
                "older than nettop: totals include the kernel's counts from before".into()
            },
        ));
    }
    v
}

/// One event in one line: when (seconds before the last refresh), what,
/// who, where.
pub fn event_text(app: &App, e: &Event) -> String {
    let when = format!("{:>8.3}s", -((app.now_ns as f64 - e.ts_ns as f64) / 1e9));
    let kind = match e.event {
        EventKind::Connect => "connect",
        EventKind::Accept => "accept",
        EventKind::Close => "close",
        EventKind::ConnectFailed => "failed",
        EventKind::Retransmit => "retransmit",
        EventKind::Lost => "LOST",
    };
    let Some(c) = &e.conn else {
        return format!("{when} {kind:<10} {} events", e.lost.unwrap_or(0));
    };
    let mut s = format!(
        "{when} {kind:<10} {:>7} {:<15} {} {} → {}",
        c.owner.pid,
        escape(&c.owner.comm),
        proto_text(c.tuple.proto, c.tuple.family),
        c.tuple.local(),
        c.tuple.remote()
    );
    if let (Some(tx), Some(rx)) = (e.bytes_sent, e.bytes_recv) {
        s.push_str(&format!("  sent {} received {}", bytes(tx), bytes(rx)));
    }
    if let Some(errno) = e.errno {
        s.push_str(&format!("  errno {errno}"));
    }
    s
}

pub fn events(f: &mut Frame, app: &App, area: Rect) {
    let h = usize::from(area.height.saturating_sub(1));
    let skip = app.history.len().saturating_sub(h);
    let lines: Vec<Line> = app
        .history
        .recent()
        .skip(skip)
        .map(|e| {
            let l = Line::raw(event_text(app, e));
            match e.event {
                EventKind::Lost | EventKind::ConnectFailed => l.style(app.theme.error()),
                EventKind::Retransmit => l.style(app.theme.warn()),
                EventKind::Close => l.style(app.theme.closed()),
                _ => l,
            }
        })
        .collect();
    let block = Block::new()
        .borders(Borders::TOP)
        .title(format!(" events ({} kept, newest last) ", app.history.len()))
        .title_style(app.theme.title());
    f.render_widget(Paragraph::new(lines).block(block), area);
}
