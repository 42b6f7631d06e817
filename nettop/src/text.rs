//! Text for people: untrusted strings made safe for a terminal, and sizes,
//! rates and ages in short human units.
use humansize::{BINARY, FormatSizeOptions, SizeFormatter};

/// Control characters (and a lone backslash's ambiguity) escaped, so that
/// untrusted text can never move the cursor or recolour a terminal.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `escape`, but borrowing when there is nothing to escape (the common
/// case, and the TUI calls this for every visible cell of every frame).
pub fn escape_cow(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(|c| c == '\\' || c.is_control()) {
        std::borrow::Cow::Owned(escape(s))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

pub fn bytes(n: u64) -> String {
    // One decimal keeps a rate within its column ("1023.9 KiB/s").
    let one_decimal = FormatSizeOptions::from(BINARY).decimal_places(1);
    if n < 1024 { format!("{n} B") } else { SizeFormatter::new(n, one_decimal).to_string() }
}

pub fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s < 0.5 {
        return String::new();
    }
    format!("{}/s", bytes(bytes_per_s.round() as u64))
}

/// `42s`, `3m07s`, `2h05m`, `3d04h`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_control() {
        assert_eq!(escape("a\x1b[2Jb\n\u{9b}c\\"), "a\\u{1b}[2Jb\\n\\u{9b}c\\\\");
        assert_eq!(escape("curl ünïcode"), "curl ünïcode");
        assert!(matches!(escape_cow("plain"), std::borrow::Cow::Borrowed("plain")));
        assert_eq!(escape_cow("\x07"), "\\u{7}");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(rate(0.1), "");
        assert_eq!(rate(3.0 * 1048576.0), "3 MiB/s");
        assert_eq!(
            (age(59), age(61), age(7300), age(90000)),
            ("59s".into(), "1m01s".into(), "2h01m".into(), "1d01h".into())
        );
    }
}
