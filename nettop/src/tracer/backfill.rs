//! Backfill: the TCP and UDP sockets that already exist when the tracer
//! starts, read from the kernel through `sock_diag` netlink, with the
//! kernel's own TCP byte counters and the processes holding each socket.
//!
//! The probe only sees connections born after it is attached; this module
//! fills in the rest so the first screen is not empty.
//!
//! Framing and attributes use `netlink-packet-core`, the protocol numbers
//! come from `netlink-packet-sock-diag`, but `inet_diag_req_v2` and
//! `inet_diag_msg` are encoded and decoded here: that crate's message types
//! implement the traits of `netlink-packet-core` 0.9, not those of the 0.8
//! this crate links, so they cannot be (de)serialised from here.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NlasIterator,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::ExtensionFlags;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use nettop_shared::{ConnKey, DIR_INCOMING, DIR_OUTGOING, DIR_UNKNOWN};
use procfs::process::FDTarget;

use super::conntrack::Table;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub proto: Proto,
    /// 4 or 6; IPv4-mapped IPv6 sockets are reported as 4 with V4 addresses.
    pub family: u8,
    pub laddr: IpAddr,
    pub lport: u16,
    /// Unspecified for listeners and unconnected UDP sockets.
    pub raddr: IpAddr,
    pub rport: u16,
    /// Kernel TCP state number; UDP uses 7 (CLOSE) unconnected, 1 connected.
    pub state: u8,
    /// 0 for sockets no process holds any more (TIME_WAIT, SYN_RECV).
    pub inode: u64,
    pub uid: u32,
    pub netns: u32,
    /// Raw `tcpi_bytes_acked`: the kernel counts every sequence number acked,
    /// so the active opener's SYN adds 1 (as does an acked FIN); `ss` shows
    /// the same. Subtract 1 for outgoing connections to get payload bytes.
    pub bytes_acked: Option<u64>,
    /// Raw `tcpi_bytes_received`; a received FIN adds 1.
    pub bytes_received: Option<u64>,
    /// Sorted, deduplicated pids holding an fd to the socket.
    pub owners: Vec<u32>,
}

/// `sizeof(struct inet_diag_msg)`; attributes follow at this (aligned) offset.
const DIAG_MSG_LEN: usize = 72;
/// `sizeof(struct inet_diag_req_v2)`.
const DIAG_REQ_LEN: usize = 56;
/// Offsets in UAPI `struct tcp_info`, stable since Linux 4.1 (bytes_received)
/// and 4.2; the struct only ever grows at the end.
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
/// The kernel caps a dump datagram at 32 KiB; twice that leaves headroom.
const RECV_BUF: usize = 64 * 1024;

/// All TCP and UDP sockets, IPv4 and IPv6, of the network namespace the
/// calling thread is in, including listeners (TCP LISTEN state).
pub fn sockets() -> Result<Vec<SocketEntry>> {
    let netns = current_netns()?;
    let mut sock = Socket::new(NETLINK_SOCK_DIAG).context("opening NETLINK_SOCK_DIAG socket")?;
    sock.bind_auto().context("binding sock_diag socket")?;
    sock.connect(&SocketAddr::new(0, 0)).context("connecting sock_diag socket to the kernel")?;

    let mut out = Vec::new();
    let mut seq = 0;
    for proto in [Proto::Tcp, Proto::Udp] {
        for family in [AF_INET, AF_INET6] {
            seq += 1;
            dump_family(&sock, proto, family, seq, netns, &mut out)
                .with_context(|| format!("sock_diag dump of {proto:?} family {family}"))?;
        }
    }
    let owners = socket_owners();
    for e in &mut out {
        if let Some(pids) = owners.get(&e.inode) {
            e.owners = pids.clone();
        }
    }
    Ok(out)
}

fn current_netns() -> Result<u32> {
    let md =
        std::fs::metadata("/proc/thread-self/ns/net").context("stat /proc/thread-self/ns/net")?;
    // nsfs inode numbers fit in 32 bits; that is how the probe reports them.
    Ok(md.ino() as u32)
}

