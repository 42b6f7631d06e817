//! Styles. With `NO_COLOR` set (https://no-color.org) only modifiers are
//! used: bold, dim, reversed, underlined.
use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn from_env() -> Theme {
        Theme::for_no_color(std::env::var_os("NO_COLOR").as_deref())
    }

    /// NO_COLOR set to anything but the empty string turns colour off.
    pub fn for_no_color(value: Option<&std::ffi::OsStr>) -> Theme {
        Theme { color: value.is_none_or(|v| v.is_empty()) }
    }

    pub fn plain() -> Theme {
        Theme { color: false }
    }

    pub fn colored() -> Theme {
        Theme { color: true }
    }

    fn fg(self, c: Color) -> Style {
        if self.color { Style::new().fg(c) } else { Style::new() }
    }

    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn header_row(self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Green)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn sorted_column(self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    pub fn selected(self) -> Style {
        if self.color {
            Style::new().bg(Color::Blue).fg(Color::White).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn closed(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn group(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn alarm(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn up(self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn down(self) -> Style {
        self.fg(Color::Green)
    }
}
