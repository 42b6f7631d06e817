//! The table as a user would see it, drawn from a tracer's connections into
//! ratatui's TestBackend: how the VM matrix checks the screen with values
//! measured on each kernel.
#![allow(dead_code)]
use nettop::filter::Filter;
use nettop::tracer::{Connection, Tracer};
use nettop::ui::theme::Theme;
use nettop::ui::{App, Snapshot};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The screen's lines, `width` wide, with the TCP health columns (`t`) or
/// the default ones.
pub fn table(
    tracer: &Tracer,
    conns: Vec<Connection>,
    health_columns: bool,
    width: u16,
) -> Vec<String> {
    let mut app = App::new(tracer.info().clone(), Filter::default(), Theme::plain(), 1.0);
    app.health_columns = health_columns;
    let rows = conns.len() as u16;
    app.ingest(Snapshot { now_ns: nettop::tracer::monotonic_ns(), conns, stats: tracer.stats() });
    let mut t = Terminal::new(TestBackend::new(width, rows + 6)).unwrap();
    t.draw(|f| nettop::ui::draw(f, &mut app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}