fn request(proto: Proto, family: u8, seq: u32) -> [u8; 16 + DIAG_REQ_LEN] {
    let mut buf = [0u8; 16 + DIAG_REQ_LEN];
    let mut nl = NetlinkBuffer::new(&mut buf[..]);
    nl.set_length((16 + DIAG_REQ_LEN) as u32);
    nl.set_message_type(SOCK_DIAG_BY_FAMILY);
    nl.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
    nl.set_sequence_number(seq);
    let req = nl.payload_mut();
    req[0] = family;
    (req[1], req[2]) = match proto {
        Proto::Tcp => (IPPROTO_TCP, ExtensionFlags::INFO.bits()),
        Proto::Udp => (IPPROTO_UDP, 0),
    };
    // Every state bit, not just the 11 classic ones, so that newer states
    // (e.g. TCP_BOUND_INACTIVE, 13) are listed too. The socket id stays
    // zero: it is a filter only for single-socket queries.
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    buf
}

/// One dump request, for one protocol and family; reads replies until
/// NLMSG_DONE.
fn dump_family(
    sock: &Socket,
    proto: Proto,
    family: u8,
    seq: u32,
    netns: u32,
    out: &mut Vec<SocketEntry>,
) -> Result<()> {
    sock.send(&request(proto, family, seq), 0).context("sending request")?;
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        buf.clear();
        // MSG_TRUNC makes recv report the datagram's real size, so a
        // truncated reply is detected rather than misparsed.
        let n = match sock.recv(&mut buf, libc::MSG_TRUNC) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receiving reply"),
        };
        if n == 0 || n > buf.len() {
            bail!("reply of {n} bytes does not fit a {} byte buffer", buf.len());
        }
        let mut off = 0;
        while off < n {
            let msg = NetlinkBuffer::new_checked(&buf[off..n])
                .map_err(|e| anyhow!("{e}"))
                .context("malformed netlink message")?;
            off += (msg.length() as usize + 3) & !3;
            // Dumps are run one after another on one socket; anything else
            // (a stray reply to an earlier request) is not ours.
            if msg.sequence_number() != seq {
                continue;
            }
            // NLM_F_DUMP_INTR (tables changed mid-dump) is ignored: this is a
            // best-effort snapshot that the tracer's events keep up to date.
            match msg.message_type() {
                NLMSG_DONE => {
                    let errno = msg
                        .payload()
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    if errno < 0 {
                        return Err(io::Error::from_raw_os_error(errno.saturating_neg()))
                            .context("kernel ended the dump with an error");
                    }
                    return Ok(());
                }
                NLMSG_ERROR => {
                    let err = ErrorBuffer::new_checked(msg.payload())
                        .map_err(|e| anyhow!("{e}"))
                        .context("malformed NLMSG_ERROR")?;
                    if let Some(code) = err.code() {
                        return Err(io::Error::from_raw_os_error(code.get().saturating_neg()))
                            .context("kernel rejected the request");
                    }
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(e) = parse_diag_msg(msg.payload(), proto, netns)? {
                        out.push(e);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Decodes one `struct inet_diag_msg` and its attributes. Sockets of an
/// unknown family are skipped rather than failing the whole dump.
fn parse_diag_msg(p: &[u8], proto: Proto, netns: u32) -> Result<Option<SocketEntry>> {
    if p.len() < DIAG_MSG_LEN {
        bail!("inet_diag_msg of {} bytes, expected {DIAG_MSG_LEN}", p.len());
    }
    let u16_be = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
    let u32_ne = |o: usize| u32::from_ne_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
    let addr = |o: usize| -> Option<IpAddr> {
        match p[0] {
            AF_INET => Some(Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]).into()),
            AF_INET6 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(&p[o..o + 16]).ok()?).into()),
            _ => None,
        }
    };
    let (Some(l), Some(r)) = (addr(8), addr(24)) else {
        return Ok(None);
    };
    let (family, laddr, raddr) = fold_mapped(l, r);

    let mut info: Option<&[u8]> = None;
    // A malformed attribute ends the walk; the socket itself is still valid.
    for nla in NlasIterator::new(&p[DIAG_MSG_LEN..]).map_while(Result::ok) {
        if nla.kind() == INET_DIAG_INFO {
            // value() borrows the NlaBuffer; into_inner() keeps the reply's lifetime.
            let end = nla.length() as usize;
            info = nla.into_inner().get(4..end);
        }
    }
    let tcpi_u64 = |o: usize| {
        let b = info?.get(o..o + 8)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    };
    Ok(Some(SocketEntry {
        proto,
        family,
        laddr,
        lport: u16_be(4),
        raddr,
        rport: u16_be(6),
        state: p[1],
        inode: u64::from(u32_ne(68)),
        uid: u32_ne(64),
        netns,
        bytes_acked: tcpi_u64(TCPI_BYTES_ACKED),
        bytes_received: tcpi_u64(TCPI_BYTES_RECEIVED),
        owners: Vec::new(),
    }))
}

