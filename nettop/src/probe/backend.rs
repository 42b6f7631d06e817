//! The three attach backends and the hooks each one attaches. They all run
//! the same handlers over the same maps; only the entry points differ.
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use aya::Btf;
use aya::Ebpf;
use aya::programs::{FEntry, FExit, KProbe, TracePoint};

use super::kprobe_events::KprobeEvents;
use super::tracefs::{self, Expect};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Kprobe,
    Fentry,
    Tracepoint,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
            Backend::Tracepoint => "tracepoint",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// kprobe where it attaches, else fentry, else tracepoint.
    Auto,
    Kprobe,
    Fentry,
    Tracepoint,
}

impl BackendChoice {
    pub fn order(self) -> Vec<Backend> {
        match self {
            BackendChoice::Auto => vec![Backend::Kprobe, Backend::Fentry, Backend::Tracepoint],
            BackendChoice::Kprobe => vec![Backend::Kprobe],
            BackendChoice::Fentry => vec![Backend::Fentry],
            BackendChoice::Tracepoint => vec![Backend::Tracepoint],
        }
    }
}

/// A hook: program name(s) in the object, kernel function, and whether the
/// backend is useless without it. Several names are arity variants of one
/// fexit program: the first the verifier accepts is kept. The variant that
/// reads the return value at the higher index goes first: on a kernel with
/// fewer arguments the verifier rejects it, while the other variant's index
/// would be accepted on the older kernel too, pointing at an argument.
struct Hook {
    progs: &'static [&'static str],
    function: &'static str,
    ret: bool,
    required: bool,
}

const fn hook(
    progs: &'static [&'static str],
    function: &'static str,
    ret: bool,
    required: bool,
) -> Hook {
    Hook { progs, function, ret, required }
}

#[rustfmt::skip]
const KPROBES: &[Hook] = &[
    hook(&["kp_tcp_v4_connect"], "tcp_v4_connect", false, true),
    hook(&["krp_tcp_v4_connect"], "tcp_v4_connect", true, true),
    hook(&["kp_tcp_v6_connect"], "tcp_v6_connect", false, false),
    hook(&["krp_tcp_v6_connect"], "tcp_v6_connect", true, false),
    hook(&["krp_inet_csk_accept"], "inet_csk_accept", true, true),
    hook(&["kp_tcp_sendmsg"], "tcp_sendmsg", false, true),
    hook(&["krp_tcp_sendmsg"], "tcp_sendmsg", true, true),
    hook(&["kp_tcp_recvmsg"], "tcp_recvmsg", false, true),
    hook(&["krp_tcp_recvmsg"], "tcp_recvmsg", true, true),
    hook(&["kp_udp_sendmsg"], "udp_sendmsg", false, true),
    hook(&["krp_udp_sendmsg"], "udp_sendmsg", true, true),
    hook(&["kp_udp_recvmsg"], "udp_recvmsg", false, true),
    hook(&["krp_udp_recvmsg"], "udp_recvmsg", true, true),
    hook(&["kp_udpv6_sendmsg"], "udpv6_sendmsg", false, false),
    hook(&["krp_udpv6_sendmsg"], "udpv6_sendmsg", true, false),
    hook(&["kp_udpv6_recvmsg"], "udpv6_recvmsg", false, false),
    hook(&["krp_udpv6_recvmsg"], "udpv6_recvmsg", true, false),
    hook(&["kp_tcp_close"], "tcp_close", false, true),
    hook(&["kp_udp_destroy_sock"], "udp_destroy_sock", false, false),
    hook(&["kp_udpv6_destroy_sock"], "udpv6_destroy_sock", false, false),
    hook(&["kp_tcp_retransmit_skb"], "tcp_retransmit_skb", false, true),
];

/// `ret` here means fexit rather than fentry.
#[rustfmt::skip]
const FENTRIES: &[Hook] = &[
    hook(&["fx_tcp_v4_connect"], "tcp_v4_connect", true, true),
    hook(&["fx_tcp_v6_connect"], "tcp_v6_connect", true, false),
    hook(&["fx_inet_csk_accept_old", "fx_inet_csk_accept"], "inet_csk_accept", true, true),
    hook(&["fx_tcp_sendmsg"], "tcp_sendmsg", true, true),
    hook(&["fx_tcp_recvmsg_old", "fx_tcp_recvmsg"], "tcp_recvmsg", true, true),
    hook(&["fx_udp_sendmsg"], "udp_sendmsg", true, true),
    hook(&["fx_udp_recvmsg_old", "fx_udp_recvmsg"], "udp_recvmsg", true, true),
    hook(&["fx_udpv6_sendmsg"], "udpv6_sendmsg", true, false),
    hook(&["fx_udpv6_recvmsg_old", "fx_udpv6_recvmsg"], "udpv6_recvmsg", true, false),
    hook(&["fe_tcp_close"], "tcp_close", false, true),
    hook(&["fe_udp_destroy_sock"], "udp_destroy_sock", false, false),
    hook(&["fe_udpv6_destroy_sock"], "udpv6_destroy_sock", false, false),
    hook(&["fe_tcp_retransmit_skb"], "tcp_retransmit_skb", false, true),
];

