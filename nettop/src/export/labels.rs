//! Which labels the exported series carry, and their values for one
//! connection. Kept few and bounded on purpose: per-connection labels (ports,
//! addresses, pids) would give a Prometheus server one series per
//! connection.
use std::fmt;
use std::str::FromStr;

use crate::text::escape;
use crate::tracer::{Owner, Proto, Tuple};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// The owning process's name (comm).
    Process,
    Proto,
    /// The remote port's class: its number below the ephemeral range, else
    /// `ephemeral`; `*` for a socket with no one peer.
    Port,
    /// The container id, empty outside containers.
    Container,
}

impl Label {
    pub const ALL: [Label; 4] = [Label::Process, Label::Proto, Label::Port, Label::Container];

    pub fn name(self) -> &'static str {
        match self {
            Label::Process => "process",
            Label::Proto => "proto",
            Label::Port => "port",
            Label::Container => "container",
        }
    }
}

/// The chosen labels, in the order given, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSpec(Vec<Label>);

impl Default for LabelSpec {
    fn default() -> Self {
        LabelSpec(vec![Label::Process, Label::Proto, Label::Port])
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("unknown label `{0}` (known: process, proto, port, container)")]
    Unknown(String),
    #[error("label `{0}` given twice")]
    Twice(&'static str),
}

impl FromStr for LabelSpec {
    type Err = LabelError;

    /// A comma-separated list; empty means no labels (one total per metric).
    fn from_str(s: &str) -> Result<Self, LabelError> {
        let mut out = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let label = Label::ALL
                .into_iter()
                .find(|l| l.name() == word)
                .ok_or_else(|| LabelError::Unknown(escape(word)))?;
            if out.contains(&label) {
                return Err(LabelError::Twice(label.name()));
            }
            out.push(label);
        }
        Ok(LabelSpec(out))
    }
}

impl fmt::Display for LabelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|l| l.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl LabelSpec {
    pub fn labels(&self) -> &[Label] {
        &self.0
    }

    /// This connection's label values, in the spec's order.
    pub fn values(&self, ports: &PortClass, tuple: &Tuple, owner: &Owner) -> Vec<String> {
        self.0
            .iter()
            .map(|l| match l {
                // Names are whatever a process calls itself: escaped like
                // every other output (the text format escapes only quotes,
                // backslashes and newlines).
                Label::Process => escape(&owner.comm),
                Label::Proto => match tuple.proto {
                    Proto::Tcp => "tcp".into(),
                    Proto::Udp => "udp".into(),
                },
                Label::Port => ports.class(tuple),
                Label::Container => owner.container.as_deref().map(escape).unwrap_or_default(),
            })
            .collect()
    }
}

/// Folds ephemeral ports into one value, so that a client's many source
/// ports (the remote end of every accepted connection) are one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortClass {
    /// The lowest port counted as ephemeral.
    pub ephemeral_from: u16,
}

/// Linux's default `ip_local_port_range` starts here; IANA's dynamic range
/// (other hosts' clients) starts higher still.
const LINUX_EPHEMERAL: u16 = 32768;

impl PortClass {
    /// This host's range (`net.ipv4.ip_local_port_range`), when it starts
    /// lower than Linux's default.
    pub fn from_host() -> PortClass {
        let lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(LINUX_EPHEMERAL);
        PortClass { ephemeral_from: lo.min(LINUX_EPHEMERAL) }
    }

    pub fn class(&self, tuple: &Tuple) -> String {
        match tuple.raddr {
            None => "*".into(),
            Some(_) if tuple.rport >= self.ephemeral_from => "ephemeral".into(),
            Some(_) => tuple.rport.to_string(),
        }
    }
}
