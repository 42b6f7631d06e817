//! The terminal, entered and always restored: on return, on error, on
//! panic (a hook restores before the message prints) and on SIGTERM, SIGINT
//! and SIGHUP (which set a flag the main loop checks). The main loop sleeps
//! here until a key, a signal, the feed or its timeout wakes it.
use std::fs::File;
use std::io::{Read, Stdout, stdout};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// The terminal's input, as crossterm reads it: stdin if that is a
    /// terminal, else /dev/tty (kept open here).
    input: RawFd,
    _tty: Option<File>,
    /// A byte arrives on each signal (SIGWINCH included), waking `wait`.
    signals: UnixStream,
    _restore: Restore,
}

/// What ended a `wait`.
#[derive(Debug, Default)]
pub struct Woken {
    /// The terminal has input for crossterm to read.
    pub input: bool,
    /// The terminal hung up or failed: with no input left, it is gone.
    pub hangup: bool,
    /// The window changed size, or a signal came.
    pub signal: bool,
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
        // SAFETY: isatty only inspects the descriptor.
        let (input, tty) = if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            (libc::STDIN_FILENO, None)
        } else {
            let f =
                File::options().read(true).write(true).open("/dev/tty").context("open /dev/tty")?;
            (f.as_raw_fd(), Some(f))
        };
        let (signals, sender) = UnixStream::pair().context("make the signal socket")?;
        signals.set_nonblocking(true).context("make the signal socket")?;
        for sig in [
            signal_hook::consts::SIGWINCH,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            let sender = sender.try_clone().context("make the signal socket")?;
            signal_hook::low_level::pipe::register(sig, sender).context("handle signals")?;
        }
        Ok(Screen { terminal, signalled, input, _tty: tty, signals, _restore: guard })
    }

    /// Sleep until the terminal has input, a signal comes, `feed` becomes
    /// readable, or `timeout` passes. crossterm's own poll is not used to
    /// wait: it rounds what is left of its timeout down to whole
    /// milliseconds and spins through the last one, every time.
    pub fn wait(&self, feed: RawFd, timeout: Duration) -> std::io::Result<Woken> {
        let mut fds = [self.input, self.signals.as_raw_fd(), feed].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A signal: the flags say which.
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(Woken { signal: true, ..Woken::default() })
            } else {
                Err(e)
            };
        }
        let signal = fds[1].revents != 0;
        if signal {
            let mut drain = [0u8; 64];
            while matches!((&self.signals).read(&mut drain), Ok(n) if n > 0) {}
        }
        Ok(Woken {
            input: fds[0].revents & libc::POLLIN != 0,
            hangup: fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
            signal,
        })
    }

    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }
}
