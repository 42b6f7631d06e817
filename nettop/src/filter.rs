//! Which connections and events a consumer wants: shared by every command's
//! flags (the TUI's filter language builds on the same matcher).
use crate::tracer::model::Proto;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub pid: Option<u32>,
    /// Either end.
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    /// Substring of the process name or command line.
    pub comm: Option<String>,
}

/// The fields a filter looks at.
pub struct Subject<'a> {
    pub proto: Proto,
    pub pid: u32,
    pub comm: &'a str,
    pub cmdline: &'a str,
    pub lport: u16,
    pub rport: u16,
}

impl Filter {
    pub fn matches(&self, s: &Subject) -> bool {
        self.pid.is_none_or(|p| p == s.pid)
            && self.port.is_none_or(|p| p == s.lport || p == s.rport)
            && self.proto.is_none_or(|p| p == s.proto)
            && self.comm.as_deref().is_none_or(|c| s.comm.contains(c) || s.cmdline.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            proto: Proto::Tcp,
            pid: 7,
            comm: "curl",
            cmdline: "curl https://x",
            lport: 40000,
            rport: 443,
        }
    }

    #[test]
    fn every_set_field_must_match() {
        assert!(Filter::default().matches(&subject()));
        assert!(Filter { port: Some(443), pid: Some(7), ..Default::default() }.matches(&subject()));
        assert!(Filter { port: Some(40000), ..Default::default() }.matches(&subject()));
        assert!(!Filter { port: Some(80), ..Default::default() }.matches(&subject()));
        assert!(!Filter { proto: Some(Proto::Udp), ..Default::default() }.matches(&subject()));
        assert!(Filter { comm: Some("https".into()), ..Default::default() }.matches(&subject()));
        assert!(
            !Filter { comm: Some("wget".into()), pid: Some(7), ..Default::default() }
                .matches(&subject())
        );
    }
}
