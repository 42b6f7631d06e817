//! The bottom line: the filter being typed (and why it does not parse), or
//! the keys and the filter and sort in force.
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use crate::text::escape;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = app.theme;
    let line = if let Some(input) = &app.input {
        let mut spans = vec![
            Span::styled("filter: ", t.key()),
            Span::raw(format!("/{}", escape(&input.text))),
            Span::styled("▏", t.key()),
        ];
        match &input.error {
            Some(e) => spans.push(Span::styled(format!("  {}", escape(e)), t.error())),
            None => spans.push(Span::styled("  Enter keeps · Esc clears", t.dim())),
        }
        Line::from(spans)
    } else {
        let mut spans = Vec::new();
        for (k, what) in [
            ("?", "help"),
            ("/", "filter"),
            ("s", "sort"),
            ("t", "health"),
            ("g", "group"),
            ("⏎", "details"),
            ("e", "events"),
            ("c", "closed"),
            ("␣", "pause"),
            ("q", "quit"),
        ] {
            spans.push(Span::styled(k, t.key()));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        if !app.filter_text.is_empty() {
            spans.push(Span::styled("filter: ", t.key()));
            spans.push(Span::raw(escape(&app.filter_text)));
        }
        if !app.show_closed {
            spans.push(Span::styled("  closed hidden", t.dim()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}
