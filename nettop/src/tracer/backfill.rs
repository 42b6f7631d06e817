//! Backfill: the TCP and UDP sockets that already exist when the tracer
//! starts, in every network namespace some process is in, read from the
//! kernel through `sock_diag`, with the processes holding each socket.
//!
//! The probe only sees connections born after it is attached; this module
//! fills in the rest so the first screen is not empty.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Result;
use netlink_packet_sock_diag::constants::TCP_LISTEN;
use nettop_shared::{ConnKey, DIR_INCOMING, DIR_OUTGOING, DIR_UNKNOWN};
use procfs::process::FDTarget;

use super::conntrack::{Table, fins_live, payload};
use super::sock_diag::{ALL_STATES, Detail, Namespaces};
pub use super::sock_diag::{Proto, SocketEntry, fold_mapped};

/// All TCP and UDP sockets of the calling thread's network namespace,
/// listeners included, with the pids holding each.
pub fn sockets() -> Result<Vec<SocketEntry>> {
    let mut out = super::sock_diag::sockets_here()?;
    with_owners(&mut out);
    Ok(out)
}

fn with_owners(sockets: &mut [SocketEntry]) {
    let owners = socket_owners();
    for e in sockets {
        if let Some(pids) = owners.get(&e.inode) {
            e.owners = pids.clone();
        }
    }
}

/// Map socket inode -> owning pids by scanning /proc/*/fd (links "socket:[INODE]").
/// Processes that vanish or deny access during the scan are skipped silently.
pub fn socket_owners() -> HashMap<u64, Vec<u32>> {
    let mut map: HashMap<u64, Vec<u32>> = HashMap::new();
    for (ino, pid) in socket_inodes(None) {
        map.entry(ino).or_default().push(pid);
    }
    for pids in map.values_mut() {
        pids.sort_unstable();
        pids.dedup();
    }
    map
}

/// (socket inode, pid) for each socket descriptor of `pids`, or of every
/// process: through the privileged helper where nettop runs one (other
/// users' `/proc/PID/fd` needs capabilities nettop has dropped).
pub fn socket_inodes(pids: Option<&[u32]>) -> Vec<(u64, u32)> {
    match crate::helper::get() {
        Some(h) => h.socket_inodes(pids).unwrap_or_default(),
        None => scan_socket_inodes(pids),
    }
}

/// `socket_inodes`, read here.
pub fn scan_socket_inodes(pids: Option<&[u32]>) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut each = |p: &procfs::process::Process| {
        let Ok(fds) = p.fd() else { return };
        for fd in fds.flatten() {
            if let FDTarget::Socket(ino) = fd.target {
                out.push((ino, p.pid() as u32));
            }
        }
    };
    match pids {
        Some(pids) => {
            for &pid in pids {
                if let Ok(p) = procfs::process::Process::new(pid as i32) {
                    each(&p);
                }
            }
        }
        None => {
            for p in procfs::process::all_processes().into_iter().flatten().flatten() {
                each(&p);
            }
        }
    }
    out
}

/// TCP listening sockets, to tell incoming connections from outgoing ones.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    /// (netns, port) -> (family, address) of each listener on that port.
    by_port: HashMap<(u32, u16), Vec<(u8, IpAddr)>>,
}

impl Listeners {
    pub fn from_sockets(s: &[SocketEntry]) -> Listeners {
        let mut by_port: HashMap<_, Vec<_>> = HashMap::new();
        for e in s.iter().filter(|e| e.proto == Proto::Tcp && e.state == TCP_LISTEN) {
            by_port.entry((e.netns, e.lport)).or_default().push((e.family, e.laddr));
        }
        Listeners { by_port }
    }

    /// True if a TCP listener in the entry's netns covers its local port and
    /// address. A `::` listener also covers IPv4, as dual-stack is the
    /// default; a v6-only one cannot collide in practice because connect()
    /// never picks an ephemeral port a listener holds. UDP has no
    /// listeners, so UDP entries are never incoming here.
    pub fn is_incoming(&self, e: &SocketEntry) -> bool {
        if e.proto != Proto::Tcp {
            return false;
        }
        self.by_port.get(&(e.netns, e.lport)).is_some_and(|ls| {
            ls.iter().any(|&(family, addr)| {
                if addr.is_unspecified() {
                    family == e.family || family == 6
                } else {
                    addr == e.laddr
                }
            })
        })
    }
}

/// TCP state numbers as the kernel reports them (include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;

