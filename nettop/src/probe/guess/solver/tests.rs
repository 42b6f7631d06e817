//! The guesser against simulated kernels: each `Layout` plays one kernel's
//! `struct sock`, filled with noise that changes between connections, plus
//! decoys placed to trap a careless guesser.
use super::*;

#[derive(Clone)]
struct Layout {
    daddr: u32,
    saddr: u32,
    dport: u32,
    /// skc_num: the source port in host byte order, a classic decoy.
    num: u32,
    family: u32,
    prot: u32,
    netns: u32,
    daddr_v6: u32,
    saddr_v6: u32,
    sport: u32,
    netns_ino: u32,
    sk_flags: u32,
    /// sk_protocol; sk_type (1 for TCP, 2 for UDP) lies just before it.
    protocol: u32,
    bytes_received: u32,
    bytes_acked: u32,
    decoys: Vec<Decoy>,
}

#[derive(Clone, Copy)]
enum Decoy {
    /// A second copy of the source address (inet_saddr) after the real one.
    SaddrCopy(u32),
    /// The destination address at a misaligned offset.
    MisalignedDaddr(u32),
    /// A field that equals the destination address in the first connection only.
    DaddrOnce(u32),
    /// A field equal to the namespace inode in the first connection only.
    InodeOnce(u32),
    /// A field that always holds AF_INET (2), whatever the socket's family.
    ConstTwo(u32),
    /// The bytes received, as a u32 (a segment counter's value), before
    /// the real u64.
    ReceivedU32(u32),
    /// The flags byte, in the first counting connection only.
    FlagsOnce(u32),
    /// A u16 that holds 6 (IPPROTO_TCP) in every socket, UDP ones too.
    ConstSix(u32),
}

/// 6.18 as measured here: sock_common offsets from the design notes.
fn layout_618() -> Layout {
    Layout {
        daddr: 0,
        saddr: 4,
        dport: 12,
        num: 14,
        family: 16,
        prot: 40,
        netns: 48,
        daddr_v6: 56,
        saddr_v6: 72,
        sport: 814,
        netns_ino: 176,
        sk_flags: 560,
        protocol: 586,
        bytes_received: 1784,
        bytes_acked: 1640,
        decoys: vec![],
    }
}

/// Shaped like an rt kernel: bigger locks push everything after sock_common.
fn layout_rt() -> Layout {
    Layout {
        sport: 1190,
        netns_ino: 304,
        sk_flags: 896,
        protocol: 922,
        bytes_received: 1824,
        bytes_acked: 1872,
        ..layout_618()
    }
}

struct Sim {
    layout: Layout,
    rng: fastrand::Rng,
    net_ptrs: [u64; 2],
    inodes: [u32; 2],
    prot_ptr: [u64; 2],
    connections: usize,
    /// A field this kernel does not have where it should be.
    omit: Option<Field>,
}

impl Sim {
    fn new(layout: Layout, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        // One namespace in a 4-level direct map, the other in a 5-level one.
        let net_ptrs = [0xffff_9000_0000_0000 | rng.u64(..1 << 40) & !7, 0xff47_6497_4524_2180];
        let inodes = [0xF000_0000, 4_026_532_000 + rng.u32(..10_000)];
        Sim {
            layout,
            rng,
            net_ptrs,
            inodes,
            prot_ptr: [0xffff_ffff_8200_0000, 0xffff_ffff_8200_1000],
            connections: 0,
            omit: None,
        }
    }

    fn expected(&mut self, req: &Request) -> Expected {
        let port = |rng: &mut fastrand::Rng| loop {
            let p = rng.u16(1024..);
            if p >> 8 != p & 0xff {
                break p;
            }
        };
        let saddr = [127, self.rng.u8(1..255), self.rng.u8(..), self.rng.u8(1..255)];
        let daddr = [127, self.rng.u8(1..255), self.rng.u8(..), self.rng.u8(1..255)];
        let mapped = |a: [u8; 4]| {
            let mut v = [0u8; 16];
            v[10] = 0xff;
            v[11] = 0xff;
            v[12..].copy_from_slice(&a);
            v
        };
        Expected {
            saddr,
            daddr,
            saddr_v6: req.v6.then(|| mapped(saddr)),
            daddr_v6: req.v6.then(|| mapped(daddr)),
            sport: port(&mut self.rng),
            dport: port(&mut self.rng),
            family: if req.v6 { 10 } else { 2 },
            netns_ino: self.inodes[req.ns],
            counters: req.transfer.map(|t| CounterValues {
                bytes_acked: t.send as u64 + 1,
                bytes_received: t.recv as u64,
                flags_byte: t.flags_byte(),
            }),
            protocol: if req.udp { 17 } else { 6 },
        }
    }

