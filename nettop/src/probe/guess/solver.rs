//! Offset guessing as a pure state machine: no I/O, so unit tests drive it
//! with simulated `struct sock` layouts.
//!
//! The probe copies a window of every guessing socket (and, on request, of
//! the `struct net` it points to). Each connection uses fresh random loopback
//! addresses and ports, so a candidate offset survives only if it holds the
//! expected value in *every* connection: a decoy that matches once by chance
//! is dropped by the next one. Fields are searched in struct order, each from
//! the end of the previous one, at offsets aligned to the field's size, and
//! the lowest surviving candidate wins.

use std::fmt;

use nettop_shared::Offsets;

/// Connections of each family in the first stage; every field must hold in
/// all of them.
const CONFIRMATIONS: usize = 2;
/// Pointer candidates for the network namespace tried before giving up.
const MAX_NETNS_CANDIDATES: usize = 48;

/// A field of `struct sock` (or, for `NetnsIno`, of `struct net`), in the
/// order they lie in memory — the order in which they are guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Daddr,
    Saddr,
    Dport,
    Family,
    Netns,
    NetnsIno,
    DaddrV6,
    SaddrV6,
    Sport,
    /// `struct sock`'s `sk_flags` (its low byte).
    SkFlags,
    /// `struct sock`'s `sk_protocol` (u16).
    Protocol,
    /// `struct tcp_sock`'s byte counters.
    BytesReceived,
    BytesAcked,
}

/// A field's facts, in the one table the rest derives from.
pub struct FieldDef {
    pub field: Field,
    /// Its name in `offsets --json` and for NETTOP_TEST_SKEW.
    pub name: &'static str,
    /// Where BTF has it: the struct, and the member path through anonymous
    /// members (`a|b`: where older kernels had a, newer ones b).
    pub btf: (&'static str, &'static str),
    /// Its slot in the probe's offsets map.
    pub slot: fn(&mut Offsets) -> &mut u32,
}

/// Every field, in the order `offsets --json` lists them.
#[rustfmt::skip]
pub const FIELDS: [FieldDef; 13] = [
    FieldDef { field: Field::Saddr, name: "saddr", btf: ("sock", "__sk_common.skc_rcv_saddr"), slot: |o| &mut o.saddr },
    FieldDef { field: Field::Daddr, name: "daddr", btf: ("sock", "__sk_common.skc_daddr"), slot: |o| &mut o.daddr },
    FieldDef { field: Field::Sport, name: "sport", btf: ("inet_sock", "inet_sport"), slot: |o| &mut o.sport },
    FieldDef { field: Field::Dport, name: "dport", btf: ("sock", "__sk_common.skc_dport"), slot: |o| &mut o.dport },
    FieldDef { field: Field::Family, name: "family", btf: ("sock", "__sk_common.skc_family"), slot: |o| &mut o.family },
    FieldDef { field: Field::Netns, name: "netns", btf: ("sock", "__sk_common.skc_net"), slot: |o| &mut o.netns },
    FieldDef { field: Field::NetnsIno, name: "netns_ino", btf: ("net", "ns.inum"), slot: |o| &mut o.netns_ino },
    FieldDef { field: Field::SaddrV6, name: "saddr_v6", btf: ("sock", "__sk_common.skc_v6_rcv_saddr"), slot: |o| &mut o.saddr_v6 },
    FieldDef { field: Field::DaddrV6, name: "daddr_v6", btf: ("sock", "__sk_common.skc_v6_daddr"), slot: |o| &mut o.daddr_v6 },
    FieldDef { field: Field::SkFlags, name: "sk_flags", btf: ("sock", "sk_flags|__sk_common.skc_flags"), slot: |o| &mut o.sk_flags },
    FieldDef { field: Field::Protocol, name: "sk_protocol", btf: ("sock", "sk_protocol"), slot: |o| &mut o.sk_protocol },
    FieldDef { field: Field::BytesReceived, name: "bytes_received", btf: ("tcp_sock", "bytes_received"), slot: |o| &mut o.bytes_received },
    FieldDef { field: Field::BytesAcked, name: "bytes_acked", btf: ("tcp_sock", "bytes_acked"), slot: |o| &mut o.bytes_acked },
];

impl Field {
    /// Every field, in the order of [`FIELDS`].
    pub const ALL: [Field; FIELDS.len()] = {
        let mut all = [Field::Saddr; FIELDS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = FIELDS[i].field;
            i += 1;
        }
        all
    };

    /// Its position in [`FIELDS`].
    fn index(self) -> usize {
        Field::ALL.iter().position(|&f| f == self).unwrap_or_default()
    }

