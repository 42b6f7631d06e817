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

/// `bytes` in at most 4 characters for narrow terminals: `999B`, `8.6K`,
/// `39K`, `5.7M` (binary units; humansize has no unit this short).
pub fn bytes_short(n: u64) -> String {
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    for unit in ["K", "M", "G", "T", "P", "E"] {
        v /= 1024.0;
        if v < 9.95 {
            return format!("{v:.1}{unit}");
        }
        if v < 999.5 {
            return format!("{v:.0}{unit}");
        }
    }
    format!("{v:.0}E")
}

/// `rate` in at most 6 characters: `8.6M/s`.
pub fn rate_short(bytes_per_s: f64) -> String {
    if bytes_per_s < 0.5 {
        return String::new();
    }
    format!("{}/s", bytes_short(bytes_per_s.round() as u64))
}

/// `text` in `width` characters at most: the middle elided (`…`), so that
/// both ends stay, an address's port included.
pub fn elide_middle(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    let n = text.chars().count();
    if n <= width {
        return text.into();
    }
    if width == 0 {
        return "".into();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}").into()
}

/// An `address:port` in `width` characters at most: the address loses
/// its middle, the port (a number or a service name) stays whole while the
/// address keeps a few characters.
pub fn elide_endpoint(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= width {
        return text.into();
    }
    match text.rsplit_once(':') {
        Some((host, port)) if width >= port.chars().count() + 5 => {
            let host = elide_middle(host, width - port.chars().count() - 1);
            format!("{host}:{port}").into()
        }
        _ => elide_middle(text, width),
    }
}

/// A round-trip time in 7 characters at most: `850µs`, `12.3ms`, `123ms`,
/// `1.25s`, `12.5s`.
pub fn duration_us(us: u32) -> String {
    let us = f64::from(us);
    match us {
        u if u < 1e3 => format!("{u:.0}µs"),
        u if u < 99.95e3 => format!("{:.1}ms", u / 1e3),
        u if u < 999.5e3 => format!("{:.0}ms", u / 1e3),
        u if u < 9.995e6 => format!("{:.2}s", u / 1e6),
        u => format!("{:.1}s", u / 1e6),
    }
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
    fn endpoints_lose_the_middle_of_the_address_not_the_port() {
        assert_eq!(elide_endpoint("10.0.0.5:443", 20), "10.0.0.5:443");
        assert_eq!(elide_endpoint("[2001:db8::1]:http-alt", 16), "[20…:1]:http-alt");
        assert_eq!(elide_endpoint("db-1.very.long.example.com:https", 20), "db-1.ve…le.com:https");
        assert_eq!(
            elide_endpoint("[2001:db8::1]:http-alt", 12),
            "[2001:…p-alt",
            "too narrow for both"
        );
        for w in 0..40 {
            assert!(elide_endpoint("[2001:db8::1]:http-alt", w).chars().count() <= w);
        }
    }

    #[test]
    fn round_trip_times_are_short_and_in_the_right_unit() {
        let cases = [
            (0, "0µs"),
            (850, "850µs"),
            (999, "999µs"),
            (1_000, "1.0ms"),
            (12_340, "12.3ms"),
            (99_949, "99.9ms"),
            (99_950, "100ms"),
            (999_499, "999ms"),
            (999_500, "1.00s"),
            (1_250_000, "1.25s"),
            (12_500_000, "12.5s"),
            (u32::MAX, "4295.0s"),
        ];
        for (us, text) in cases {
            assert_eq!(duration_us(us), text, "{us} µs");
        }
    }

    /// The short form names the same amount as humansize's, to its
    /// precision, in 4 characters at most.
    #[test]
    fn short_bytes_agree_with_humansize() {
        let value = |text: &str| -> f64 {
            let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap();
            let (number, unit) = text.split_at(split);
            let scale = match unit.trim_end_matches("iB").trim_end_matches('B') {
                "" => 1.0,
                "K" => 1024.0,
                "M" => 1024f64.powi(2),
                "G" => 1024f64.powi(3),
                "T" => 1024f64.powi(4),
                u => panic!("unit {u:?} in {text:?}"),
            };
            number.trim().parse::<f64>().unwrap() * scale
        };
        let mut n = 0u64;
        while n < 1 << 44 {
            let (short, long) = (bytes_short(n), bytes(n));
            assert!(short.chars().count() <= 4, "{n}: {short}");
            let (a, b) = (value(&short), value(&long));
            assert!((a - b).abs() <= 0.05 * b.max(1.0), "{n}: {short} vs {long}");
            n = n * 3 / 2 + 1;
        }
        assert_eq!(rate_short(9.2e6), "8.8M/s");
        assert_eq!(rate_short(0.2), "");
    }

    #[test]
    fn elided_in_the_middle_keeps_both_ends() {
        assert_eq!(elide_middle("[2001:db8::5]:39000", 15), "[2001:d…]:39000");
        assert_eq!(elide_middle("10.0.0.5:443", 15), "10.0.0.5:443");
        assert_eq!(elide_middle("abcdef", 1), "…");
        assert_eq!(elide_middle("abcdef", 0), "");
    }

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