    /// What the probe would copy for this connection.
    fn connect(&mut self, req: Request) -> Observation {
        let l = self.layout.clone();
        let e = self.expected(&req);
        let mut sk = vec![0u8; nettop_shared::SK_WINDOW];
        self.rng.fill(&mut sk);
        let omit = self.omit;
        let put_field = |sk: &mut Vec<u8>, field: Field, off: u32, b: &[u8]| {
            if omit != Some(field) {
                sk[off as usize..off as usize + b.len()].copy_from_slice(b)
            }
        };
        let put = |sk: &mut Vec<u8>, off: u32, b: &[u8]| {
            sk[off as usize..off as usize + b.len()].copy_from_slice(b)
        };
        for d in &l.decoys {
            match *d {
                Decoy::SaddrCopy(off) => put(&mut sk, off, &e.saddr),
                Decoy::MisalignedDaddr(off) => put(&mut sk, off, &e.daddr),
                Decoy::DaddrOnce(off) if self.connections == 0 => put(&mut sk, off, &e.daddr),
                Decoy::ConstTwo(off) => put(&mut sk, off, &2u16.to_ne_bytes()),
                Decoy::ConstSix(off) => put(&mut sk, off, &6u16.to_ne_bytes()),
                Decoy::ReceivedU32(off) => {
                    if let Some(c) = e.counters {
                        put(&mut sk, off, &(c.bytes_received as u32).to_ne_bytes())
                    }
                }
                Decoy::FlagsOnce(off) => {
                    if let Some(c) = e.counters.filter(|_| req.transfer == Some(TRANSFERS[0])) {
                        put(&mut sk, off, &[c.flags_byte])
                    }
                }
                _ => {}
            }
        }
        put_field(&mut sk, Field::Daddr, l.daddr, &e.daddr);
        put_field(&mut sk, Field::Saddr, l.saddr, &e.saddr);
        put_field(&mut sk, Field::Dport, l.dport, &e.dport.to_be_bytes());
        put(&mut sk, l.num, &e.sport.to_ne_bytes());
        put_field(&mut sk, Field::Family, l.family, &e.family.to_ne_bytes());
        put(&mut sk, l.prot, &self.prot_ptr[req.v6 as usize].to_ne_bytes());
        put_field(&mut sk, Field::Netns, l.netns, &self.net_ptrs[req.ns].to_ne_bytes());
        if let (Some(d), Some(s)) = (e.daddr_v6, e.saddr_v6) {
            put_field(&mut sk, Field::DaddrV6, l.daddr_v6, &d);
            put_field(&mut sk, Field::SaddrV6, l.saddr_v6, &s);
        }
        put_field(&mut sk, Field::Sport, l.sport, &e.sport.to_be_bytes());
        put(&mut sk, l.protocol - 2, &(e.protocol / 6).to_ne_bytes());
        put_field(&mut sk, Field::Protocol, l.protocol, &e.protocol.to_ne_bytes());
        if let Some(c) = e.counters {
            put_field(&mut sk, Field::SkFlags, l.sk_flags, &[c.flags_byte]);
            put_field(
                &mut sk,
                Field::BytesReceived,
                l.bytes_received,
                &c.bytes_received.to_ne_bytes(),
            );
            put_field(&mut sk, Field::BytesAcked, l.bytes_acked, &c.bytes_acked.to_ne_bytes());
        }
        let net = req.deref_net.map(|off| {
            let ptr = u64::from_ne_bytes(sk[off as usize..off as usize + 8].try_into().unwrap());
            let mut net = vec![0u8; nettop_shared::NET_WINDOW];
            self.rng.fill(&mut net);
            if let Some(ns) = self.net_ptrs.iter().position(|&p| p == ptr) {
                for d in &l.decoys {
                    if let Decoy::InodeOnce(o) = *d
                        && self.connections.is_multiple_of(2)
                    {
                        net[o as usize..o as usize + 4]
                            .copy_from_slice(&self.inodes[ns].to_ne_bytes());
                    }
                }
                let o = l.netns_ino as usize;
                if omit != Some(Field::NetnsIno) {
                    net[o..o + 4].copy_from_slice(&self.inodes[ns].to_ne_bytes());
                }
            }
            net
        });
        self.connections += 1;
        Observation { expected: e, ns: req.ns, sk, net }
    }
}

fn run(layout: Layout, config: GuessConfig, seed: u64) -> (Result<Guessed, GuessError>, usize) {
    let mut sim = Sim::new(layout, seed);
    let mut g = Guesser::new(config);
    for _ in 0..500 {
        match g.next() {
            Next::Connect(req) => g.feed(sim.connect(req)),
            Next::Done(r) => return (r, g.connections()),
        }
    }
    panic!("guesser did not finish within 500 connections");
}