    pub fn def(self) -> &'static FieldDef {
        &FIELDS[self.index()]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn is_ipv6(self) -> bool {
        matches!(self, Field::SaddrV6 | Field::DaddrV6)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuessError {
    #[error("could not guess {0}: no offset held the expected value in every guessing connection")]
    NotFound(Field),
}

/// What the driver must do next: make one guessing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Connect from an AF_INET6 socket (to a v4-mapped peer) instead of AF_INET.
    pub v6: bool,
    /// Which network namespace to connect in: 0 is the caller's, 1 a private one.
    pub ns: usize,
    /// Also copy the `struct net` window through the pointer at this offset.
    pub deref_net: Option<u32>,
    /// Move data both ways, then shut down: the probe copies the socket
    /// at the change to FIN_WAIT1, for the byte counters and flags.
    pub transfer: Option<Transfer>,
    /// Send a UDP datagram instead: the probe copies the socket at the
    /// send, for the protocol.
    pub udp: bool,
}

/// One counting connection: bytes each way, and the socket options whose
/// `sk_flags` bits (SOCK_URGINLINE, SOCK_KEEPOPEN, SOCK_LINGER) it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub send: usize,
    pub recv: usize,
    pub oobinline: bool,
    pub keepalive: bool,
    pub linger: bool,
}

impl Transfer {
    /// `sk_flags`' low byte at shutdown: SOCK_DEAD (0) and SOCK_DONE (1)
    /// clear, then SOCK_URGINLINE (2), SOCK_KEEPOPEN (3), SOCK_LINGER (4),
    /// and SOCK_DESTROY, SOCK_BROADCAST, SOCK_TIMESTAMP (5-7) clear.
    pub fn flags_byte(&self) -> u8 {
        u8::from(self.oobinline) << 2 | u8::from(self.keepalive) << 3 | u8::from(self.linger) << 4
    }
}

/// The counting connections: sizes that differ, odd and even, each
/// option bit both on and off.
#[rustfmt::skip]
pub const TRANSFERS: [Transfer; 4] = [
    Transfer { send: 70_001, recv: 3_331, oobinline: false, keepalive: true, linger: false },
    Transfer { send: 12_346, recv: 54_321, oobinline: true, keepalive: false, linger: true },
    Transfer { send: 99_991, recv: 778, oobinline: true, keepalive: true, linger: false },
    Transfer { send: 4_243, recv: 88_887, oobinline: false, keepalive: false, linger: true },
];

/// What a counting connection's socket held at shutdown, as its own
/// `TCP_INFO` reported it just before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterValues {
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub flags_byte: u8,
}

/// The values one guessing connection is known to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    /// The v4-mapped IPv6 addresses, for `Request::v6` connections.
    pub saddr_v6: Option<[u8; 16]>,
    pub daddr_v6: Option<[u8; 16]>,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub netns_ino: u32,
    /// For `Request::transfer` connections.
    pub counters: Option<CounterValues>,
    /// IPPROTO_TCP, or IPPROTO_UDP for `Request::udp` sends.
    pub protocol: u16,
}

/// What the probe copied for one connection.
#[derive(Clone, Debug)]
pub struct Observation {
    pub expected: Expected,
    pub ns: usize,
    pub sk: Vec<u8>,
    pub net: Option<Vec<u8>>,
}

/// Every guessed offset: bytes from the start of `struct sock`, except
/// `netns_ino`, from the start of `struct net`. IPv6 fields are `None`
/// where they were not guessed (IPv6 off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guessed([Option<u32>; FIELDS.len()]);

impl Guessed {
    /// Each field's offset, as `offset(field)` gives it.
    pub fn from_fn(offset: impl Fn(Field) -> Option<u32>) -> Guessed {
        Guessed(Field::ALL.map(offset))
    }

    pub fn get(&self, field: Field) -> Option<u32> {
        self.0[field.index()]
    }

    /// Move each field named in `names` (comma-separated) by 4 bytes
    /// (NETTOP_TEST_SKEW, tests only).
    pub fn skew(&mut self, names: &str) {
        for name in names.split(',') {
            if let Some(d) = FIELDS.iter().find(|d| d.name == name) {
                let v = &mut self.0[d.field.index()];
                *v = Some(v.unwrap_or(0) + 4);
            }
        }
    }

    /// The probe's offsets map as the guess fills it.
    pub fn to_offsets(&self) -> Offsets {
        let mut o = Offsets {
            ipv6: u32::from(
                self.get(Field::SaddrV6).is_some() && self.get(Field::DaddrV6).is_some(),
            ),
            ..Offsets::default()
        };
        for d in &FIELDS {
            *(d.slot)(&mut o) = self.get(d.field).unwrap_or(0);
        }
        o
    }
}