/// Fill `table` with the sockets that exist now, in every namespace of
/// `namespaces`: established TCP connections, connected UDP sockets, and
/// unconnected UDP sockets that a process holds. `counted` reads what the
/// probe has counted of UDP flows it saw too; it is read after the kernel's
/// dump, so that no datagram moving meanwhile is in both. A TCP
/// connection's totals are the kernel's own, whole-life counters.
pub(super) fn fill(
    table: &mut Table,
    namespaces: &Namespaces,
    now_ns: u64,
    counted: impl FnOnce() -> rustc_hash::FxHashMap<ConnKey, nettop_shared::ConnStats>,
) -> Result<()> {
    let mut sockets = Vec::new();
    for ns in namespaces.all() {
        ns.dump_tcp(ALL_STATES, Detail::Counters, &mut sockets)?;
        ns.dump_udp(ALL_STATES, &mut sockets)?;
    }
    with_owners(&mut sockets);
    let counted = counted();
    let listeners = Listeners::from_sockets(&sockets);
    for sock in &sockets {
        let unconnected_udp =
            sock.proto == Proto::Udp && sock.raddr.is_unspecified() && sock.owners.is_empty();
        let unestablished_tcp = sock.proto == Proto::Tcp && sock.state != TCP_ESTABLISHED;
        if sock.state == TCP_LISTEN || unestablished_tcp || unconnected_udp {
            continue;
        }
        let key = key_of(sock);
        let direction = if sock.proto == Proto::Udp {
            DIR_UNKNOWN
        } else if listeners.is_incoming(sock) {
            DIR_INCOMING
        } else {
            DIR_OUTGOING
        };
        if sock.proto == Proto::Tcp {
            // The kernel's counters cover the whole life: nothing to add.
            let raw = (sock.bytes_acked.unwrap_or(0), sock.bytes_received.unwrap_or(0));
            let (fin_acked, fin_received) = fins_live(sock.state);
            let bytes = payload(raw, direction, fin_acked, fin_received);
            table.backfill(key, direction, bytes, None, now_ns);
        } else {
            table.backfill(key, direction, (0, 0), counted.get(&key).copied(), now_ns);
        }
    }
    Ok(())
}

