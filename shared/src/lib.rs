//! The `#[repr(C)]` types that nettop's probe (`probes/nettop.h`) and its
//! userspace share. One definition each; `tests/layout.rs` checks every one
//! against the probe object's own BTF, so a drift on either side fails a test.
#![no_std]

/// Bytes of `struct sock` one guessing connection copies out.
pub const SK_WINDOW: usize = 2048;
/// Bytes of `struct net` one guessing connection copies out.
pub const NET_WINDOW: usize = 1024;

pub const GUESS_IDLE: u32 = 0;
pub const GUESS_ARMED: u32 = 1;
pub const GUESS_CHECKED: u32 = 2;

/// Which hook filled a guess: the connect return (kprobe, fexit) or the
/// SYN_SENT state change (tracepoint).
pub const GUESS_HOOK_CONNECT: u32 = 1;
pub const GUESS_HOOK_TRACEPOINT: u32 = 2;

/// The one-entry status map through which userspace drives guessing.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GuessStatus {
    pub state: u32,
    pub deref_net: u32,
    pub net_ptr_offset: u32,
    pub hook: u32,
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
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    pub sk: u64,
}

pub const DIR_UNKNOWN: u8 = 0;
pub const DIR_OUTGOING: u8 = 1;
pub const DIR_INCOMING: u8 = 2;

pub const FLAG_CLOSED: u8 = 1;

/// Per-socket record (`struct nettop_sock_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub sends: u32,
    pub recvs: u32,
    pub retransmits: u32,
    pub tgid: u32,
    pub netns: u32,
    pub family: u16,
    /// Host byte order.
    pub sport: u16,
    /// Host byte order.
    pub dport: u16,
    pub proto: u8,
    pub direction: u8,
    pub flags: u8,
    pub _pad: [u8; 3],
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
}

/// Slots of the per-CPU `counters` array (`enum nettop_counter`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Connect = 0,
    Accept,
    Send,
    Recv,
    Close,
    Retransmit,
    Guess,
    MapFull,
}

pub const COUNTER_MAX: u32 = 8;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all fields are plain integers or byte arrays, every bit
    // pattern is valid, and #[repr(C)] fixes the layout the probe uses.
    unsafe impl aya::Pod for super::GuessStatus {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::SockKey {}
    unsafe impl aya::Pod for super::SockInfo {}
}