#[derive(Clone, Copy, Debug)]
pub struct GuessConfig {
    pub ipv6: bool,
    /// 2 when a private network namespace could be made: pointers and inodes
    /// must then differ between namespaces, which rules out global objects
    /// and the low-entropy inode of the initial namespace.
    pub namespaces: usize,
    /// The UDP hooks are attached: guess the protocol through them (only
    /// hooks that see TCP and UDP alike need it).
    pub udp: bool,
}

/// Fields of `struct sock` solved from the first stage.
#[derive(Clone, Copy, Debug)]
struct SockFields {
    daddr: u32,
    saddr: u32,
    dport: u32,
    family: u32,
    daddr_v6: Option<u32>,
    saddr_v6: Option<u32>,
    sport: u32,
}

#[derive(Debug)]
enum Stage {
    Sockets,
    Netns { fields: SockFields, candidates: Vec<u32>, index: usize, seen: Vec<Observation> },
    Counters { sock: Guessed, seen: Vec<Observation> },
    Protocol { sock: Guessed, seen: Vec<Observation> },
    Done(Result<Guessed, GuessError>),
}

/// The guessing state machine. Call [`Guesser::next`] for the next
/// connection to make, feed its observation back, until it reports done.
#[derive(Debug)]
pub struct Guesser {
    config: GuessConfig,
    plan: Vec<Request>,
    sockets: Vec<Observation>,
    stage: Stage,
    connections: usize,
}

pub enum Next {
    Connect(Request),
    Done(Result<Guessed, GuessError>),
}

impl Guesser {
    pub fn new(config: GuessConfig) -> Self {
        let namespaces = config.namespaces.clamp(1, 2);
        let mut plan = Vec::new();
        for i in 0..CONFIRMATIONS.max(namespaces) {
            plan.push(Request {
                v6: false,
                ns: i % namespaces,
                deref_net: None,
                transfer: None,
                udp: false,
            });
            if config.ipv6 {
                plan.push(Request {
                    v6: true,
                    ns: i % namespaces,
                    deref_net: None,
                    transfer: None,
                    udp: false,
                });
            }
        }
        Guesser {
            config: GuessConfig { namespaces, ..config },
            plan,
            sockets: Vec::new(),
            stage: Stage::Sockets,
            connections: 0,
        }
    }

    /// Guessing connections fed so far.
    pub fn connections(&self) -> usize {
        self.connections
    }

    pub fn next(&self) -> Next {
        match &self.stage {
            Stage::Sockets => Next::Connect(self.plan[self.sockets.len()]),
            Stage::Netns { candidates, index, seen, .. } => Next::Connect(Request {
                v6: false,
                ns: seen.len() % self.config.namespaces,
                deref_net: Some(candidates[*index]),
                transfer: None,
                udp: false,
            }),
            Stage::Counters { seen, .. } => Next::Connect(Request {
                v6: false,
                ns: 0,
                deref_net: None,
                transfer: Some(TRANSFERS[seen.len()]),
                udp: false,
            }),
            Stage::Protocol { .. } => Next::Connect(Request {
                v6: false,
                ns: 0,
                deref_net: None,
                transfer: None,
                udp: true,
            }),
            Stage::Done(result) => Next::Done(result.clone()),
        }
    }

    pub fn feed(&mut self, obs: Observation) {
        self.connections += 1;
        let stage = std::mem::replace(&mut self.stage, Stage::Sockets);
        self.stage = match stage {
            Stage::Sockets => {
                self.sockets.push(obs);
                if self.sockets.len() < self.plan.len() {
                    Stage::Sockets
                } else {
                    self.solve_sockets()
                }
            }
            Stage::Netns { fields, candidates, index, mut seen } => {
                seen.push(obs);
                self.solve_netns(fields, candidates, index, seen)
            }
            Stage::Counters { sock, mut seen } => {
                seen.push(obs);
                if seen.len() < TRANSFERS.len() {
                    Stage::Counters { sock, seen }
                } else {
                    match solve_counters(sock, &seen) {
                        Ok(sock) if self.config.udp => Stage::Protocol { sock, seen: Vec::new() },
                        done => Stage::Done(done),
                    }
                }
            }
            Stage::Protocol { sock, mut seen } => {
                seen.push(obs);
                if seen.len() < CONFIRMATIONS {
                    Stage::Protocol { sock, seen }
                } else {
                    Stage::Done(solve_protocol(sock, &self.sockets, &seen))
                }
            }
            done @ Stage::Done(_) => done,
        };
    }