pub(super) fn key_of(sock: &SocketEntry) -> ConnKey {
    let mut k = ConnKey {
        netns: sock.netns,
        tgid: sock.owners.first().copied().unwrap_or(0),
        proto: match sock.proto {
            Proto::Tcp => nettop_shared::IPPROTO_TCP,
            Proto::Udp => nettop_shared::IPPROTO_UDP,
        },
        family: if sock.family == 4 { nettop_shared::AF_INET } else { nettop_shared::AF_INET6 },
        lport: sock.lport,
        rport: sock.rport,
        ..Default::default()
    };
    let put = |dst: &mut [u8; 16], a: IpAddr| match a {
        IpAddr::V4(v4) => dst[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => *dst = v6.octets(),
    };
    put(&mut k.laddr, sock.laddr);
    put(&mut k.raddr, sock.raddr);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::net::{SocketAddr as Sa, TcpListener, TcpStream, UdpSocket};
    use std::time::{Duration, Instant};

    fn find(all: &[SocketEntry], proto: Proto, local: Sa, peer: Sa) -> &SocketEntry {
        let (_, l, r) = fold_mapped(local.ip(), peer.ip());
        all.iter()
            .find(|e| {
                e.proto == proto
                    && (e.laddr, e.lport, e.raddr, e.rport) == (l, local.port(), r, peer.port())
            })
            .unwrap_or_else(|| panic!("{proto:?} {local} -> {peer} not in {all:#?}"))
    }

    /// Sends 1000 bytes client->server and 3000 back over `client`, then
    /// checks both ends, the listener and the byte counters.
    fn check_tcp_pair(listener: &TcpListener, client: TcpStream, family: u8) {
        let (mut server, _) = listener.accept().unwrap();
        let mut client = client;
        let mut buf = [0u8; 3000];
        client.write_all(&[1; 1000]).unwrap();
        server.read_exact(&mut buf[..1000]).unwrap();
        server.write_all(&[2; 3000]).unwrap();
        client.read_exact(&mut buf).unwrap();

        let (cl, sl) = (client.local_addr().unwrap(), server.local_addr().unwrap());
        // ACKs may be delayed (~40 ms); poll until the counters settle.
        let deadline = Instant::now() + Duration::from_secs(3);
        let (all, c, s) = loop {
            let all = sockets().unwrap();
            let c = find(&all, Proto::Tcp, cl, sl).clone();
            let s = find(&all, Proto::Tcp, sl, cl).clone();
            let settled = c.bytes_acked == Some(1001) && s.bytes_acked == Some(3000);
            if settled || Instant::now() > deadline {
                break (all, c, s);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let me = std::process::id();
        for e in [&c, &s] {
            assert_eq!((e.state, e.family), (1, family), "{e:?}");
            assert!(e.inode > 0 && e.owners.contains(&me), "{e:?}");
        }
        // 1001: the client's SYN is acked too (see SocketEntry::bytes_acked).
        assert_eq!((c.bytes_acked, c.bytes_received), (Some(1001), Some(3000)));
        assert_eq!((s.bytes_acked, s.bytes_received), (Some(3000), Some(1000)));

        let la = listener.local_addr().unwrap();
        let unspec =
            if la.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        let l = find(&all, Proto::Tcp, la, Sa::new(unspec, 0));
        assert_eq!(l.state, 10);
        let ls = Listeners::from_sockets(&all);
        assert!(ls.is_incoming(&s), "{s:?}");
        assert!(!ls.is_incoming(&c), "{c:?}");
    }

    #[test]
    fn tcp_v4() {
        let listener = TcpListener::bind("127.0.0.9:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        check_tcp_pair(&listener, client, 4);
    }

    #[test]
    fn tcp_v6() {
        let disabled = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6");
        if disabled.map_or(true, |s| s.trim() != "0") {
            sockets().unwrap();
            return;
        }
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        check_tcp_pair(&listener, client, 6);
    }

    #[test]
    fn tcp_v4_mapped() {
        use socket2::{Domain, Socket as S2, Type};
        let listener = TcpListener::bind("127.0.0.9:0").unwrap();
        let s = S2::new(Domain::IPV6, Type::STREAM, None).unwrap();
        s.set_only_v6(false).unwrap();
        let target: Sa = format!("[::ffff:127.0.0.9]:{}", listener.local_addr().unwrap().port())
            .parse()
            .unwrap();
        s.connect(&target.into()).unwrap();
        check_tcp_pair(&listener, s.into(), 4);
    }

    #[test]
    fn udp() {
        let unconnected = UdpSocket::bind("127.0.0.9:0").unwrap();
        let connected = UdpSocket::bind("127.0.0.9:0").unwrap();
        let (ua, ca) = (unconnected.local_addr().unwrap(), connected.local_addr().unwrap());
        connected.connect(ua).unwrap();
        let all = sockets().unwrap();
        let u = find(&all, Proto::Udp, ua, "0.0.0.0:0".parse().unwrap());
        assert_eq!((u.state, u.family, u.bytes_acked), (7, 4, None));
        assert!(u.raddr.is_unspecified() && u.owners.contains(&std::process::id()));
        let c = find(&all, Proto::Udp, ca, ua);
        assert_eq!((c.state, c.family), (1, 4));
        assert!(c.inode > 0 && c.owners.contains(&std::process::id()));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn folding() {
        let v4 = |a, b| (4, ip(a), ip(b));
        assert_eq!(
            fold_mapped(ip("::ffff:10.0.0.1"), ip("::ffff:1.2.3.4")),
            v4("10.0.0.1", "1.2.3.4")
        );
        assert_eq!(fold_mapped(ip("::ffff:10.0.0.1"), ip("::")), v4("10.0.0.1", "0.0.0.0"));
        assert_eq!(fold_mapped(ip("0.0.0.0"), ip("0.0.0.0")), v4("0.0.0.0", "0.0.0.0"));
        assert_eq!(fold_mapped(ip("::"), ip("::")), (6, ip("::"), ip("::")));
        assert_eq!(fold_mapped(ip("::1"), ip("::1")), (6, ip("::1"), ip("::1")));
        assert_eq!(fold_mapped(ip("fe80::1"), ip("::")), (6, ip("fe80::1"), ip("::")));
    }

    #[test]
    fn listeners() {
        let entry = |family, l: &str, lport, r: &str, state| SocketEntry {
            proto: Proto::Tcp,
            family,
            laddr: ip(l),
            lport,
            raddr: ip(r),
            rport: if state == 10 { 0 } else { 50000 },
            state,
            inode: 1,
            uid: 0,
            netns: 7,
            bytes_acked: None,
            bytes_received: None,
            tcp: None,
            owners: vec![],
        };
        let ls = Listeners::from_sockets(&[
            entry(4, "0.0.0.0", 80, "0.0.0.0", 10),
            entry(4, "10.0.0.1", 443, "0.0.0.0", 10),
            entry(6, "::", 22, "::", 10),
            entry(4, "10.0.0.1", 8080, "1.2.3.4", 1), // not a listener
        ]);
        assert!(ls.is_incoming(&entry(4, "10.0.0.2", 80, "1.2.3.4", 1)));
        assert!(ls.is_incoming(&entry(4, "10.0.0.1", 443, "1.2.3.4", 1)));
        assert!(!ls.is_incoming(&entry(4, "10.0.0.2", 443, "1.2.3.4", 1)));
        assert!(ls.is_incoming(&entry(6, "fe80::1", 22, "fe80::2", 1)));
        assert!(ls.is_incoming(&entry(4, "10.0.0.2", 22, "1.2.3.4", 1)));
        assert!(!ls.is_incoming(&entry(6, "fe80::1", 80, "fe80::2", 1)));
        assert!(!ls.is_incoming(&entry(4, "10.0.0.1", 8080, "1.2.3.4", 1)));
        let other_ns = SocketEntry { netns: 8, ..entry(4, "10.0.0.2", 80, "1.2.3.4", 1) };
        assert!(!ls.is_incoming(&other_ns));
        let udp = SocketEntry { proto: Proto::Udp, ..entry(4, "10.0.0.2", 80, "1.2.3.4", 1) };
        assert!(!ls.is_incoming(&udp));
    }
}
