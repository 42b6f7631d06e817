//! The `#[repr(C)]` types that nettop's probe (`probes/nettop.h`) and its
//! userspace share. One definition each; `tests/layout.rs` checks every one
//! against the probe object's own BTF, so a drift on either side fails a test.
#![no_std]

/// Bytes of `struct sock` one guessing connection copies out: all of
/// `struct tcp_sock` (2 640 bytes on 5.10-rt, the largest seen).
pub const SK_WINDOW: usize = 4096;
/// Bytes of `struct net` one guessing connection copies out.
pub const NET_WINDOW: usize = 1024;

pub const GUESS_IDLE: u32 = 0;
pub const GUESS_ARMED: u32 = 1;
pub const GUESS_CHECKED: u32 = 2;

/// Which hook filled a guess: the connect return (kprobe, fexit) or the
/// SYN_SENT state change (tracepoint).
pub const GUESS_HOOK_CONNECT: u32 = 1;
pub const GUESS_HOOK_TRACEPOINT: u32 = 2;
/// The change to FIN_WAIT1 (shutdown), for the byte counters.
pub const GUESS_HOOK_SHUTDOWN: u32 = 3;
/// A UDP send, for the protocol.
pub const GUESS_HOOK_UDP: u32 = 4;

/// When an armed guess copies its windows (`GuessStatus::at`).
pub const GUESS_AT_CONNECT: u32 = 0;
pub const GUESS_AT_SHUTDOWN: u32 = 1;
pub const GUESS_AT_UDP_SEND: u32 = 2;

/// The one-entry status map through which userspace drives guessing.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GuessStatus {
    pub state: u32,
    pub deref_net: u32,
    pub net_ptr_offset: u32,
    pub hook: u32,
    /// GUESS_AT_CONNECT, GUESS_AT_SHUTDOWN or GUESS_AT_UDP_SEND.
    pub at: u32,
    pub _pad: u32,
    pub sk: u64,
    pub comm: [u8; 16],
    pub sk_data: [u8; SK_WINDOW],
    pub net_data: [u8; NET_WINDOW],
}

impl GuessStatus {
    pub const fn zeroed() -> Self {
        Self {
            state: 0,
            deref_net: 0,
            net_ptr_offset: 0,
            hook: 0,
            at: 0,
            _pad: 0,
            sk: 0,
            comm: [0; 16],
            sk_data: [0; SK_WINDOW],
            net_data: [0; NET_WINDOW],
        }
    }
}

/// Guessed field offsets, as the probe reads them (`struct nettop_offsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub ready: u32,
    pub ipv6: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub netns: u32,
    pub netns_ino: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    /// `struct tcp_sock`'s `bytes_received` and `bytes_acked` (u64 each).
    pub bytes_received: u32,
    pub bytes_acked: u32,
    /// `struct sock`'s `sk_flags` (its low byte: SOCK_DONE is bit 1).
    pub sk_flags: u32,
    /// `struct sock`'s `sk_protocol` (u16): UDP from TCP where a hook sees
    /// both (the length tracepoints, on raw_tp).
    pub sk_protocol: u32,
}

/// The connection table's key (`struct nettop_conn_key`). Addresses are
/// IPv4 in the first 4 bytes when `family` is AF_INET; a zero remote is "*".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub netns: u32,
    pub tgid: u32,
    pub proto: u8,
    pub family: u8,
    /// Host byte order.
    pub lport: u16,
    /// Host byte order.
    pub rport: u16,
    pub _pad: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

