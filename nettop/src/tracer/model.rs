//! What the tracer hands out: connections and events, ready to print.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use nettop_shared::{AF_INET, ConnKey, DIR_INCOMING, DIR_OUTGOING, IPPROTO_TCP, IPPROTO_UDP};
use serde::Serialize;

use super::attribution::{ProcessInfo, Unattributed};
use super::conntrack::Entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn from_ip(p: u8) -> Option<Proto> {
        match p {
            IPPROTO_TCP => Some(Proto::Tcp),
            IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outgoing,
    Incoming,
    Unknown,
}

impl Direction {
    pub fn from_raw(d: u8) -> Direction {
        match d {
            DIR_OUTGOING => Direction::Outgoing,
            DIR_INCOMING => Direction::Incoming,
            _ => Direction::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Closed,
}

/// Who owns a connection, or why that is not known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    pub user: Option<String>,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    /// Why the fields above are thin: "exited", "other_pid_namespace",
    /// "kernel", "before_start"; null when the process was found.
    pub owner_note: Option<String>,
}

impl Owner {
    pub fn resolve(
        pid: u32,
        kernel_comm: &[u8; 16],
        found: Result<ProcessInfo, Unattributed>,
    ) -> Owner {
        match found {
            Ok(p) => Owner {
                pid,
                comm: p.comm,
                cmdline: p.cmdline,
                user: p.user,
                cgroup: p.cgroup,
                container: p.container,
                owner_note: None,
            },
            Err(why) => Owner {
                pid,
                comm: comm_str(kernel_comm),
                owner_note: Some(
                    serde_json::to_value(why)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unknown".into()),
                ),
                ..Owner::default()
            },
        }
    }
}

pub fn comm_str(c: &[u8; 16]) -> String {
    let n = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..n]).into_owned()
}

/// Where a connection runs: protocol, both ends and network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Tuple {
    pub proto: Proto,
    pub family: u8,
    pub laddr: IpAddr,
    pub lport: u16,
    /// None, printed "*", for an unconnected UDP socket whose peers the
    /// backend cannot see.
    #[serde(serialize_with = "addr_or_star")]
    pub raddr: Option<IpAddr>,
    pub rport: u16,
    pub netns: u32,
}

fn addr_or_star<S: serde::Serializer>(a: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_str("*"),
    }
}

impl Tuple {
    /// `addr:port`, bracketed for IPv6.
    pub fn local(&self) -> String {
        endpoint(Some(self.laddr), self.lport)
    }

    /// `addr:port`, or `*` for an unknown peer.
    pub fn remote(&self) -> String {
        endpoint(self.raddr, self.rport)
    }

    pub fn new(k: &ConnKey) -> Tuple {
        let (laddr, raddr) = addrs(k);
        Tuple {
            proto: Proto::from_ip(k.proto).unwrap_or(Proto::Tcp),
            family: if k.family == AF_INET { 4 } else { 6 },
            laddr,
            lport: k.lport,
            raddr,
            rport: k.rport,
            netns: k.netns,
        }
    }
}

fn endpoint(addr: Option<IpAddr>, port: u16) -> String {
    match addr {
        None => "*".to_owned(),
        Some(IpAddr::V4(a)) => format!("{a}:{port}"),
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
    }
}

/// The addresses of a key. The remote is None ("*") for an unconnected UDP
/// socket whose peers the backend cannot see.
pub fn addrs(k: &ConnKey) -> (IpAddr, Option<IpAddr>) {
    let ip = |a: &[u8; 16]| -> IpAddr {
        if k.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*a))
        }
    };
    let remote = (k.rport != 0 || k.raddr != [0; 16]).then(|| ip(&k.raddr));
    (ip(&k.laddr), remote)
}

