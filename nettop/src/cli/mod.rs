//! Subcommands' output. Everything printed that the host's users control
//! (process names, addresses, error text quoting them) goes through `escape`.
pub mod list;
pub mod offsets;
pub mod trace;

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

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_terminal_control() {
        assert_eq!(super::escape("a\x1b[2Jb\n\u{9b}c\\"), "a\\u{1b}[2Jb\\n\\u{9b}c\\\\");
        assert_eq!(super::escape("curl ünïcode"), "curl ünïcode");
    }
}