    fn solve_sockets(&self) -> Stage {
        match solve_sock_fields(&self.sockets, self.config.ipv6) {
            Err(e) => Stage::Done(Err(e)),
            Ok(fields) => {
                let candidates = netns_candidates(&self.sockets, fields.family + 2);
                if candidates.is_empty() {
                    return Stage::Done(Err(GuessError::NotFound(Field::Netns)));
                }
                Stage::Netns { fields, candidates, index: 0, seen: Vec::new() }
            }
        }
    }

    fn solve_netns(
        &self,
        fields: SockFields,
        candidates: Vec<u32>,
        index: usize,
        seen: Vec<Observation>,
    ) -> Stage {
        let needed = CONFIRMATIONS.max(self.config.namespaces);
        match inode_offset(&seen) {
            // Still consistent: confirm with another connection.
            Some(_) if seen.len() < needed => Stage::Netns { fields, candidates, index, seen },
            Some(ino) => Stage::Counters {
                sock: Guessed::from_fn(|f| match f {
                    Field::Saddr => Some(fields.saddr),
                    Field::Daddr => Some(fields.daddr),
                    Field::Sport => Some(fields.sport),
                    Field::Dport => Some(fields.dport),
                    Field::Family => Some(fields.family),
                    Field::Netns => Some(candidates[index]),
                    Field::NetnsIno => Some(ino),
                    Field::SaddrV6 => fields.saddr_v6,
                    Field::DaddrV6 => fields.daddr_v6,
                    Field::SkFlags | Field::Protocol | Field::BytesReceived | Field::BytesAcked => {
                        None
                    }
                }),
                seen: Vec::new(),
            },
            None if index + 1 < candidates.len() => {
                Stage::Netns { fields, candidates, index: index + 1, seen: Vec::new() }
            }
            None => Stage::Done(Err(GuessError::NotFound(Field::NetnsIno))),
        }
    }
}

/// Offsets from `start` (rounded up to `align`) to the end of the window.
fn aligned_from(start: u32, align: u32, len: usize, size: usize) -> impl Iterator<Item = u32> {
    let first = start.div_ceil(align) * align;
    let last = len.saturating_sub(size) as u32;
    (first..=last).step_by(align as usize)
}

fn bytes(window: &[u8], off: u32, n: usize) -> Option<&[u8]> {
    window.get(off as usize..off as usize + n)
}

/// Lowest aligned offset ≥ `start` at which `expect(obs)` is found in every
/// observation that has a value for it.
fn find<F>(
    obs: &[Observation],
    field: Field,
    start: u32,
    align: u32,
    expect: F,
) -> Result<u32, GuessError>
where
    F: Fn(&Observation) -> Option<Vec<u8>>,
{
    let wanted: Vec<(&Observation, Vec<u8>)> =
        obs.iter().filter_map(|o| expect(o).map(|v| (o, v))).collect();
    let size = wanted.first().map_or(0, |(_, v)| v.len());
    if wanted.len() < CONFIRMATIONS || size == 0 {
        return Err(GuessError::NotFound(field));
    }
    let len = wanted.iter().map(|(o, _)| o.sk.len()).min().unwrap_or(0);
    aligned_from(start, align, len, size)
        .find(|&off| wanted.iter().all(|(o, v)| bytes(&o.sk, off, size) == Some(v.as_slice())))
        .ok_or(GuessError::NotFound(field))
}

fn solve_sock_fields(obs: &[Observation], ipv6: bool) -> Result<SockFields, GuessError> {
    let e = |o: &Observation| o.expected.clone();
    let daddr = find(obs, Field::Daddr, 0, 4, |o| Some(e(o).daddr.to_vec()))?;
    let saddr = find(obs, Field::Saddr, daddr + 4, 4, |o| Some(e(o).saddr.to_vec()))?;
    let dport = find(obs, Field::Dport, saddr + 4, 2, |o| Some(e(o).dport.to_be_bytes().to_vec()))?;
    let family =
        find(obs, Field::Family, dport + 2, 2, |o| Some(e(o).family.to_ne_bytes().to_vec()))?;
    // The namespace pointer (solved later) lies between family and the
    // IPv6 addresses: leave room for it.
    let after_net = family + 2 + 8;
    let (daddr_v6, saddr_v6, sport_from) = if ipv6 {
        let d = find(obs, Field::DaddrV6, after_net, 4, |o| e(o).daddr_v6.map(|a| a.to_vec()))?;
        let s = find(obs, Field::SaddrV6, d + 16, 4, |o| e(o).saddr_v6.map(|a| a.to_vec()))?;
        (Some(d), Some(s), s + 16)
    } else {
        (None, None, after_net)
    };
    let sport =
        find(obs, Field::Sport, sport_from, 2, |o| Some(e(o).sport.to_be_bytes().to_vec()))?;
    Ok(SockFields { daddr, saddr, dport, family, daddr_v6, saddr_v6, sport })
}

