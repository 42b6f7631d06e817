//! Port numbers as service names, from `/etc/services` read directly (no
//! NSS, so a static binary needs nothing else).
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::tracer::Proto;

/// Where nothing says otherwise: a root without `/etc/services` (a scratch
/// container) still names the usual ports.
const FALLBACK: &str = "\
ftp 21/tcp\nssh 22/tcp\ntelnet 23/tcp\nsmtp 25/tcp\ndomain 53/tcp\ndomain 53/udp\n\
http 80/tcp www\nkerberos 88/tcp\nkerberos 88/udp\npop3 110/tcp\nntp 123/udp\n\
imap2 143/tcp imap\nsnmp 161/udp\nldap 389/tcp\nhttps 443/tcp\nhttps 443/udp\n\
submissions 465/tcp\nsyslog 514/udp\nsubmission 587/tcp\nldaps 636/tcp\nimaps 993/tcp\n\
pop3s 995/tcp\nopenvpn 1194/tcp\nopenvpn 1194/udp\nmysql 3306/tcp\npostgresql 5432/tcp\n\
mdns 5353/udp\nredis 6379/tcp\nhttp-alt 8080/tcp\n";

/// Service names by port and protocol, and ports by name.
#[derive(Debug, Default)]
pub struct Services {
    by_port: HashMap<(u16, Proto), Box<str>>,
    by_name: HashMap<Box<str>, u16>,
}

impl Services {
    /// The lines of a services file; bad lines are skipped, as libc does.
    pub fn parse(text: &str) -> Services {
        let mut s = Services::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let (Ok(port), Some(proto)) = (port.parse::<u16>(), proto_of(proto)) else {
                continue;
            };
            // The first name of a port is its name, as getservbyport says.
            s.by_port.entry((port, proto)).or_insert_with(|| name.into());
            for n in std::iter::once(name).chain(words) {
                s.by_name.entry(n.to_ascii_lowercase().into()).or_insert(port);
            }
        }
        s
    }

    /// `/etc/services`, or the built-in list where it cannot be read; read
    /// once.
    pub fn system() -> &'static Services {
        static SYSTEM: OnceLock<Services> = OnceLock::new();
        SYSTEM.get_or_init(|| match std::fs::read_to_string("/etc/services") {
            Ok(text) => Services::parse(&text),
            Err(_) => Services::parse(FALLBACK),
        })
    }

    pub fn name(&self, port: u16, proto: Proto) -> Option<&str> {
        self.by_port.get(&(port, proto)).map(|n| &**n)
    }

    /// The port a service name (or alias) stands for, either protocol.
    pub fn port(&self, name: &str) -> Option<u16> {
        self.by_name.get(name.to_ascii_lowercase().as_str()).copied()
    }
}

fn proto_of(s: &str) -> Option<Proto> {
    match s {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_both_ways() {
        let s = Services::parse(
            "# comment\nhttp\t\t80/tcp\t\twww\t# WWW\nhttps 443/tcp\nhttps 443/udp\n\
             domain 53/udp\nbad line\nbogus 99999/tcp\nsctp 9/sctp\nsecond 80/tcp\n",
        );
        assert_eq!(s.name(80, Proto::Tcp), Some("http"), "the first name wins");
        assert_eq!(s.name(80, Proto::Udp), None);
        assert_eq!(s.name(53, Proto::Udp), Some("domain"));
        assert_eq!(s.name(9, Proto::Tcp), None);
        assert_eq!(
            (s.port("https"), s.port("WWW"), s.port("second")),
            (Some(443), Some(80), Some(80))
        );
        assert_eq!(s.port("bogus"), None);
    }

    /// The built-in list agrees with the system's file where both name a port.
    #[test]
    fn the_fallback_agrees_with_etc_services() {
        let Ok(text) = std::fs::read_to_string("/etc/services") else {
            return;
        };
        let (system, fallback) = (Services::parse(&text), Services::parse(FALLBACK));
        assert!(fallback.by_port.len() > 20);
        for (&(port, proto), name) in &fallback.by_port {
            if let Some(sys) = system.name(port, proto) {
                assert_eq!(sys, &**name, "{port}/{proto:?}");
            }
        }
    }
}
