//! The kernel's own table of TCP and UDP sockets, read through `sock_diag`
//! netlink: addresses, state, queues, and for TCP the `tcp_info` counters
//! (bytes acknowledged and received, RTT, retransmits, congestion window).
//!
//! A netlink socket answers for the network namespace it was made in, for
//! good: one is opened per namespace when that namespace is first seen (by
//! a thread that enters it, makes the socket and ends), and every dump
//! after that needs no privilege.
//!
//! Framing and attributes use `netlink-packet-core`, the protocol numbers
//! come from `netlink-packet-sock-diag`, but `inet_diag_req_v2` and
//! `inet_diag_msg` are encoded and decoded here: that crate's message types
//! implement the traits of `netlink-packet-core` 0.9, not those of the 0.8
//! this crate links, so they cannot be (de)serialised from here.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NlasIterator,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::ExtensionFlags;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use nettop_shared::ConnKey;

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
    /// the same. `conntrack::payload` turns it into payload bytes.
    pub bytes_acked: Option<u64>,
    /// Raw `tcpi_bytes_received`; a received FIN adds 1.
    pub bytes_received: Option<u64>,
    /// The rest of `tcp_info` that diagnosis shows, for TCP sockets.
    pub tcp: Option<TcpInfo>,
    /// Sorted, deduplicated pids holding an fd to the socket (filled by
    /// the backfill, which scans /proc).
    pub owners: Vec<u32>,
}

/// A TCP socket's health as the kernel reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpInfo {
    /// Smoothed round-trip time and its variation, µs.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Retransmitted segments over the connection's life.
    pub total_retrans: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Bytes sent and not yet acknowledged, plus not yet sent
    /// (`idiag_wqueue`).
    pub send_queue: u32,
    /// Bytes arrived and not yet read by the application (`idiag_rqueue`).
    pub recv_queue: u32,
    /// Of `send_queue`, bytes not yet sent.
    pub notsent_bytes: u32,
    /// The most recent delivery rate estimate, bytes per second.
    pub delivery_rate: u64,
    /// The peer's advertised receive window, bytes (Linux 5.4+).
    pub snd_wnd: Option<u32>,
    /// Time spent sending with data outstanding, and the parts of it held
    /// back by the peer's window and by the send buffer, µs in jiffy steps
    /// (Linux 4.10+; cumulative).
    pub busy_us: u64,
    pub rwnd_limited_us: u64,
    pub sndbuf_limited_us: u64,
    /// Raw `tcpi_bytes_acked` and `tcpi_bytes_received` (sequence space):
    /// progress between two reads. The connection's totals are payload.
    #[serde(skip)]
    pub acked_raw: u64,
    #[serde(skip)]
    pub received_raw: u64,
}

/// A dump walks the kernel's whole TCP table, TIME_WAIT sockets included:
/// under churn one can take tens of milliseconds. Periodic dumps that are
/// not a listing's wait after a slow one so that they take at most
/// 1/MAX_WALK_SHARE of the time.
const MAX_WALK_SHARE: u32 = 20;

/// How long to wait after a periodic dump that took `took`, at least.
pub fn rest_after_walk(took: std::time::Duration) -> std::time::Duration {
    took * (MAX_WALK_SHARE - 1)
}

/// At most this many sockets are read one lookup each (about 2.5 µs
/// apiece); more, by dumping the namespace's table. A dump walks every
/// bucket of the kernel's table and every socket in it, TIME_WAIT ones
/// included: a millisecond or more even on a quiet host, ten under churn.
pub const LOOKUPS_AT_MOST: usize = 512;

/// `sizeof(struct inet_diag_msg)`; attributes follow at this (aligned) offset.
const DIAG_MSG_LEN: usize = 72;
/// `sizeof(struct inet_diag_req_v2)`.
const DIAG_REQ_LEN: usize = 56;
/// `TCPDIAG_GETSOCK`: the older request form. Its dump covers IPv4 and
/// IPv6 in one walk of the kernel's socket table; the newer form names one
/// family, and each family's dump walks the whole table.
const TCPDIAG_GETSOCK: u16 = 18;
/// `sizeof(struct inet_diag_req)`, the older form's request.
const DIAG_REQ_V1_LEN: usize = 60;
/// The kernel caps a dump datagram at 32 KiB; twice that leaves headroom.
const RECV_BUF: usize = 64 * 1024;