/// Folds an IPv4-mapped IPv6 pair (`::ffff:a.b.c.d`) to IPv4, so a
/// connection looks the same whether its socket is AF_INET or AF_INET6.
/// `::` counts as mapped-compatible only beside a mapped address, so a
/// dual-stack wildcard listener (`::` / `::`) stays family 6.
pub fn fold_mapped(l: IpAddr, r: IpAddr) -> (u8, IpAddr, IpAddr) {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) if v.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    };
    match (v4(l), v4(r)) {
        (Some(a), Some(b)) if l.is_ipv4() || !(l.is_unspecified() && r.is_unspecified()) => {
            (4, a.into(), b.into())
        }
        _ => (6, l, r),
    }
}

/// Map socket inode -> owning pids by scanning /proc/*/fd (links "socket:[INODE]").
/// Processes that vanish or deny access during the scan are skipped silently.
pub fn socket_owners() -> HashMap<u64, Vec<u32>> {
    let mut map: HashMap<u64, Vec<u32>> = HashMap::new();
    let Ok(procs) = procfs::process::all_processes() else {
        return map;
    };
    for p in procs.flatten() {
        let Ok(fds) = p.fd() else { continue };
        let pid = p.pid() as u32;
        for fd in fds.flatten() {
            if let FDTarget::Socket(ino) = fd.target {
                map.entry(ino).or_default().push(pid);
            }
        }
    }
    for pids in map.values_mut() {
        pids.sort_unstable();
        pids.dedup();
    }
    map
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

/// Fill `table` with the sockets that exist now: established TCP
/// connections, connected UDP sockets, and unconnected UDP sockets that a
/// process holds. `counted` reads what the probe has counted, for
/// connections it saw too; it is read after the kernel's dump, so that no
/// byte moving meanwhile is in both.
pub(super) fn fill(
    table: &mut Table,
    counted: impl FnOnce() -> rustc_hash::FxHashMap<ConnKey, nettop_shared::ConnStats>,
) -> Result<()> {
    let sockets = sockets()?;
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
        // tcp_info counts the active opener's SYN in bytes_acked (one
        // sequence number, not a byte of data).
        let syn = u64::from(direction == DIR_OUTGOING);
        let acked = sock.bytes_acked.unwrap_or(0).saturating_sub(syn);
        let now = (acked, sock.bytes_received.unwrap_or(0));
        table.backfill(key, direction, now, counted.get(&key).copied());
    }
    Ok(())
}

fn key_of(sock: &SocketEntry) -> ConnKey {
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

    #[test]
    fn tcp_info_offsets_match_libc() {
        assert_eq!(std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked), TCPI_BYTES_ACKED);
        assert_eq!(std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received), TCPI_BYTES_RECEIVED);
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
