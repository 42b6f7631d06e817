//! The terminal, entered and always restored: on return, on error, on
//! panic (a hook restores before the message prints) and on SIGTERM, SIGINT
//! and SIGHUP (which set a flag the main loop checks).
use std::io::{Stdout, stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};

pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    pub signalled: Arc<AtomicBool>,
    _restore: Restore,
}

/// Restores when dropped, from the first change to the terminal on.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Whether the screen is ours now. Restoring twice is not harmless: leaving
/// the alternate screen also restores the cursor saved on entering it, so a
/// second leave (the panic hook, then the guard while unwinding) moves the
/// cursor back up over whatever was printed in between.
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(stdout(), DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
    }
}

impl Screen {
    pub fn enter() -> Result<Screen> {
        let signalled = Arc::new(AtomicBool::new(false));
        for sig in
            [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP]
        {
            signal_hook::flag::register(sig, signalled.clone()).context("handle signals")?;
        }
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |p| {
            restore();
            hook(p);
        }));
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = Restore;
        enable_raw_mode().context("the terminal cannot enter raw mode (is stdout a terminal?)")?;
        execute!(stdout(), EnterAlternateScreen, EnableMouseCapture, cursor::Hide)
            .context("set up the terminal")?;
        let terminal =
            Terminal::new(CrosstermBackend::new(stdout())).context("open the terminal")?;
        Ok(Screen { terminal, signalled, _restore: guard })
    }

    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }
}
