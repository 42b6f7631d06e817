//! Who accepted each incoming TCP connection, on the tracepoint backend,
//! which has no accept hook. The probe reports the connection when it is
//! established (in softirq: no owner), and each accept() with the peer
//! address it returned and its listening fd. The peer's address and port,
//! in the accepting process's network namespace, name the connection.
//! An accept() that asked for no address takes the oldest connection
//! waiting on its listener's port, as the kernel's accept queue hands them
//! out (the port from the listening socket's inode in `/proc/PID/fd` and a
//! sock_diag dump of the listeners). Either report can come first: the
//! kernel queues a connection for accept() just before it marks it
//! established.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nettop_shared::ConnKey;
use rustc_hash::FxHashMap;

use super::sock_diag::{Namespaces, Proto, netns_of};

/// What is not matched within this long is dropped (an accept() on a
/// unix socket, a connection closed before anyone accepted it).
const PATIENCE: Duration = Duration::from_secs(10);
/// At most this many of each kind wait.
const MAX_WAITING: usize = 4096;
/// sock_diag's state bit for listeners.
const LISTEN_STATE: u32 = 1 << 10;

struct Waiting {
    key: ConnKey,
    sk: u64,
    since: Instant,
}

struct Accepted {
    netns: u32,
    /// The peer accept() returned (family, address, port; port 0 when it
    /// asked for none), else the listener's port.
    peer: Option<(u8, [u8; 16], u16)>,
    port: u16,
    tgid: u32,
    comm: [u8; 16],
    since: Instant,
}

/// An incoming connection and who accepted it.
pub struct Owned {
    pub key: ConnKey,
    pub sk: u64,
    pub comm: [u8; 16],
}

pub struct Accepts {
    waiting: VecDeque<Waiting>,
    accepted: VecDeque<Accepted>,
    /// A listening socket's inode → its namespace and port.
    listeners: FxHashMap<u64, (u32, u16)>,
    /// Its own sock_diag sockets: matching never waits on a listing's dump.
    namespaces: Namespaces,
}

impl Accepts {
    pub fn new() -> anyhow::Result<Accepts> {
        Ok(Accepts {
            waiting: VecDeque::new(),
            accepted: VecDeque::new(),
            listeners: FxHashMap::default(),
            namespaces: Namespaces::new()?,
        })
    }

    /// The probe reported an incoming connection (`key.tgid` is 0).
    pub fn incoming(&mut self, key: ConnKey, sk: u64) -> Option<Owned> {
        self.expire();
        let first = self.accepted.iter().position(|a| {
            a.netns == key.netns
                && match a.peer {
                    Some(p) => p == peer_of(&key),
                    None => a.port == key.lport,
                }
        });
        if let Some(a) = first.and_then(|i| self.accepted.remove(i)) {
            return Some(owned(key, sk, a.tgid, a.comm));
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
        }
        self.waiting.push_back(Waiting { key, sk, since: Instant::now() });
        None
    }

    /// accept() on `listen_fd` returned in process `tgid`; `peer` holds
    /// the address it returned (`rport` 0 when it asked for none).
    pub fn accepted(
        &mut self,
        tgid: u32,
        listen_fd: u64,
        peer: &ConnKey,
        comm: [u8; 16],
    ) -> Option<Owned> {
        self.expire();
        let (netns, peer, port) = if peer.rport != 0 {
            let ns = netns_of(std::path::Path::new(&format!("/proc/{tgid}/ns/net"))).ok()?;
            (ns, Some(peer_of(peer)), 0)
        } else {
            let (ns, port) = self.listener(tgid, listen_fd)?;
            (ns, None, port)
        };
        let first = self.waiting.iter().position(|w| {
            w.key.netns == netns
                && match peer {
                    Some(p) => p == peer_of(&w.key),
                    None => w.key.lport == port,
                }
        });
        if let Some(w) = first.and_then(|i| self.waiting.remove(i)) {
            return Some(owned(w.key, w.sk, tgid, comm));
        }
        if self.accepted.len() >= MAX_WAITING {
            self.accepted.pop_front();
        }
        self.accepted.push_back(Accepted { netns, peer, port, tgid, comm, since: Instant::now() });
        None
    }

    /// The namespace and port of the listening socket `fd` of `tgid`.
    fn listener(&mut self, tgid: u32, fd: u64) -> Option<(u32, u16)> {
        let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok()?;
        let inode = socket_inode(link.to_str()?)?;
        if let Some(&known) = self.listeners.get(&inode) {
            return Some(known);
        }
        // A listener not seen yet: learn every listener of its namespace.
        let netns = netns_of(std::path::Path::new(&format!("/proc/{tgid}/ns/net"))).ok()?;
        let sock = self.namespaces.open(netns, [tgid])?;
        let mut found = Vec::new();
        sock.dump(Proto::Tcp, LISTEN_STATE, &mut found).ok()?;
        if self.listeners.len() > 4 * MAX_WAITING {
            self.listeners.clear();
        }
        for l in found.iter().filter(|l| l.inode != 0) {
            self.listeners.insert(l.inode, (netns, l.lport));
        }
        self.listeners.get(&inode).copied()
    }

    fn expire(&mut self) {
        self.waiting.retain(|c| c.since.elapsed() < PATIENCE);
        self.accepted.retain(|a| a.since.elapsed() < PATIENCE);
    }
}

fn peer_of(k: &ConnKey) -> (u8, [u8; 16], u16) {
    (k.family, k.raddr, k.rport)
}

fn owned(key: ConnKey, sk: u64, tgid: u32, comm: [u8; 16]) -> Owned {
    Owned { key: ConnKey { tgid, ..key }, sk, comm }
}

/// "socket:[1234]" → 1234.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_name_an_inode() {
        assert_eq!(socket_inode("socket:[4026532]"), Some(4_026_532));
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