pub const DIR_UNKNOWN: u8 = 0;
pub const DIR_OUTGOING: u8 = 1;
pub const DIR_INCOMING: u8 = 2;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Cumulative counters of one connection (`struct nettop_conn_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    pub first_ns: u64,
    /// The probe sets it with `first_ns` and leaves it (a clock read per
    /// packet costs too much); the connection table dates activity by when
    /// it sees the counters move.
    pub last_ns: u64,
    pub sk: u64,
    pub retransmits: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    pub sk: u64,
}

/// What the probe knows of one socket (`struct nettop_sock_state`). A TCP
/// connection's counters live here once `has_key` is set (UDP flows keep
/// theirs in the `conns` map); nothing repeats the map key or another field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    pub key: ConnKey,
    /// When the key was set: the connection's `first_ns`.
    pub opened_ns: u64,
    pub tgid: u32,
    pub retransmits: u32,
    pub has_key: u8,
    pub direction: u8,
    pub proto: u8,
    pub established: u8,
    pub owner_known: u8,
    pub _pad: [u8; 3],
    pub comm: [u8; 16],
}

pub const EV_CONNECT: u8 = 1;
pub const EV_ACCEPT: u8 = 2;
pub const EV_CLOSE: u8 = 3;
pub const EV_CONNECT_FAILED: u8 = 4;
pub const EV_RETRANSMIT: u8 = 5;
pub const EV_SOCK_CLOSE: u8 = 6;
/// Tracepoint backend: an incoming connection is established, owner not
/// yet known (`key.tgid` 0).
pub const EV_INCOMING: u8 = 7;

/// One ring-buffer record (`struct nettop_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub key: ConnKey,
    pub ts_ns: u64,
    pub sk: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    pub retransmits: u32,
    pub err: i32,
    pub kind: u8,
    pub direction: u8,
    /// What ended a connection: 1 the close call, 2 the change to CLOSE
    /// (`NETTOP_CAUSE_*` in probes/nettop.h; only logged, for diagnosis);
    /// 0 for other events.
    pub cause: u8,
    /// The socket's TCP state when the event was made (at the change to
    /// CLOSE, the state it leaves: the kernel stores the new one after the
    /// tracepoint).
    pub sk_state: u8,
    /// `CLOSE_*`: what a close's raw counters (`bytes_sent`/`bytes_recv`
    /// are `tcp_sock`'s `bytes_acked`/`bytes_received`) hold, and whether the
    /// probe knew the socket.
    pub close_flags: u8,
    pub _pad: [u8; 3],
    pub comm: [u8; 16],
}

/// The socket had received its peer's FIN (counted in `bytes_received`).
pub const CLOSE_FIN_RECEIVED: u8 = 2;
/// The probe had no record of the socket (older than nettop): the key's
/// tgid is 0 and its direction unknown.
pub const CLOSE_NO_RECORD: u8 = 4;
/// A reset ended it in LAST_ACK or CLOSING: our FIN was never acknowledged.
pub const CLOSE_RESET: u8 = 8;

/// Where an fentry/fexit program finds what it reads in its context (an
/// array of u64: the arguments, then the return value), by index
/// (`struct nettop_fn_args`); set at load from the kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnArgs {
    /// The `struct sock *`.
    pub sk: u8,
    /// sendmsg/recvmsg: the `struct msghdr *`; connect: the `struct sockaddr *`.
    pub msg: u8,
    /// recvmsg: the flags.
    pub flags: u8,
    /// fexit: the return value.
    pub ret: u8,
}

/// An index of [`FnArgs`] that the program does not read.
pub const NO_ARG: u8 = 0xff;

impl Default for FnArgs {
    fn default() -> Self {
        FnArgs { sk: NO_ARG, msg: NO_ARG, flags: NO_ARG, ret: NO_ARG }
    }
}

/// Slots of the per-CPU `counters` array (`enum nettop_counter`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    EventsLost = 0,
    ConnMapFull,
    SockMapFull,
    Guess,
    IncomingLate,
}

pub const COUNTER_MAX: u32 = 5;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all fields are plain integers or byte arrays, every bit
    // pattern is valid, and #[repr(C)] fixes the layout the probe uses.
    unsafe impl aya::Pod for super::GuessStatus {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::SockKey {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ConnStats {}
    unsafe impl aya::Pod for super::SockState {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::FnArgs {}
}