/// One connection, as `nettop list --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Unique for the tracer's lifetime: tells apart two connections that
    /// reuse one tuple, and ties events to their connection.
    pub id: u64,
    #[serde(flatten)]
    pub tuple: Tuple,
    #[serde(flatten)]
    pub owner: Arc<Owner>,
    pub direction: Direction,
    pub state: State,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    pub retransmits: u32,
    /// Existed before nettop started: TCP totals include the kernel's own
    /// counters from then; UDP ones count only from then.
    pub backfilled: bool,
    /// Totals count only since nettop started (backfilled UDP).
    pub counted_since_start: bool,
    /// Ended because the kernel no longer had it when nettop looked (its
    /// close event was lost), not by a close nettop saw.
    pub vanished: bool,
    /// TCP: the kernel's `tcp_info` at the last read (RTT, queues...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<crate::tracer::sock_diag::TcpInfo>,
    /// TCP, open: what changed over the last interval between reads
    /// (retransmits, stalls, what limits sending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::tracer::health::Health>,
    /// Monotonic clock (CLOCK_MONOTONIC ns) of the first and last activity seen.
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Connection {
    pub fn from_entry(e: &Entry, owner: Arc<Owner>) -> Connection {
        Connection {
            id: e.id,
            tuple: Tuple::new(&e.key),
            owner,
            direction: Direction::from_raw(e.direction),
            state: if e.closed_ns.is_some() { State::Closed } else { State::Open },
            bytes_sent: e.bytes_sent(),
            bytes_recv: e.bytes_recv(),
            msgs_sent: e.stats.msgs_sent,
            msgs_recv: e.stats.msgs_recv,
            retransmits: e.stats.retransmits,
            backfilled: e.backfilled,
            counted_since_start: e.backfilled && e.is_udp(),
            vanished: e.vanished,
            tcp: (!e.is_udp() && e.seen != 0).then_some(e.tcp),
            health: if e.closed_ns.is_none() { e.health } else { None },
            first_ns: e.stats.first_ns,
            last_ns: e.stats.last_ns,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Connect,
    Accept,
    Close,
    ConnectFailed,
    Retransmit,
    /// Events the kernel could not deliver (ring buffer full) or the
    /// consumer did not take in time: `lost` says how many.
    Lost,
}

/// One lifecycle event, as `nettop trace --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: EventKind,
    pub ts_ns: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub conn: Option<EventConn>,
    /// Final totals, on close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_recv: Option<u64>,
    /// On connect_failed, where the backend can see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// On close: the kernel no longer had the connection when nettop
    /// looked (its close event was lost); the totals are the last read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vanished: bool,
    /// On close, where `Config::close_rows` asks for it: the connection's
    /// final row, as `Tracer::connections()` lists it. Never printed.
    #[serde(skip)]
    pub row: Option<Arc<Connection>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventConn {
    /// The connection's `Connection::id`; None for a failed connect, which
    /// never became one.
    pub id: Option<u64>,
    #[serde(flatten)]
    pub tuple: Tuple,
    #[serde(flatten)]
    pub owner: Arc<Owner>,
    pub direction: Direction,
}

impl EventConn {
    pub fn new(id: Option<u64>, key: &ConnKey, direction: u8, owner: Arc<Owner>) -> EventConn {
        EventConn { id, tuple: Tuple::new(key), owner, direction: Direction::from_raw(direction) }
    }
}

/// Nothing lost silently: every counter of loss, in every output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events the probe could not put in the ring buffer (full).
    pub events_lost: u64,
    /// Events the consumer of `Tracer::events` did not take in time.
    pub events_dropped: u64,
    /// Incoming connections the probe could not report when established
    /// (ring buffer full; tracepoint backend): not lost, but listed only
    /// at their close, where their owner names them.
    pub incoming_late: u64,
    /// Connections the kernel table had no room for (`--max-connections`).
    pub conn_map_full: u64,
    /// Sockets the kernel's socket table had no room for.
    pub sock_map_full: u64,
    /// New connections the tracer's own table had no room for
    /// (`--max-connections` open): not tracked until one closes. Counted
    /// at every event or read that names one, like the kernel's.
    pub table_full: u64,
    /// Kprobe/kretprobe hits the kernel missed (kprobe backend).
    pub kprobe_missed: Option<u64>,
    /// Runs of nettop's programs the kernel skipped because the program was
    /// already running on that CPU (fentry/fexit on PREEMPT_RT under load;
    /// null where the kernel does not count them, before 5.12).
    pub prog_missed: Option<u64>,
    pub connections_open: u64,
    pub connections_closed: u64,
    pub backfilled: u64,
}

impl Stats {
    /// Every refusal for want of room, the kernel's tables' and the
    /// tracer's: what the TUI and `list` show as "evicted".
    pub fn evicted(&self) -> u64 {
        self.conn_map_full + self.sock_map_full + self.table_full
    }
}