/// Every TCP state bit, not just the 11 classic ones, so that newer states
/// (e.g. TCP_BOUND_INACTIVE, 13) are listed too.
pub const ALL_STATES: u32 = u32::MAX;
/// The states of a connection that is, or was, established: not listeners,
/// half-open ones or TIME_WAIT leftovers (which carry no counters).
pub const CONNECTED_STATES: u32 = (1 << 1) // ESTABLISHED
    | (1 << 4) // FIN_WAIT1
    | (1 << 5) // FIN_WAIT2
    | (1 << 8) // CLOSE_WAIT
    | (1 << 9) // LAST_ACK
    | (1 << 11); // CLOSING

/// What a TCP dump carries beside each socket's addresses, state, queues
/// and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// `tcp_info`: the byte counters, RTT, retransmits and the rest.
    Counters,
    /// Nothing more: which sockets exist. The kernel fills far less.
    Presence,
}

/// A `sock_diag` socket bound to one network namespace.
pub struct DiagSocket {
    sock: Socket,
    /// The namespace's inode number, as the probe reports it.
    pub netns: u32,
    /// The kernel refused the older request form (one walk for both
    /// families): ask per family instead.
    per_family: std::cell::Cell<bool>,
    /// The sequence number of the next single-socket lookup.
    next_seq: std::cell::Cell<u32>,
}

impl DiagSocket {
    /// In the calling thread's network namespace.
    pub fn here() -> Result<DiagSocket> {
        let netns = netns_of(Path::new("/proc/thread-self/ns/net"))?;
        let mut sock =
            Socket::new(NETLINK_SOCK_DIAG).context("opening NETLINK_SOCK_DIAG socket")?;
        sock.bind_auto().context("binding sock_diag socket")?;
        sock.connect(&SocketAddr::new(0, 0))
            .context("connecting sock_diag socket to the kernel")?;
        Ok(DiagSocket {
            sock,
            netns,
            per_family: std::cell::Cell::new(false),
            next_seq: std::cell::Cell::new(1 << 16),
        })
    }

