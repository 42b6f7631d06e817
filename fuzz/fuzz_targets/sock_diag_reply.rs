//! The sock_diag reply parser on arbitrary datagrams (a kernel's replies
//! are trusted less than nettop's own structs: a newer kernel may add or
//! grow attributes): sockets or an error, never a panic.
#![no_main]

#[path = "../src/bounded_alloc.rs"]
mod bounded_alloc;

use libfuzzer_sys::fuzz_target;
use nettop::tracer::sock_diag::{Proto, parse_replies};

#[global_allocator]
static ALLOC: bounded_alloc::Bounded = bounded_alloc::Bounded::new();

fuzz_target!(|data: &[u8]| {
    // The first byte picks the protocol and the sequence number asked for.
    let Some((&pick, datagram)) = data.split_first() else { return };
    let proto = if pick & 1 == 0 { Proto::Tcp } else { Proto::Udp };
    let mut out = Vec::new();
    if parse_replies(datagram, proto, u32::from(pick >> 1), 7, &mut out).is_ok() {
        // Each socket came from a message of its own.
        assert!(
            out.len() <= datagram.len() / 16,
            "{} sockets from {} bytes",
            out.len(),
            datagram.len()
        );
    }
});