fn expect_layout(l: &Layout, ipv6: bool) -> Guessed {
    Guessed::from_fn(|f| match f {
        Field::Saddr => Some(l.saddr),
        Field::Daddr => Some(l.daddr),
        Field::Sport => Some(l.sport),
        Field::Dport => Some(l.dport),
        Field::Family => Some(l.family),
        Field::Netns => Some(l.netns),
        Field::NetnsIno => Some(l.netns_ino),
        Field::SaddrV6 => ipv6.then_some(l.saddr_v6),
        Field::DaddrV6 => ipv6.then_some(l.daddr_v6),
        Field::SkFlags => Some(l.sk_flags),
        Field::Protocol => Some(l.protocol),
        Field::BytesReceived => Some(l.bytes_received),
        Field::BytesAcked => Some(l.bytes_acked),
    })
}

const BOTH: GuessConfig = GuessConfig { ipv6: true, namespaces: 2, udp: true };

#[test]
fn guesses_the_618_layout_in_few_connections() {
    for seed in 0..200 {
        let (r, n) = run(layout_618(), BOTH, seed);
        assert_eq!(r, Ok(expect_layout(&layout_618(), true)), "seed {seed}");
        assert!(n <= 14, "seed {seed}: {n} connections");
    }
}

#[test]
fn guesses_an_rt_shaped_layout() {
    for seed in 0..50 {
        assert_eq!(run(layout_rt(), BOTH, seed).0, Ok(expect_layout(&layout_rt(), true)));
    }
}

#[test]
fn decoys_do_not_fool_it() {
    let mut l = layout_618();
    l.daddr = 8;
    l.saddr = 12;
    l.dport = 20;
    l.num = 22;
    l.family = 26;
    l.decoys = vec![
        Decoy::DaddrOnce(0),
        Decoy::MisalignedDaddr(2),
        Decoy::SaddrCopy(700),
        Decoy::ConstTwo(24),
        Decoy::InodeOnce(64),
        Decoy::ReceivedU32(1600),
        Decoy::FlagsOnce(544),
        Decoy::ConstSix(30),
    ];
    for seed in 0..200 {
        assert_eq!(run(l.clone(), BOTH, seed).0, Ok(expect_layout(&l, true)), "seed {seed}");
    }
}

#[test]
fn one_namespace_still_finds_netns_past_global_pointers() {
    let config = GuessConfig { ipv6: true, namespaces: 1, udp: true };
    for seed in 0..50 {
        assert_eq!(run(layout_618(), config, seed).0, Ok(expect_layout(&layout_618(), true)));
    }
}

#[test]
fn without_ipv6_the_v6_fields_are_unavailable_and_the_rest_is_found() {
    let config = GuessConfig { ipv6: false, namespaces: 2, udp: true };
    for seed in 0..50 {
        assert_eq!(run(layout_618(), config, seed).0, Ok(expect_layout(&layout_618(), false)));
    }
}

#[test]
fn without_udp_hooks_the_protocol_is_not_guessed() {
    let config = GuessConfig { udp: false, ..BOTH };
    let want = Guessed::from_fn(|f| match f {
        Field::Protocol => None,
        f => expect_layout(&layout_618(), true).get(f),
    });
    for seed in 0..20 {
        assert_eq!(run(layout_618(), config, seed).0, Ok(want));
    }
}

#[test]
fn a_missing_field_is_named_never_faked() {
    for field in [
        Field::Daddr,
        Field::Saddr,
        Field::Dport,
        Field::Family,
        Field::Netns,
        Field::NetnsIno,
        Field::DaddrV6,
        Field::SaddrV6,
        Field::Sport,
        Field::SkFlags,
        Field::Protocol,
        Field::BytesReceived,
        Field::BytesAcked,
    ] {
        for seed in 0..20 {
            let mut sim = Sim::new(layout_618(), seed);
            sim.omit = Some(field);
            let mut g = Guesser::new(BOTH);
            let result = loop {
                match g.next() {
                    Next::Connect(req) => g.feed(sim.connect(req)),
                    Next::Done(r) => break r,
                }
                assert!(g.connections() < 200, "{field}: unbounded");
            };
            assert_eq!(result, Err(GuessError::NotFound(field)), "omitted {field}, seed {seed}");
        }
    }
}

/// Every field is in the one table exactly once (`Field::index` relies on
/// it); adding a variant fails to compile here until it is listed.
#[test]
fn every_field_is_in_the_table_once() {
    let listed = |f: Field| match f {
        Field::Daddr
        | Field::Saddr
        | Field::Dport
        | Field::Family
        | Field::Netns
        | Field::NetnsIno
        | Field::DaddrV6
        | Field::SaddrV6
        | Field::Sport
        | Field::SkFlags
        | Field::Protocol
        | Field::BytesReceived
        | Field::BytesAcked => FIELDS.iter().filter(|d| d.field == f).count(),
    };
    assert_eq!(FIELDS.len(), 13);
    for f in Field::ALL {
        assert_eq!(listed(f), 1, "{f}");
    }
}