    /// In the network namespace `ns_file` names (`/proc/PID/ns/net`): a
    /// short-lived thread enters it and makes the socket, so no thread of
    /// nettop stays in another namespace. Needs CAP_SYS_ADMIN.
    pub fn in_namespace(ns_file: &Path) -> Result<DiagSocket> {
        let ns =
            std::fs::File::open(ns_file).with_context(|| format!("open {}", ns_file.display()))?;
        std::thread::Builder::new()
            .name("nettop-netns".into())
            .spawn(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a namespace fd we own; it affects only this
                // thread, which ends once the socket is made.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns: {}", io::Error::last_os_error());
                }
                DiagSocket::here()
            })
            .context("spawn a thread to enter a network namespace")?
            .join()
            .map_err(|_| anyhow!("the namespace thread panicked"))?
    }

    /// In namespace `netns`, entered through the first of `pids` (or one
    /// of its threads) that is in it.
    pub fn entered(netns: u32, pids: &[u32]) -> Result<DiagSocket> {
        let file = pids.iter().find_map(|&pid| namespace_file(pid, netns)).ok_or_else(|| {
            anyhow!("no process of {} is in network namespace {netns}", pids.len())
        })?;
        DiagSocket::in_namespace(&file)
    }

    /// The socket's descriptor, to pass to another process.
    pub fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the socket's descriptor, open while `self` lives; the
        // copy outlives it.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }.try_clone_to_owned()
    }

    /// A socket the privileged helper made in namespace `netns`.
    pub fn from_fd(fd: std::os::fd::OwnedFd, netns: u32) -> DiagSocket {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor is ours alone, and a NETLINK_SOCK_DIAG
        // socket already bound and connected.
        let sock = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        DiagSocket {
            sock,
            netns,
            per_family: std::cell::Cell::new(false),
            next_seq: std::cell::Cell::new(1 << 16),
        }
    }

    /// Every TCP socket in this namespace whose state is in `states` (a
    /// bit per state), both families, in one walk of the kernel's table
    /// where the kernel allows it.
    pub fn dump_tcp(&self, states: u32, detail: Detail, out: &mut Vec<SocketEntry>) -> Result<()> {
        self.stream_tcp(states, detail, |batch| out.extend_from_slice(batch))
    }

    /// `dump_tcp`, handing over each reply's sockets as it arrives (a
    /// hundred or so) rather than all of them at the end: a dump of 100 000
    /// sockets is never held whole.
    pub fn stream_tcp(
        &self,
        states: u32,
        detail: Detail,
        mut take: impl FnMut(&[SocketEntry]),
    ) -> Result<()> {
        if !self.per_family.get() {
            let req = request_both_families(states, detail, 3);
            let mut taken = false;
            let each = &mut |batch: &[SocketEntry]| {
                taken |= !batch.is_empty();
                take(batch)
            };
            match run_dump(&self.sock, &req, Proto::Tcp, 3, self.netns, each) {
                Ok(()) => return Ok(()),
                // Refused at once: an older or newer kernel without it.
                Err(_) if !taken => self.per_family.set(true),
                Err(e) => return Err(e),
            }
        }
        for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
            let req = request(Proto::Tcp, family, states, detail, seq);
            run_dump(&self.sock, &req, Proto::Tcp, seq, self.netns, &mut take)
                .with_context(|| format!("sock_diag dump of TCP family {family}"))?;
        }
        Ok(())
    }

    /// The TCP sockets of `keys` that the kernel has now in one of
    /// `states`, handed to `take` a few dozen at a time. One hash lookup
    /// each, where a dump walks the whole table, every bucket and every
    /// TIME_WAIT socket: the cheaper way to read a few sockets on a busy
    /// host. A tuple the kernel no longer has (or has in another state) is
    /// left out; an error means some tuples went unanswered, and nothing
    /// may be concluded from their absence.
    pub fn lookup_tcp(
        &self,
        keys: &[ConnKey],
        states: u32,
        detail: Detail,
        mut take: impl FnMut(&[SocketEntry]),
    ) -> Result<()> {
        let mut req = Vec::with_capacity(LOOKUPS_PER_SEND * LOOKUP_LEN);
        let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        let mut found = Vec::with_capacity(LOOKUPS_PER_SEND);
        for chunk in keys.chunks(LOOKUPS_PER_SEND) {
            let first = self.next_seq.get();
            self.next_seq.set(first.wrapping_add(chunk.len() as u32));
            req.clear();
            for (i, key) in chunk.iter().enumerate() {
                req.extend_from_slice(&lookup_request(key, detail, first.wrapping_add(i as u32)));
            }
            self.sock.send(&req, 0).context("sending lookups")?;
            // The kernel answers within send(), one message per request
            // (the socket, or NLMSG_ERROR): all are queued by now.
            let mut answered = 0;
            found.clear();
            loop {
                buf.clear();
                let n = match self.sock.recv(&mut buf, libc::MSG_TRUNC | libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e).context("receiving lookups"),
                };
                if n == 0 || n > buf.len() {
                    bail!("reply of {n} bytes does not fit a {} byte buffer", buf.len());
                }
                answered +=
                    parse_answers(&buf[..n], first, chunk.len() as u32, self.netns, &mut found)?;
            }
            if answered != chunk.len() {
                bail!("{} of {} lookups went unanswered", chunk.len() - answered, chunk.len());
            }
            found.retain(|e| states & (1 << e.state) != 0);
            take(&found);
        }
        Ok(())
    }

    /// Every UDP socket in this namespace whose state is in `states`
    /// (CLOSE, 7, unconnected; ESTABLISHED, 1, connected), both families.
    pub fn dump_udp(&self, states: u32, out: &mut Vec<SocketEntry>) -> Result<()> {
        for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
            let req = request(Proto::Udp, family, states, Detail::Presence, seq);
            run_dump(&self.sock, &req, Proto::Udp, seq, self.netns, &mut |b| {
                out.extend_from_slice(b)
            })
            .with_context(|| format!("sock_diag dump of UDP family {family}"))?;
        }
        Ok(())
    }
}

/// The inode number of a namespace file, as the probe reports namespaces
/// (nsfs inode numbers fit in 32 bits).
pub fn netns_of(ns_file: &Path) -> Result<u32> {
    let md = std::fs::metadata(ns_file).with_context(|| format!("stat {}", ns_file.display()))?;
    Ok(md.ino() as u32)
}

/// All TCP and UDP sockets, IPv4 and IPv6, of the network namespace the
/// calling thread is in, including listeners (TCP LISTEN state), without
/// owners.
pub fn sockets_here() -> Result<Vec<SocketEntry>> {
    let sock = DiagSocket::here()?;
    let mut out = Vec::new();
    sock.dump_tcp(ALL_STATES, Detail::Counters, &mut out)?;
    sock.dump_udp(ALL_STATES, &mut out)?;
    Ok(out)
}

