use std::path::{Path, PathBuf};

use super::*;
use crate::probe::backend::{FENTRIES, FentryPlan};
use crate::probe::btf;

/// tests/fixtures/func_protos/<release>.txt: the hooked functions'
/// prototypes as the kernels of the matrix have them, one `Signature` a
/// line, extracted from the BTF the VMs leave (`write_fixtures` below).
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/func_protos")
}

fn fixture(release: &str) -> Vec<Option<FuncProto>> {
    let path = fixtures_dir().join(format!("{release}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut protos = vec![None; FENTRIES.len()];
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, proto) = parse_signature(line).unwrap_or_else(|| panic!("bad line: {line}"));
        let i = FENTRIES.iter().position(|h| h.function == name).expect("a hooked function");
        protos[i] = Some(proto);
    }
    protos
}

fn fixture_text(protos: &[Option<FuncProto>]) -> String {
    FENTRIES
        .iter()
        .zip(protos)
        .filter_map(|(h, p)| Some(format!("{}\n", Signature(h.function, p.as_ref()?))))
        .collect()
}

const N: u8 = NO_ARG;

/// Alike on every kernel of the matrix.
const COMMON_CONNECT_SEND: [(&str, u8, u8, u8, u8); 3] =
    [("tcp_v4_connect", 0, 1, N, 3), ("tcp_v6_connect", 0, 1, N, 3), ("udp_sendmsg", 0, 1, N, 3)];

/// (function, sk, msg, flags, ret) as the chooser must pick them: recvmsg
/// lost `noblock` in 5.19 and `addr_len` in 7.x; inet_csk_accept went from
/// (sk, flags, err, kern) to (sk, arg) in 6.10.
fn expected(release: &str) -> Vec<(&'static str, u8, u8, u8, u8)> {
    let (flags, ret, accept) = match release {
        r if r.starts_with("5.10.") => (4, 6, 4),
        r if r.starts_with("6.1.") => (3, 5, 4),
        r if r.starts_with("6.12.") => (3, 5, 2),
        r if r.starts_with("7.2.") => (3, 4, 2),
        r => panic!("no expectation for {r}"),
    };
    let mut e: Vec<_> = COMMON_CONNECT_SEND.to_vec();
    e.extend([
        ("inet_csk_accept", N, N, N, accept),
        ("udp_recvmsg", 0, 1, flags, ret),
        ("udpv6_sendmsg", 0, 1, N, 3),
        ("udpv6_recvmsg", 0, 1, flags, ret),
        ("udp_destroy_sock", 0, N, N, N),
        ("udpv6_destroy_sock", 0, N, N, N),
        ("tcp_retransmit_skb", 0, N, N, N),
    ]);
    e
}

const RELEASES: [&str; 4] =
    ["5.10.0-46-amd64", "6.1.0-57-amd64", "6.12.118+deb12-amd64", "7.2.13+deb14-amd64"];

#[test]
fn chooses_each_hooks_arguments_on_every_kernel_of_the_matrix() {
    for release in RELEASES {
        let plan =
            FentryPlan::new(&fixture(release)).unwrap_or_else(|e| panic!("{release}: {e:#}"));
        let want = expected(release);
        assert_eq!(want.len(), FENTRIES.len());
        for (h, choice) in FENTRIES.iter().zip(&plan.0) {
            let &(_, sk, msg, flags, ret) =
                want.iter().find(|w| w.0 == h.function).expect("an expectation per hook");
            assert_eq!(
                choice.as_ref().map_err(String::as_str),
                Ok(&FnArgs { sk, msg, flags, ret }),
                "{release}: {}",
                h.function
            );
        }
    }
}

#[test]
fn recvmsg_lost_an_argument_twice() {
    let arity = |r| {
        fixture(r)[FENTRIES.iter().position(|h| h.function == "udp_recvmsg").unwrap()]
            .as_ref()
            .map(|p| p.params.len())
    };
    assert_eq!(RELEASES.map(arity), [Some(6), Some(5), Some(5), Some(4)]);
}

fn proto(ret: &str, params: &[(&str, &str)]) -> FuncProto {
    FuncProto {
        ret: ret.into(),
        params: params
            .iter()
            .map(|&(name, ty)| Param { name: name.into(), ty: ty.into() })
            .collect(),
    }
}

#[test]
fn a_function_that_cannot_serve_says_why() {
    let no_flags = proto("int", &[("sk", "struct sock *"), ("msg", "struct msghdr *")]);
    assert_eq!(
        choose(Reads::Recv, &no_flags),
        Err("no `flags` argument (a MSG_PEEK read would count)".into())
    );
    assert!(choose(Reads::Send, &no_flags).is_ok());
    let long_ret = proto("long", &[("sk", "struct sock *"), ("msg", "struct msghdr *")]);
    assert_eq!(choose(Reads::Send, &long_ret), Err("returns long, not int".into()));
    let no_sock = proto("int", &[("msg", "struct msghdr *")]);
    assert_eq!(choose(Reads::Send, &no_sock), Err("no socket (struct sock *) argument".into()));
    let connect =
        |uaddr| proto("int", &[("sk", "struct sock *"), ("uaddr", uaddr), ("addr_len", "int")]);
    for ty in ["struct sockaddr *", "struct sockaddr_unsized *"] {
        assert_eq!(
            choose(Reads::Connect, &connect(ty)),
            Ok(FnArgs { sk: 0, msg: 1, flags: N, ret: 3 })
        );
    }
    assert!(choose(Reads::Connect, &connect("struct sockaddr **")).is_err());
    let flags_ptr =
        proto("int", &[("sk", "struct sock *"), ("msg", "struct msghdr *"), ("flags", "int *")]);
    assert_eq!(choose(Reads::Recv, &flags_ptr), Err("`flags` is int *, not an int".into()));
    let many: Vec<(&str, &str)> =
        std::iter::repeat_n(("x", "int"), 12).chain([("sk", "struct sock *")]).collect();
    assert!(choose(Reads::Sock, &proto("void", &many)).is_ok(), "index 12 is readable");
    assert!(choose(Reads::Send, &proto("int", &many)).unwrap_err().contains("no message"));
    let mut too_many = many.clone();
    too_many.push(("msg", "struct msghdr *"));
    assert!(choose(Reads::Send, &proto("int", &too_many)).unwrap_err().contains("past the 12"));
}