/// `sk_flags` between the socket's family and its source port (in
/// `struct inet_sock`, after `struct sock`); the counters after the source
/// port (`struct tcp_sock` follows `struct inet_sock`).
fn solve_counters(sock: Guessed, seen: &[Observation]) -> Result<Guessed, GuessError> {
    let (Some(family), Some(sport)) = (sock.get(Field::Family), sock.get(Field::Sport)) else {
        return Err(GuessError::NotFound(Field::SkFlags));
    };
    let c = |o: &Observation| o.expected.counters;
    let flags = find(seen, Field::SkFlags, family + 2, 8, |o| Some(vec![c(o)?.flags_byte]))
        .ok()
        .filter(|&off| off < sport)
        .ok_or(GuessError::NotFound(Field::SkFlags))?;
    let after = sport + 2;
    let received = find(seen, Field::BytesReceived, after, 8, |o| {
        Some(c(o)?.bytes_received.to_ne_bytes().to_vec())
    })?;
    let acked = find(seen, Field::BytesAcked, after, 8, |o| {
        Some(c(o)?.bytes_acked.to_ne_bytes().to_vec())
    })?;
    let mut g = sock;
    g.0[Field::SkFlags.index()] = Some(flags);
    g.0[Field::BytesReceived.index()] = Some(received);
    g.0[Field::BytesAcked.index()] = Some(acked);
    Ok(g)
}

/// `sk_protocol` between the socket's family and its source port: 6 in
/// every TCP socket of the first stage, 17 in the UDP ones.
fn solve_protocol(
    sock: Guessed,
    tcp: &[Observation],
    udp: &[Observation],
) -> Result<Guessed, GuessError> {
    let (Some(family), Some(sport)) = (sock.get(Field::Family), sock.get(Field::Sport)) else {
        return Err(GuessError::NotFound(Field::Protocol));
    };
    let all: Vec<Observation> = tcp.iter().chain(udp).cloned().collect();
    let protocol = find(&all, Field::Protocol, family + 2, 2, |o| {
        Some(o.expected.protocol.to_ne_bytes().to_vec())
    })
    .ok()
    .filter(|&off| off < sport)
    .ok_or(GuessError::NotFound(Field::Protocol))?;
    let mut g = sock;
    g.0[Field::Protocol.index()] = Some(protocol);
    Ok(g)
}

/// The kernel half of the address space: from 0xffff800000000000 with
/// 4-level paging, from 0xff00000000000000 with 5-level paging (LA57, as
/// Debian's cloud kernels boot on CPUs that have it).
fn is_kernel_pointer(v: u64) -> bool {
    v >= 0xff00_0000_0000_0000 && v != u64::MAX
}

/// 8-aligned offsets after `start` that hold the same kernel pointer in
/// every connection of a namespace and, given two namespaces, different
/// pointers in each.
fn netns_candidates(obs: &[Observation], start: u32) -> Vec<u32> {
    let len = obs.iter().map(|o| o.sk.len()).min().unwrap_or(0);
    let ptr_at = |o: &Observation, off: u32| {
        bytes(&o.sk, off, 8).map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
    };
    aligned_from(start, 8, len, 8)
        .filter(|&off| {
            let mut per_ns: [Option<u64>; 2] = [None, None];
            for o in obs {
                let Some(p) = ptr_at(o, off).filter(|&p| is_kernel_pointer(p)) else {
                    return false;
                };
                match per_ns[o.ns.min(1)] {
                    Some(prev) if prev != p => return false,
                    _ => per_ns[o.ns.min(1)] = Some(p),
                }
            }
            match per_ns {
                [Some(a), Some(b)] => a != b,
                [Some(_), None] => true,
                _ => false,
            }
        })
        .take(MAX_NETNS_CANDIDATES)
        .collect()
}

/// Lowest 4-aligned offset in the `struct net` windows holding each
/// connection's namespace inode.
fn inode_offset(seen: &[Observation]) -> Option<u32> {
    let len = seen.iter().map(|o| o.net.as_ref().map_or(0, Vec::len)).min()?;
    aligned_from(0, 4, len, 4).find(|&off| {
        seen.iter().all(|o| {
            o.net.as_deref().and_then(|n| bytes(n, off, 4))
                == Some(o.expected.netns_ino.to_ne_bytes().as_slice())
        })
    })
}

#[cfg(test)]
mod tests;