fn extensions(detail: Detail) -> u8 {
    match detail {
        Detail::Counters => ExtensionFlags::INFO.bits(),
        Detail::Presence => 0,
    }
}

/// A dump request of `N` bytes: the netlink header, the body zeroed.
fn dump_request<const N: usize>(message_type: u16, seq: u32) -> [u8; N] {
    let mut buf = [0u8; N];
    let mut nl = NetlinkBuffer::new(&mut buf[..]);
    nl.set_length(N as u32);
    nl.set_message_type(message_type);
    nl.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
    nl.set_sequence_number(seq);
    buf
}

/// `inet_diag_req_v2`: one protocol, one family.
fn request(
    proto: Proto,
    family: u8,
    states: u32,
    detail: Detail,
    seq: u32,
) -> [u8; 16 + DIAG_REQ_LEN] {
    let mut buf = dump_request(SOCK_DIAG_BY_FAMILY, seq);
    let req = &mut buf[16..];
    req[0] = family;
    (req[1], req[2]) = match proto {
        Proto::Tcp => (IPPROTO_TCP, extensions(detail)),
        Proto::Udp => (IPPROTO_UDP, 0),
    };
    // The socket id stays zero: it is a filter only for single-socket
    // queries.
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    buf
}

/// One request and its header: `inet_diag_req_v2` naming one socket.
const LOOKUP_LEN: usize = 16 + DIAG_REQ_LEN;
/// Single-socket requests sent in one datagram. Each answer waits in the
/// socket's receive buffer (about 200 KiB) until read, a kilobyte or two
/// apiece: more would overflow it, and a dropped answer is unanswered.
const LOOKUPS_PER_SEND: usize = 64;

/// `inet_diag_req_v2` for the one TCP socket `key` names.
fn lookup_request(key: &ConnKey, detail: Detail, seq: u32) -> [u8; LOOKUP_LEN] {
    let mut buf = [0u8; LOOKUP_LEN];
    let mut nl = NetlinkBuffer::new(&mut buf[..]);
    nl.set_length(LOOKUP_LEN as u32);
    nl.set_message_type(SOCK_DIAG_BY_FAMILY);
    nl.set_flags(NLM_F_REQUEST);
    nl.set_sequence_number(seq);
    let req = &mut buf[16..];
    req[0] = key.family;
    req[1] = IPPROTO_TCP;
    req[2] = extensions(detail);
    req[4..8].copy_from_slice(&ALL_STATES.to_ne_bytes());
    // inet_diag_sockid: ports big-endian, the local end first, addresses
    // as the key keeps them (an IPv4 one in the first four bytes).
    req[8..10].copy_from_slice(&key.lport.to_be_bytes());
    req[10..12].copy_from_slice(&key.rport.to_be_bytes());
    req[12..28].copy_from_slice(&key.laddr);
    req[28..44].copy_from_slice(&key.raddr);
    // No interface; INET_DIAG_NOCOOKIE: any socket on the tuple.
    req[48..56].fill(0xff);
    buf
}