#[test]
fn arguments_are_found_by_type_and_name_not_position() {
    let moved = proto(
        "int",
        &[("flags", "int"), ("len", "size_t"), ("msg", "struct msghdr *"), ("sk", "struct sock *")],
    );
    assert_eq!(choose(Reads::Recv, &moved), Ok(FnArgs { sk: 3, msg: 2, flags: 0, ret: 4 }));
}

#[test]
fn a_required_hook_that_cannot_serve_fails_the_backend_by_name() {
    let mut protos = fixture("6.1.0-57-amd64");
    let i = FENTRIES.iter().position(|h| h.function == "udp_recvmsg").unwrap();
    protos[i].as_mut().unwrap().params.retain(|p| p.name != "flags");
    let err = FentryPlan::new(&protos).err().expect("udp_recvmsg is required").to_string();
    assert!(err.starts_with("hook udp_recvmsg: udp_recvmsg(sk: struct sock *"), "{err}");
    assert!(err.ends_with("-> int: no `flags` argument (a MSG_PEEK read would count)"), "{err}");
    // An optional one is left out, with its reason, and the rest goes on.
    let mut protos = fixture("6.1.0-57-amd64");
    let v6 = FENTRIES.iter().position(|h| h.function == "udpv6_recvmsg").unwrap();
    protos[v6] = None;
    let plan = FentryPlan::new(&protos).unwrap();
    assert_eq!(plan.0[v6], Err("the kernel has no function udpv6_recvmsg".into()));
}

#[test]
fn signatures_read_back() {
    for release in RELEASES {
        let protos = fixture(release);
        assert!(protos.iter().all(Option::is_some), "{release}: every hooked function");
        let text = fixture_text(&protos);
        for line in text.lines() {
            let (name, p) = parse_signature(line).unwrap();
            assert_eq!(Signature(&name, &p).to_string(), line);
        }
    }
    assert_eq!(parse_signature("f() -> void"), Some(("f".into(), proto("void", &[]))));
    assert_eq!(parse_signature("f(x) -> void"), None);
}

/// Where the BTF of a fixture's kernel is at hand (this host's, or a copy
/// the VM matrix left in target/vm), the fixture must be what the reader
/// extracts from it today.
#[test]
fn the_fixtures_are_what_the_kernels_btf_says() {
    for (release, path) in btf_at_hand() {
        let fixture_path = fixtures_dir().join(format!("{release}.txt"));
        let Ok(text) = std::fs::read_to_string(&fixture_path) else { continue };
        let functions: Vec<&str> = FENTRIES.iter().map(|h| h.function).collect();
        let protos = btf::read_func_protos(&path, &functions).unwrap();
        let body: String =
            text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            body,
            fixture_text(&protos),
            "{} against {}",
            fixture_path.display(),
            path.display()
        );
    }
}

/// This kernel's own functions: every required hook can serve.
#[test]
fn this_kernel_serves_every_required_hook() {
    if !Path::new(btf::VMLINUX).exists() {
        return;
    }
    let plan = FentryPlan::from_kernel().unwrap();
    let functions: Vec<&str> = FENTRIES.iter().map(|h| h.function).collect();
    let protos = btf::read_func_protos(Path::new(btf::VMLINUX), &functions).unwrap();
    // Each usable exit hook's return value sits right after this kernel's
    // arguments, and its socket is a `struct sock *`.
    for ((h, choice), proto) in FENTRIES.iter().zip(&plan.0).zip(&protos) {
        let (Ok(args), Some(proto)) = (choice, proto) else { continue };
        if h.reads.at_exit() {
            assert_eq!(usize::from(args.ret), proto.params.len(), "{}", h.function);
        }
        if h.reads != Reads::Accept {
            assert_eq!(proto.params[usize::from(args.sk)].ty, "struct sock *", "{}", h.function);
        }
    }
}

fn btf_at_hand() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        out.push((release.trim().to_string(), PathBuf::from(btf::VMLINUX)));
    }
    let vm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
    for dir in std::fs::read_dir(vm).into_iter().flatten().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let btf = dir.path().join("btf");
        // Variants (-noipv6, -nobtf) boot the same kernel as their base.
        if btf.metadata().is_ok_and(|m| m.len() > 0) && !name.starts_with("host-") {
            out.push((name, btf));
        }
    }
    out
}

/// Writes the fixtures from the BTF the matrix left:
/// `cargo test -p nettop --lib write_fixtures -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures; run by hand after a matrix run"]
fn write_fixtures() {
    let functions: Vec<&str> = FENTRIES.iter().map(|h| h.function).collect();
    for (release, path) in btf_at_hand() {
        if !RELEASES.contains(&release.as_str()) {
            continue;
        }
        let protos = btf::read_func_protos(&path, &functions).unwrap();
        let text = format!(
            "# The fentry/fexit hooks' functions in the BTF of Debian's {release}\n\
             # (written by fn_args::tests::write_fixtures from the matrix's saved BTF).\n{}",
            fixture_text(&protos)
        );
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        std::fs::write(fixtures_dir().join(format!("{release}.txt")), text).unwrap();
    }
}