const SOCK_LENGTH_FIELDS: &[(&str, u32)] =
    &[("sk", 8), ("family", 16), ("protocol", 18), ("ret", 20), ("flags", 24)];

/// The state-change tracepoint, attached on every backend: it is how a
/// connection becomes established, fails, or ends.
const STATE_TRACEPOINT: (&str, Expect) = (
    "tp_inet_sock_set_state",
    Expect {
        category: "sock",
        name: "inet_sock_set_state",
        fields: &[("skaddr", 8), ("oldstate", 16), ("newstate", 20), ("protocol", 30)],
    },
);

/// The tracepoint backend's own tracepoints, with the record offsets the
/// probe reads (nettop.bpf.c).
const TRACEPOINTS: &[(&str, Expect)] = &[
    (
        "tp_sock_send_length",
        Expect { category: "sock", name: "sock_send_length", fields: SOCK_LENGTH_FIELDS },
    ),
    (
        "tp_sock_recv_length",
        Expect { category: "sock", name: "sock_recv_length", fields: SOCK_LENGTH_FIELDS },
    ),
    (
        "tp_tcp_retransmit_skb",
        Expect { category: "tcp", name: "tcp_retransmit_skb", fields: &[("skaddr", 16)] },
    ),
];

pub struct Attached {
    pub kprobes: Option<KprobeEvents>,
    pub missing: Vec<String>,
}

pub fn attach(backend: Backend, ebpf: &mut Ebpf, tracefs: &Path) -> Result<Attached> {
    match backend {
        Backend::Kprobe => attach_kprobes(ebpf, tracefs),
        Backend::Fentry => attach_fentries(ebpf, tracefs),
        Backend::Tracepoint => attach_tracepoints(ebpf, tracefs),
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the probe object"))?;
    p.try_into().with_context(|| format!("program {name} has an unexpected type"))
}

/// Attach each hook; a required one failing fails the backend, an optional
/// one is reported in `missing`.
fn each_hook(
    hooks: &[Hook],
    mut attach_one: impl FnMut(&str, &Hook) -> Result<()>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for h in hooks {
        let mut last = None;
        for prog in h.progs {
            match attach_one(prog, h) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => {}
            Some(e) if h.required => return Err(e.context(format!("attach {}", h.function))),
            Some(e) => missing.push(format!("{}: {e:#}", h.function)),
        }
    }
    Ok(missing)
}

fn attach_kprobes(ebpf: &mut Ebpf, tracefs: &Path) -> Result<Attached> {
    let mut events = KprobeEvents::new(tracefs)?;
    let missing = each_hook(KPROBES, |prog, h| {
        let p: &mut KProbe = program(ebpf, prog)?;
        p.load().with_context(|| format!("load {prog}"))?;
        events.attach(prog, h.function, h.ret, p.fd()?)
    })?;
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    Ok(Attached { kprobes: Some(events), missing })
}

fn attach_fentries(ebpf: &mut Ebpf, tracefs: &Path) -> Result<Attached> {
    let btf = Btf::from_sys_fs().context(
        "fentry/fexit need the kernel's BTF (/sys/kernel/btf/vmlinux is missing or unreadable)",
    )?;
    let missing = each_hook(FENTRIES, |prog, h| {
        if h.ret {
            let p: &mut FExit = program(ebpf, prog)?;
            p.load(h.function, &btf).with_context(|| format!("load {prog}"))?;
            p.attach().with_context(|| format!("attach {prog}"))?;
        } else {
            let p: &mut FEntry = program(ebpf, prog)?;
            p.load(h.function, &btf).with_context(|| format!("load {prog}"))?;
            p.attach().with_context(|| format!("attach {prog}"))?;
        }
        Ok(())
    })?;
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    Ok(Attached { kprobes: None, missing })
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    (prog, expect): &(&str, Expect),
) -> Result<()> {
    let prog = match tracefs::check_format(tracefs, expect)? {
        0 => prog.to_string(),
        shift => format!("{prog}_s{shift}"),
    };
    let prog = prog.as_str();
    let p: &mut TracePoint = program(ebpf, prog)?;
    p.load().with_context(|| format!("load {prog}"))?;
    p.attach(expect.category, expect.name)
        .with_context(|| format!("attach {}:{}", expect.category, expect.name))?;
    Ok(())
}

fn attach_tracepoints(ebpf: &mut Ebpf, tracefs: &Path) -> Result<Attached> {
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    for tp in TRACEPOINTS {
        attach_tracepoint(ebpf, tracefs, tp)?;
    }
    Ok(Attached { kprobes: None, missing: Vec::new() })
}