/// The answers to lookups `first..first + count` in one datagram: sockets
/// into `out`. Returns how many lookups it answered (a socket, or "none").
fn parse_answers(
    buf: &[u8],
    first: u32,
    count: u32,
    netns: u32,
    out: &mut Vec<SocketEntry>,
) -> Result<usize> {
    let mut answered = 0;
    for msg in messages(buf) {
        let msg = msg?;
        if msg.sequence_number().wrapping_sub(first) >= count {
            continue;
        }
        match msg.message_type() {
            NLMSG_ERROR => {
                let err = ErrorBuffer::new_checked(msg.payload())
                    .map_err(|e| anyhow!("{e}"))
                    .context("malformed NLMSG_ERROR")?;
                match err.code().map(|c| c.get().saturating_neg()) {
                    Some(libc::ENOENT) | None => answered += 1,
                    Some(code) => {
                        return Err(io::Error::from_raw_os_error(code))
                            .context("kernel rejected a lookup");
                    }
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                answered += 1;
                if let Some(e) = parse_diag_msg(msg.payload(), Proto::Tcp, netns)? {
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    Ok(answered)
}

/// `inet_diag_req` under `TCPDIAG_GETSOCK`: TCP, every family.
fn request_both_families(states: u32, detail: Detail, seq: u32) -> [u8; 16 + DIAG_REQ_V1_LEN] {
    let mut buf = dump_request(TCPDIAG_GETSOCK, seq);
    let req = &mut buf[16..];
    // idiag_family is not read by the dump; idiag_ext is byte 3, the
    // socket id (zero) follows, then idiag_states.
    req[0] = AF_INET;
    req[3] = extensions(detail);
    req[52..56].copy_from_slice(&states.to_ne_bytes());
    buf
}

/// Sends one dump request and reads replies until NLMSG_DONE, handing
/// each reply's sockets to `take`.
fn run_dump(
    sock: &Socket,
    req: &[u8],
    proto: Proto,
    seq: u32,
    netns: u32,
    take: &mut dyn FnMut(&[SocketEntry]),
) -> Result<()> {
    sock.send(req, 0).context("sending request")?;
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    let mut batch = Vec::new();
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
        batch.clear();
        let done = parse_replies(&buf[..n], proto, seq, netns, &mut batch)?;
        take(&batch);
        if done {
            return Ok(());
        }
    }
}

/// The netlink messages of one datagram, in order; a malformed one ends it.
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<NetlinkBuffer<&[u8]>>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(off..).filter(|r| !r.is_empty())?;
        match NetlinkBuffer::new_checked(rest) {
            Ok(msg) => {
                off += (msg.length() as usize + 3) & !3;
                Some(Ok(msg))
            }
            Err(e) => {
                off = buf.len();
                Some(Err(anyhow!("{e}")).context("malformed netlink message"))
            }
        }
    })
}

/// The messages of one reply datagram, into `out`. True once the dump is
/// done.
pub fn parse_replies(
    buf: &[u8],
    proto: Proto,
    seq: u32,
    netns: u32,
    out: &mut Vec<SocketEntry>,
) -> Result<bool> {
    for msg in messages(buf) {
        let msg = msg?;
        // Dumps are run one after another on one socket; anything else
        // (a stray reply to an earlier request) is not ours.
        if msg.sequence_number() != seq {
            continue;
        }
        // NLM_F_DUMP_INTR (tables changed mid-dump) is ignored: this is a
        // snapshot, and the tracer's events keep the table up to date.
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
                return Ok(true);
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
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                if let Some(e) = parse_diag_msg(msg.payload(), proto, netns)? {
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// A field of `struct tcp_info` from a reply that may be shorter than
/// this build's struct (an older kernel's).
fn tcpi<T: Copy>(info: &[u8], offset: usize) -> Option<T> {
    let b = info.get(offset..offset + size_of::<T>())?;
    // SAFETY: `b` holds exactly size_of::<T>() bytes and T is a plain
    // integer here; read_unaligned copes with any alignment.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

macro_rules! tcpi {
    ($info:expr, $field:ident) => {
        tcpi($info, std::mem::offset_of!(libc::tcp_info, $field))
    };
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
    let tcp = info.map(|i| TcpInfo {
        rtt_us: tcpi!(i, tcpi_rtt).unwrap_or(0),
        rttvar_us: tcpi!(i, tcpi_rttvar).unwrap_or(0),
        total_retrans: tcpi!(i, tcpi_total_retrans).unwrap_or(0),
        snd_cwnd: tcpi!(i, tcpi_snd_cwnd).unwrap_or(0),
        send_queue: u32_ne(60),
        recv_queue: u32_ne(56),
        notsent_bytes: tcpi!(i, tcpi_notsent_bytes).unwrap_or(0),
        delivery_rate: tcpi!(i, tcpi_delivery_rate).unwrap_or(0),
        snd_wnd: tcpi!(i, tcpi_snd_wnd),
        busy_us: tcpi!(i, tcpi_busy_time).unwrap_or(0),
        rwnd_limited_us: tcpi!(i, tcpi_rwnd_limited).unwrap_or(0),
        sndbuf_limited_us: tcpi!(i, tcpi_sndbuf_limited).unwrap_or(0),
        acked_raw: tcpi!(i, tcpi_bytes_acked).unwrap_or(0),
        received_raw: tcpi!(i, tcpi_bytes_received).unwrap_or(0),
    });
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
        bytes_acked: info.and_then(|i| tcpi!(i, tcpi_bytes_acked)),
        bytes_received: info.and_then(|i| tcpi!(i, tcpi_bytes_received)),
        tcp,
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

/// One `DiagSocket` per network namespace seen so far, keyed by the
/// namespace's inode number.
pub struct Namespaces {
    sockets: rustc_hash::FxHashMap<u32, DiagSocket>,
    /// The namespace nettop runs in: never closed.
    pub home: u32,
    /// Namespaces that could not be entered, and when that was last tried.
    failed: rustc_hash::FxHashMap<u32, std::time::Instant>,
}

/// The file of process `pid`'s network namespace if it is `netns`, or of
/// one of its threads' that is (a thread can have a namespace of its own).
fn namespace_file(pid: u32, netns: u32) -> Option<std::path::PathBuf> {
    let main = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    if netns_of(&main).ok()? == netns {
        return Some(main);
    }
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .map(|t| t.path().join("ns/net"))
        .find(|f| netns_of(f).is_ok_and(|ns| ns == netns))
}

/// Every network namespace some process or thread is in, with the first
/// process found in it.
pub fn every_process_namespace() -> Vec<(u32, u32)> {
    let mut first_pid: rustc_hash::FxHashMap<u32, u32> = Default::default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for d in dir.flatten() {
            let Some(pid) = d.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // A thread can have a namespace of its own (unshare, setns).
            let tasks = std::fs::read_dir(d.path().join("task")).into_iter().flatten();
            for t in tasks.flatten() {
                if let Ok(ns) = netns_of(&t.path().join("ns/net")) {
                    first_pid.entry(ns).or_insert(pid);
                }
            }
        }
    }
    first_pid.into_iter().collect()
}

/// How long a namespace that could not be entered is left alone.
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

impl Namespaces {
    pub fn new() -> Result<Namespaces> {
        let here = DiagSocket::here()?;
        let home = here.netns;
        let mut sockets = rustc_hash::FxHashMap::default();
        sockets.insert(home, here);
        Ok(Namespaces { sockets, home, failed: Default::default() })
    }

    pub fn get(&self, netns: u32) -> Option<&DiagSocket> {
        self.sockets.get(&netns)
    }

    /// The namespaces with a socket.
    pub fn all(&self) -> impl Iterator<Item = &DiagSocket> {
        self.sockets.values()
    }

    /// A socket for `netns`, entered through the first of `pids` that is in
    /// it. None when none is (or entering fails: then not tried again for a
    /// while).
    pub fn open(&mut self, netns: u32, pids: impl IntoIterator<Item = u32>) -> Option<&DiagSocket> {
        if !self.sockets.contains_key(&netns) {
            if self.failed.get(&netns).is_some_and(|t| t.elapsed() < RETRY) {
                return None;
            }
            let pids: Vec<u32> = pids.into_iter().collect();
            let opened = match crate::helper::get() {
                Some(h) => h.netns_socket(netns, &pids).map(|fd| DiagSocket::from_fd(fd, netns)),
                None => DiagSocket::entered(netns, &pids),
            };
            match opened {
                Ok(s) => {
                    self.failed.remove(&netns);
                    self.sockets.insert(netns, s);
                }
                Err(_) => {
                    self.failed.insert(netns, std::time::Instant::now());
                    return None;
                }
            }
        }
        self.sockets.get(&netns)
    }

    /// A socket in every network namespace some process, or some thread,
    /// is in (the backfill's reach: containers included).
    pub fn open_every_process_namespace(&mut self) {
        let found = match crate::helper::get() {
            Some(h) => h.namespaces().unwrap_or_default(),
            None => every_process_namespace(),
        };
        for (ns, pid) in found {
            self.open(ns, [pid]);
        }
    }

    /// Close the sockets of namespaces `keep` no longer wants (a socket
    /// holds its namespace alive), never the home one's.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let home = self.home;
        self.sockets.retain(|&ns, _| ns == home || keep(ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// The TCP sockets between `ends`, in an order to compare by.
    fn ours(all: &[SocketEntry], ends: &[std::net::SocketAddr]) -> Vec<SocketEntry> {
        let mut v: Vec<SocketEntry> = (all.iter())
            .filter(|e| ends.contains(&std::net::SocketAddr::new(e.laddr, e.lport)))
            // Not another test's socket bound to the same port.
            .filter(|e| e.rport == 0 || ends.contains(&std::net::SocketAddr::new(e.raddr, e.rport)))
            .cloned()
            .collect();
        v.sort_by_key(|e| (e.family, e.lport, e.rport, e.state, e.inode));
        v
    }

    #[test]
    fn one_walk_finds_what_the_per_family_dumps_find() {
        let mut keep = Vec::new();
        let mut ports = Vec::new();
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = TcpListener::bind(addr) else {
                eprintln!("{addr}: no such family here; left out");
                continue;
            };
            let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            c.write_all(b"hello").unwrap();
            let (s, _) = l.accept().unwrap();
            ports.extend([l.local_addr().unwrap(), c.local_addr().unwrap()]);
            keep.push((l, c, s));
        }
        let sock = DiagSocket::here().unwrap();
        let mut one_walk = Vec::new();
        sock.dump_tcp(ALL_STATES, Detail::Counters, &mut one_walk).unwrap();
        assert!(!sock.per_family.get(), "the kernel refused the one-walk request");
        sock.per_family.set(true);
        let mut per_family = Vec::new();
        sock.dump_tcp(ALL_STATES, Detail::Counters, &mut per_family).unwrap();
        let found = ours(&one_walk, &ports);
        // A listener and both ends of each connection.
        assert_eq!(found.len(), 3 * keep.len(), "{found:#?}");
        assert_eq!(found, ours(&per_family, &ports));
        // The client's counters: its SYN and five bytes acknowledged.
        assert!(found.iter().any(|e| e.bytes_acked == Some(6)), "{found:#?}");
        // Without the counters: the same sockets, and no tcp_info.
        let mut bare = Vec::new();
        sock.dump_tcp(ALL_STATES, Detail::Presence, &mut bare).unwrap();
        let bare = ours(&bare, &ports);
        assert!(bare.iter().all(|e| e.tcp.is_none() && e.bytes_acked.is_none()));
        let strip = |v: &[SocketEntry]| -> Vec<(u8, u16, u16, u8, u64)> {
            v.iter().map(|e| (e.family, e.lport, e.rport, e.state, e.inode)).collect()
        };
        assert_eq!(strip(&bare), strip(&found));
    }

    #[test]
    fn lookups_find_what_the_dump_finds_and_nothing_closed() {
        use super::super::backfill::key_of;
        let mut keep = Vec::new();
        let mut ends = Vec::new();
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = TcpListener::bind(addr) else {
                eprintln!("{addr}: no such family here; left out");
                continue;
            };
            // More than one datagram of lookups.
            for _ in 0..100 {
                let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
                c.write_all(b"hello").unwrap();
                let (s, _) = l.accept().unwrap();
                ends.extend([c.local_addr().unwrap(), s.local_addr().unwrap()]);
                keep.push((c, s));
            }
        }
        let sock = DiagSocket::here().unwrap();
        let mut dumped = Vec::new();
        sock.dump_tcp(CONNECTED_STATES, Detail::Counters, &mut dumped).unwrap();
        let dumped = ours(&dumped, &ends);
        assert_eq!(dumped.len(), 2 * keep.len());
        let mut keys: Vec<ConnKey> = dumped.iter().map(key_of).collect();
        // A tuple nobody has: answered, with nothing.
        keys.push(ConnKey { lport: 1, rport: 1, ..keys[0] });
        let mut looked = Vec::new();
        sock.lookup_tcp(&keys, CONNECTED_STATES, Detail::Counters, |b| looked.extend_from_slice(b))
            .unwrap();
        let strip = |v: &[SocketEntry]| -> Vec<(u8, u16, u16, u8, u64, Option<u64>)> {
            let mut v: Vec<_> = v
                .iter()
                .map(|e| (e.family, e.lport, e.rport, e.state, e.inode, e.bytes_acked))
                .collect();
            v.sort();
            v
        };
        assert_eq!(strip(&ours(&looked, &ends)), strip(&dumped));
        // Closed (TIME_WAIT or gone): left out.
        let (c, s) = keep.remove(0);
        let closed = [key_of(
            &dumped.iter().find(|e| e.lport == c.local_addr().unwrap().port()).unwrap().clone(),
        )];
        drop((c, s));
        let mut after = Vec::new();
        sock.lookup_tcp(&closed, CONNECTED_STATES, Detail::Presence, |b| {
            after.extend_from_slice(b)
        })
        .unwrap();
        assert!(after.is_empty(), "{after:#?}");
    }
}
