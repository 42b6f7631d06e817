//! The two header lines: how nettop traces, and what it has seen and lost.
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use super::busiest::View;
use crate::text::{escape, rate};

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = app.theme;
    let i = &app.info;
    let sep = || Span::styled(" │ ", t.dim());
    let mut first = vec![
        Span::styled("nettop", t.title()),
        Span::raw(format!("  backend {}", i.backend)),
        sep(),
        Span::raw(format!("offsets {}", i.offsets)),
    ];
    first.push(match i.verified {
        Some(true) => Span::styled(" = BTF ✓", t.good()),
        Some(false) => Span::styled(" (guess disagreed with BTF)", t.warn()),
        None => Span::styled(" (not verified: no BTF)", t.warn()),
    });
    if let Some(ms) = i.guess_ms {
        first.push(sep());
        first.push(Span::raw(format!("guessed in {ms:.0} ms")));
    }
    first.push(sep());
    first.push(Span::raw(format!("every {}s", app.interval_s)));
    first.push(sep());
    for (key, view) in [("1", View::Connections), ("2", View::Processes), ("3", View::Peers)] {
        first.push(Span::styled(key, t.key()));
        let style = if app.view == view { t.sorted_column() } else { t.dim() };
        first.push(Span::styled(format!(" {} ", view.title()), style));
    }
    if app.paused {
        first.push(sep());
        first.push(Span::styled(" PAUSED ", t.alarm()));
    }
    if let Some(why) = &i.backfill_error {
        first.push(sep());
        first.push(Span::styled(escape(why), t.warn()));
    }

    let s = &app.stats;
    let shown = app.lines.iter().filter(|l| matches!(l, super::view::Line::Conn(_))).count();
    let mut second = vec![Span::raw(format!(
        "{} connections ({} open, {} closed, {} older than nettop)",
        app.rows.len(),
        s.connections_open,
        s.connections_closed,
        s.backfilled
    ))];
    if app.view != View::Connections {
        second.push(Span::raw(format!(", {} {}", app.busy.len(), app.view.title())));
    } else if app.grouped {
        second.push(Span::raw(format!(", {} processes", app.groups.len())));
    } else if shown != app.rows.len() {
        second.push(Span::raw(format!(", {shown} shown")));
    }
    second.push(sep());
    second.push(Span::styled(format!("↑ {}", or_zero(rate(app.send_total))), t.up()));
    second.push(Span::raw("  "));
    second.push(Span::styled(format!("↓ {}", or_zero(rate(app.recv_total))), t.down()));
    second.push(sep());
    let mut counter = |name: &str, n: u64| {
        second.push(Span::styled(format!("{name} {n}"), if n > 0 { t.alarm() } else { t.dim() }));
        second.push(Span::raw(" "));
    };
    counter("lost", s.events_lost + s.events_dropped);
    counter("evicted", s.evicted());
    // Hook runs the kernel skipped: kretprobe misses, and programs not run
    // because they were already running on that CPU.
    if s.kprobe_missed.is_some() || s.prog_missed.is_some() {
        counter("missed", s.kprobe_missed.unwrap_or(0) + s.prog_missed.unwrap_or(0));
    }
    f.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

fn or_zero(s: String) -> String {
    if s.is_empty() { "0 B/s".into() } else { s }
}
