//! The BTF reader on arbitrary bytes (`--btf FILE` is the user's input):
//! offsets, function prototypes or a map's flags, or an error; never a
//! panic, and never an allocation the input's size does not justify.
#![no_main]

#[path = "../src/bounded_alloc.rs"]
mod bounded_alloc;

use libfuzzer_sys::fuzz_target;
use nettop::probe::btf;

#[global_allocator]
static ALLOC: bounded_alloc::Bounded = bounded_alloc::Bounded::new();

fuzz_target!(|data: &[u8]| {
    let _ = btf::offsets_in(data);
    let _ = btf::func_protos(data, &["tcp_connect", "inet_csk_accept", "udp_sendmsg"]);
    let _ = btf::map_flags_at(data, "conns");
});
