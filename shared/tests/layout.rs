//! The Rust twins must match the C structs byte for byte: read the probe
//! object's own BTF (it is built with -g) and compare sizes and offsets.
use btfparse::{Offset, Readable, TypeInformation};
use core::mem::{offset_of, size_of};
use nettop_shared::*;
use object::{Object, ObjectSection};

fn probe_btf() -> TypeInformation {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/nettop.bpf.o");
    let elf = std::fs::read(path).expect("read assets/nettop.bpf.o");
    let obj = object::File::parse(&*elf).expect("parse probe ELF");
    let btf = obj
        .section_by_name(".BTF")
        .expect("probe object has .BTF (built with -g)")
        .data()
        .expect("read .BTF");
    TypeInformation::new(&Bytes(btf)).expect("parse probe BTF")
}

struct Bytes<'a>(&'a [u8]);

impl Readable for Bytes<'_> {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).ok();
        match start.and_then(|s| self.0.get(s..s + buffer.len())) {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(btfparse::ErrorKind::EOF, "read past end")),
        }
    }
}

fn check(ti: &TypeInformation, c_name: &str, size: usize, fields: &[(&str, usize)]) {
    let id = ti.id_of(c_name).unwrap_or_else(|| panic!("{c_name} missing from the probe's BTF"));
    assert_eq!(ti.size_of(id).unwrap(), size, "size of {c_name}");
    for (field, rust_off) in fields {
        let (_, off) =
            ti.offset_of(id, field).unwrap_or_else(|e| panic!("{c_name}.{field}: {e:?}"));
        assert_eq!(off, Offset::ByteOffset(*rust_off as u32), "{c_name}.{field}");
    }
}

macro_rules! fields {
    ($t:ty: $($f:ident),*) => { &[$((stringify!($f), offset_of!($t, $f))),*] };
}

#[test]
fn shared_types_match_probe_btf() {
    let ti = probe_btf();
    check(
        &ti,
        "nettop_guess_status",
        size_of::<GuessStatus>(),
        fields!(GuessStatus: state, deref_net, net_ptr_offset, hook, at, sk, comm, sk_data,
                net_data),
    );
    check(
        &ti,
        "nettop_offsets",
        size_of::<Offsets>(),
        fields!(Offsets: ready, ipv6, saddr, daddr, sport, dport, family, netns, netns_ino,
                saddr_v6, daddr_v6, bytes_received, bytes_acked, sk_flags),
    );
    check(&ti, "nettop_sock_key", size_of::<SockKey>(), fields!(SockKey: sk));
    check(
        &ti,
        "nettop_conn_key",
        size_of::<ConnKey>(),
        fields!(ConnKey: netns, tgid, proto, family, lport, rport, laddr, raddr),
    );
    check(
        &ti,
        "nettop_conn_stats",
        size_of::<ConnStats>(),
        fields!(ConnStats: bytes_sent, bytes_recv, msgs_sent, msgs_recv, first_ns, last_ns, sk,
                retransmits, direction),
    );
    check(
        &ti,
        "nettop_sock_state",
        size_of::<SockState>(),
        fields!(SockState: key, opened_ns, tgid,
                retransmits, has_key, direction, proto, established, owner_known, comm),
    );
    check(
        &ti,
        "nettop_event",
        size_of::<Event>(),
        fields!(Event: key, ts_ns, sk, bytes_sent, bytes_recv, msgs_sent, msgs_recv, retransmits,
                err, direction, cause, sk_state, close_flags, comm),
    );
    check(&ti, "nettop_event", size_of::<Event>(), &[("type", offset_of!(Event, kind))]);
    check(&ti, "nettop_fn_args", size_of::<FnArgs>(), fields!(FnArgs: sk, msg, flags, ret));
}
