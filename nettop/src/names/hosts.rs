//! `/etc/hosts` read directly, for names of addresses: the first name of
//! the first line that has an address, as glibc's `getnameinfo` answers.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Hosts {
    by_addr: HashMap<IpAddr, Arc<str>>,
}

impl Hosts {
    /// The lines of a hosts file; bad lines are skipped.
    pub fn parse(text: &str) -> Hosts {
        let mut by_addr = HashMap::new();
        for line in text.lines() {
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            let (Some(addr), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if let Ok(ip) = addr.parse::<IpAddr>() {
                by_addr.entry(ip).or_insert_with(|| name.into());
            }
        }
        Hosts { by_addr }
    }

    /// `/etc/hosts`, or nothing where it cannot be read.
    pub fn system() -> Hosts {
        std::fs::read_to_string("/etc/hosts").map(|t| Hosts::parse(&t)).unwrap_or_default()
    }

    pub fn name(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.by_addr.get(&ip).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_name_of_the_first_line_wins() {
        let h = Hosts::parse(
            "# comment\n127.0.0.1 localhost\n127.0.0.1 runsc vm\n::1 ip6-localhost ip6-loopback\n\
             10.0.0.9\tdb.internal db # the database\nnot-an-ip name\n10.0.0.10\n",
        );
        let name = |ip: &str| h.name(ip.parse().unwrap());
        assert_eq!(name("127.0.0.1").as_deref(), Some("localhost"));
        assert_eq!(name("::1").as_deref(), Some("ip6-localhost"));
        assert_eq!(name("10.0.0.9").as_deref(), Some("db.internal"));
        assert_eq!(name("10.0.0.10"), None);
    }
}
