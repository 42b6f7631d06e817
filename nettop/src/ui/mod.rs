//! The interactive table (`sudo nettop`). It reads `Tracer` through the
//! feed thread and never touches BPF; the tracer knows nothing of it.
pub mod app;
pub mod busiest;
pub mod feed;
pub mod header;
pub mod help;
pub mod history;
pub mod ledger;
pub mod panes;
pub mod status;
pub mod table;
pub mod terminal;
pub mod theme;
pub mod trends;
pub mod view;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use std::sync::mpsc::TryRecvError;

use anyhow::{Result, anyhow};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::layout::{Constraint, Layout};

pub use app::{Action, App, Snapshot};
use busiest::View;
use feed::{Feed, Update};
use theme::Theme;

use crate::filter::Filter;
use crate::names::Dns;
use crate::tracer::Tracer;

/// How soon new events in an open pane are drawn.
const EVENTS_REDRAW: Duration = Duration::from_millis(250);

pub struct Options {
    pub interval: Duration,
    pub filter: Filter,
    /// `--columns`, in order; the default set if empty.
    pub columns: Vec<view::Column>,
    pub resolve: Resolve,
    /// Test-only: panic after the first frame (NETTOP_TEST_PANIC), for the
    /// end-to-end test that a panic leaves a usable terminal.
    pub panic_after_draw: bool,
    /// The protections in force, for the help screen.
    pub protections: String,
}

/// Where remote names come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// `--no-resolve`: addresses only; `d` says so.
    Off,
    /// `/etc/hosts`, then the servers of `/etc/resolv.conf`.
    System,
    /// `/etc/hosts`, then this server only (`--dns-server`).
    Server(std::net::SocketAddr),
}

/// Draw the whole screen from the app's state.
pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    let mut parts = vec![Constraint::Length(2), Constraint::Min(3)];
    let details_h = if app.details { (area.height / 3).max(8) } else { 0 };
    let graph_h = if app.graph { (area.height / 4).max(6) } else { 0 };
    let events_h = if app.events_pane { (area.height / 4).max(6) } else { 0 };
    if app.graph {
        parts.push(Constraint::Length(graph_h));
    }
    if app.details {
        parts.push(Constraint::Length(details_h));
    }
    if app.events_pane {
        parts.push(Constraint::Length(events_h));
    }
    parts.push(Constraint::Length(1));
    let rects = Layout::vertical(parts).split(area);
    header::draw(f, app, rects[0]);
    match app.view {
        View::Connections => table::draw(f, app, rects[1]),
        View::Processes | View::Peers => busiest::draw(f, app, rects[1]),
    }
    let mut next = 2;
    if app.graph {
        panes::graph(f, app, rects[next]);
        next += 1;
    }
    if app.details {
        panes::details(f, app, rects[next]);
        next += 1;
    }
    if app.events_pane {
        panes::events(f, app, rects[next]);
        next += 1;
    }
    status::draw(f, app, rects[next]);
    if app.help {
        help::draw(f, app, area);
    }
}

/// Run the table until the user quits or a signal arrives. The terminal is
/// restored and the probes are detached before this returns, on every path.
pub fn run(tracer: Tracer, opts: Options) -> Result<()> {
    let info = tracer.info().clone();
    let dns = match opts.resolve {
        Resolve::Off => None,
        Resolve::System => Some(Dns::start(None)?),
        Resolve::Server(addr) => Some(Dns::start(Some(addr))?),
    };
    let feed = Feed::start(tracer, opts.interval)?;
    let mut screen = terminal::Screen::enter()?;
    let mut app = App::new(info, opts.filter, Theme::from_env(), opts.interval.as_secs_f64());
    if !opts.columns.is_empty() {
        app.chosen_columns = opts.columns;
    }
    app.dns = dns;
    app.protections = opts.protections;
    let mut dirty = true;
    let mut new_events = false;
    let mut last_draw = Instant::now();
    let result = 'run: loop {
        if screen.signalled() {
            break Ok(());
        }
        feed.woken();
        let mut feed_gone = false;
        loop {
            match feed.rx.try_recv() {
                Ok(Update::Snapshot(s)) => {
                    app.ingest(s);
                    dirty = true;
                }
                Ok(Update::Events(e)) => {
                    app.push_events(e);
                    // Only the panes show events; the table changes with
                    // snapshots, and a redraw per batch costs too much.
                    new_events |= app.details || app.events_pane;
                }
                Err(TryRecvError::Empty) => break,
                // The feed thread ended without being asked: it panicked.
                Err(TryRecvError::Disconnected) => {
                    feed_gone = true;
                    break;
                }
            }
        }
        if feed_gone {
            break Err(anyhow!("the tracer stopped unexpectedly"));
        }
        let since = last_draw.elapsed();
        if dirty || (new_events && since >= EVENTS_REDRAW) || since >= opts.interval {
            if let Err(e) = screen.terminal.draw(|f| draw(f, &mut app)) {
                break Err(e.into());
            }
            dirty = false;
            new_events = false;
            last_draw = Instant::now();
            if opts.panic_after_draw {
                panic!("NETTOP_TEST_PANIC is set");
            }
        }
        // Asleep until the next draw is due, unless something comes first.
        let due = if new_events { EVENTS_REDRAW } else { opts.interval };
        let woken = match screen.wait(feed.wake_fd(), due.saturating_sub(last_draw.elapsed())) {
            Ok(w) => w,
            Err(e) => break Err(e.into()),
        };
        // A resize, or a stop that the flag shows.
        dirty |= woken.signal;
        if !(woken.input || woken.hangup) {
            continue;
        }
        // crossterm reads what the terminal has, maybe several events; the
        // last poll waits a millisecond for more.
        let mut read_any = false;
        loop {
            match event::poll(Duration::from_millis(1)) {
                Ok(false) => break,
                Ok(true) => match event::read() {
                    Ok(TermEvent::Key(k)) => {
                        dirty = true;
                        if app.on_key(k) == Action::Quit {
                            break 'run Ok(());
                        }
                    }
                    Ok(TermEvent::Mouse(m)) => {
                        dirty = true;
                        app.on_mouse(m);
                    }
                    Ok(TermEvent::Resize(..)) => dirty = true,
                    Ok(_) => {}
                    Err(e) => break 'run Err(e.into()),
                },
                Err(e) => break 'run Err(e.into()),
            }
            read_any = true;
        }
        // Hung up with nothing left to read: the terminal is gone.
        if woken.hangup && !read_any {
            break Ok(());
        }
    };
    drop(screen);
    feed.stop();
    result
}
