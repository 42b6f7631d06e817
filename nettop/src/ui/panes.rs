//! The details pane (one connection or process, with its timeline) and the
//! live events pane.
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap};

use super::app::App;
use super::table::{proto_text, state_text};
use super::trends::{Sample, sparkline};
use super::view::Line as ViewLine;
use crate::text::{age, bytes, duration_us, escape, rate};
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
            lines.extend(trend_lines(app));
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
            lines.extend(trend_lines(app));
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
            lines.extend(trend_lines(app));
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

/// The selected line's last minute: send and receive rates, and RTT for
/// TCP, as sparklines with their peaks.
fn trend_lines(app: &App) -> Vec<Line<'static>> {
    let Some(t) = app.selected_trend().filter(|t| t.len() >= 2) else {
        return Vec::new();
    };
    let peak = |f: &dyn Fn(&Sample) -> f64| t.iter().map(f).fold(0.0, f64::max);
    let mut out = vec![Line::styled(format!("last {} refreshes", t.len()), app.theme.key())];
    let mut spark = |name: &'static str, values: Vec<f64>, peak: String| {
        out.push(field(app, name, format!("{}  peak {peak}", sparkline(values.into_iter()))));
    };
    spark("send", t.iter().map(|s| s.send).collect(), rate(peak(&|s| s.send)));
    spark("receive", t.iter().map(|s| s.recv).collect(), rate(peak(&|s| s.recv)));
    if t.iter().any(|s| s.rtt_us.is_some()) {
        let rtt: Vec<f64> = t.iter().map(|s| f64::from(s.rtt_us.unwrap_or(0))).collect();
        let max = rtt.iter().copied().fold(0.0, f64::max) as u32;
        spark("rtt", rtt, duration_us(max));
    }
    out
}

/// The host's send and receive rates over the last minutes.
pub fn graph(f: &mut Frame, app: &App, area: Rect) {
    let t = app.theme;
    let host = &app.trends.host;
    let send: Vec<(f64, f64)> = host.iter().enumerate().map(|(i, &(s, _))| (i as f64, s)).collect();
    let recv: Vec<(f64, f64)> = host.iter().enumerate().map(|(i, &(_, r))| (i as f64, r)).collect();
    let max = host.iter().map(|&(s, r)| s.max(r)).fold(0.0, f64::max).max(1.0);
    let secs = host.len() as f64 * app.interval_s;
    let now = |v: f64| if v > 0.0 { rate(v) } else { "0 B/s".into() };
    let (up, down) = host.back().copied().unwrap_or_default();
    let line = |data| {
        Dataset::default().marker(symbols::Marker::Braille).graph_type(GraphType::Line).data(data)
    };
    let datasets = vec![line(&send).style(t.up()), line(&recv).style(t.down())];
    // The legend is the title: a box over the lines would hide them.
    let title = Line::from(vec![
        Span::styled(format!(" host rates, last {}: ", age(secs as u64)), t.title()),
        Span::styled(format!("↑ send {} ", now(up)), t.up()),
        Span::styled(format!(" ↓ receive {} ", now(down)), t.down()),
    ]);
    let chart = Chart::new(datasets)
        .block(Block::new().borders(Borders::TOP).title(title))
        .x_axis(Axis::default().bounds([0.0, (host.len().max(2) - 1) as f64]))
        .y_axis(
            Axis::default().bounds([0.0, max]).labels(vec![Line::raw("0"), Line::raw(rate(max))]),
        )
        .legend_position(None);
    f.render_widget(chart, area);
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
