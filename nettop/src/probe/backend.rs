//! The three attach backends and the hooks each one attaches. They all run
//! the same handlers over the same maps; only the entry points differ.
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use aya::Btf;
use aya::Ebpf;
use aya::programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint};

use nettop_shared::FnArgs;

use super::fn_args::{self, FuncProto, Reads, Signature};
use super::kprobe_events::{At, KprobeEvents};
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

/// A kprobe or kretprobe: its program and the kernel function.
struct KprobeHook {
    prog: &'static str,
    function: &'static str,
    at: At,
    required: bool,
}

impl KprobeHook {
    /// A kprobe, at the function's entry.
    const fn entry(prog: &'static str, function: &'static str) -> Self {
        KprobeHook { prog, function, at: At::Entry, required: true }
    }

    /// A kretprobe, at its return.
    const fn exit(prog: &'static str, function: &'static str) -> Self {
        KprobeHook { prog, function, at: At::Return, required: true }
    }

    /// Missing on some kernels (IPv6 functions where IPv6 is off): the
    /// backend goes on without it and says so.
    const fn optional(self) -> Self {
        KprobeHook { required: false, ..self }
    }
}

#[rustfmt::skip]
const KPROBES: &[KprobeHook] = &[
    KprobeHook::entry("kp_tcp_v4_connect", "tcp_v4_connect"),
    KprobeHook::exit("krp_tcp_v4_connect", "tcp_v4_connect"),
    KprobeHook::entry("kp_tcp_v6_connect", "tcp_v6_connect").optional(),
    KprobeHook::exit("krp_tcp_v6_connect", "tcp_v6_connect").optional(),
    KprobeHook::exit("krp_inet_csk_accept", "inet_csk_accept"),
    KprobeHook::entry("kp_udp_sendmsg", "udp_sendmsg"),
    KprobeHook::exit("krp_udp_sendmsg", "udp_sendmsg"),
    KprobeHook::entry("kp_udp_recvmsg", "udp_recvmsg"),
    KprobeHook::exit("krp_udp_recvmsg", "udp_recvmsg"),
    KprobeHook::entry("kp_udpv6_sendmsg", "udpv6_sendmsg").optional(),
    KprobeHook::exit("krp_udpv6_sendmsg", "udpv6_sendmsg").optional(),
    KprobeHook::entry("kp_udpv6_recvmsg", "udpv6_recvmsg").optional(),
    KprobeHook::exit("krp_udpv6_recvmsg", "udpv6_recvmsg").optional(),
    KprobeHook::entry("kp_udp_destroy_sock", "udp_destroy_sock").optional(),
    KprobeHook::entry("kp_udpv6_destroy_sock", "udpv6_destroy_sock").optional(),
    KprobeHook::entry("kp_tcp_retransmit_skb", "tcp_retransmit_skb"),
];

/// An fentry/fexit hook: its program, the kernel function, the `const
/// volatile` that tells the program where its arguments are (set at load
/// from the kernel's BTF, see `fn_args`), and what it reads.
pub struct FentryHook {
    prog: &'static str,
    pub function: &'static str,
    pub global: &'static str,
    pub reads: Reads,
    required: bool,
}

impl FentryHook {
    /// The backend is useless without it.
    const fn required(
        prog: &'static str,
        function: &'static str,
        global: &'static str,
        reads: Reads,
    ) -> Self {
        FentryHook { prog, function, global, reads, required: true }
    }

    /// Missing on some kernels (IPv6 functions where IPv6 is off).
    const fn optional(
        prog: &'static str,
        function: &'static str,
        global: &'static str,
        reads: Reads,
    ) -> Self {
        FentryHook { prog, function, global, reads, required: false }
    }
}

#[rustfmt::skip]
pub const FENTRIES: &[FentryHook] = &[
    FentryHook::required("fx_tcp_v4_connect", "tcp_v4_connect", "args_tcp_v4_connect", Reads::Connect),
    FentryHook::optional("fx_tcp_v6_connect", "tcp_v6_connect", "args_tcp_v6_connect", Reads::Connect),
    FentryHook::required("fx_inet_csk_accept", "inet_csk_accept", "args_inet_csk_accept", Reads::Accept),
    FentryHook::required("fx_udp_sendmsg", "udp_sendmsg", "args_udp_sendmsg", Reads::Send),
    FentryHook::required("fx_udp_recvmsg", "udp_recvmsg", "args_udp_recvmsg", Reads::Recv),
    FentryHook::optional("fx_udpv6_sendmsg", "udpv6_sendmsg", "args_udpv6_sendmsg", Reads::Send),
    FentryHook::optional("fx_udpv6_recvmsg", "udpv6_recvmsg", "args_udpv6_recvmsg", Reads::Recv),
    FentryHook::optional("fe_udp_destroy_sock", "udp_destroy_sock", "args_udp_destroy_sock", Reads::Sock),
    FentryHook::optional("fe_udpv6_destroy_sock", "udpv6_destroy_sock", "args_udpv6_destroy_sock", Reads::Sock),
    FentryHook::required("fe_tcp_retransmit_skb", "tcp_retransmit_skb", "args_tcp_retransmit_skb", Reads::Sock),
];

/// For each of [`FENTRIES`], in order, where its program finds its
/// arguments on this kernel, or why the function cannot serve.
pub struct FentryPlan(pub Vec<Result<FnArgs, String>>);

impl FentryPlan {
    /// From the running kernel's BTF (`protos`, in the order of
    /// [`FENTRIES`]). A required hook that cannot serve fails the backend,
    /// named with its prototype.
    pub fn new(protos: &[Option<FuncProto>]) -> Result<FentryPlan> {
        let plan = FENTRIES
            .iter()
            .zip(protos)
            .map(|(h, proto)| match proto {
                None => Err(format!("the kernel has no function {}", h.function)),
                Some(p) => fn_args::choose(h.reads, p)
                    .map_err(|why| format!("{}: {why}", Signature(h.function, p))),
            })
            .collect::<Vec<_>>();
        for (h, choice) in FENTRIES.iter().zip(&plan) {
            if let (true, Err(why)) = (h.required, choice) {
                bail!("hook {}: {why}", h.function);
            }
        }
        Ok(FentryPlan(plan))
    }

    /// Read the running kernel's BTF and choose.
    pub fn from_kernel() -> Result<FentryPlan> {
        let functions: Vec<&str> = FENTRIES.iter().map(|h| h.function).collect();
        let protos = super::btf::read_func_protos(Path::new(super::btf::VMLINUX), &functions)
            .context("fentry/fexit need the kernel's BTF")?;
        FentryPlan::new(&protos)
    }
}

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

/// A reset's arrival, attached on every backend: it tells a close in
/// LAST_ACK or CLOSING whose FIN was never acknowledged from a graceful one.
const RESET_TRACEPOINT: (&str, Expect) = (
    "tp_tcp_receive_reset",
    Expect { category: "tcp", name: "tcp_receive_reset", fields: &[("skaddr", 8)] },
);

/// The tracepoint backend's own tracepoints, with the record offsets the
/// probe reads (nettop.bpf.c). There is no accept hook: userspace finds
/// who accepted each incoming connection (tracer/accepts.rs).
const TRACEPOINTS: &[(&str, Expect)] = &[(
    "tp_tcp_retransmit_skb",
    Expect { category: "tcp", name: "tcp_retransmit_skb", fields: &[("skaddr", 16)] },
)];

/// The length tracepoints, for UDP, as raw tracepoints (their arguments,
/// not a record: the cheapest way to enter a program): they fire for every
/// TCP packet too, and return at once for those. Not attached with
/// `--proto tcp`. A TCP socket's destruction takes it out of the table of
/// sockets they know to be TCP.
const UDP_RAW_TRACEPOINTS: &[(&str, &str)] = &[
    ("raw_tcp_destroy_sock", "tcp_destroy_sock"),
    ("raw_sock_send_length", "sock_send_length"),
    ("raw_sock_recv_length", "sock_recv_length"),
];

/// Whether the UDP send and receive hooks are attached (`--proto tcp`
/// leaves them out: nothing then runs per UDP datagram either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpHooks {
    Attach,
    Skip,
}

/// The kernel functions that only UDP traffic runs through.
fn udp_only(function: &str) -> bool {
    function.starts_with("udp")
}

pub struct Attached {
    pub kprobes: Option<KprobeEvents>,
    pub missing: Vec<String>,
}

/// `plan` is the fentry backend's, with which the object was loaded.
pub fn attach(
    backend: Backend,
    ebpf: &mut Ebpf,
    tracefs: &Path,
    plan: Option<&FentryPlan>,
    udp: UdpHooks,
) -> Result<Attached> {
    match backend {
        Backend::Kprobe => attach_kprobes(ebpf, tracefs, udp),
        Backend::Fentry => {
            attach_fentries(ebpf, tracefs, plan.context("the fentry backend needs its plan")?, udp)
        }
        Backend::Tracepoint => attach_tracepoints(ebpf, tracefs, udp),
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

fn attach_kprobes(ebpf: &mut Ebpf, tracefs: &Path, udp: UdpHooks) -> Result<Attached> {
    let mut events = KprobeEvents::new(tracefs)?;
    let mut missing = Vec::new();
    for h in KPROBES.iter().filter(|h| udp == UdpHooks::Attach || !udp_only(h.function)) {
        let attached = (|| {
            let p: &mut KProbe = program(ebpf, h.prog)?;
            p.load().with_context(|| format!("load {}", h.prog))?;
            events.attach(h.prog, h.function, h.at, p.fd()?)
        })();
        match attached {
            Ok(()) => {}
            Err(e) if h.required => return Err(e.context(format!("attach {}", h.function))),
            Err(e) => missing.push(format!("{}: {e:#}", h.function)),
        }
    }
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    attach_tracepoint(ebpf, tracefs, &RESET_TRACEPOINT)?;
    Ok(Attached { kprobes: Some(events), missing })
}

fn attach_fentries(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    plan: &FentryPlan,
    udp: UdpHooks,
) -> Result<Attached> {
    let btf = Btf::from_sys_fs().context(
        "fentry/fexit need the kernel's BTF (/sys/kernel/btf/vmlinux is missing or unreadable)",
    )?;
    let mut missing = Vec::new();
    for (h, choice) in FENTRIES.iter().zip(&plan.0) {
        if udp == UdpHooks::Skip && udp_only(h.function) {
            continue;
        }
        let attached = match choice {
            Err(why) => Err(anyhow!("{why}")),
            Ok(_) if h.reads.at_exit() => (|| {
                let p: &mut FExit = program(ebpf, h.prog)?;
                p.load(h.function, &btf).with_context(|| format!("load {}", h.prog))?;
                p.attach().with_context(|| format!("attach {}", h.prog)).map(drop)
            })(),
            Ok(_) => (|| {
                let p: &mut FEntry = program(ebpf, h.prog)?;
                p.load(h.function, &btf).with_context(|| format!("load {}", h.prog))?;
                p.attach().with_context(|| format!("attach {}", h.prog)).map(drop)
            })(),
        };
        match attached {
            Ok(()) => {}
            Err(e) if h.required => return Err(e.context(format!("attach {}", h.function))),
            Err(e) => missing.push(format!("{}: {e:#}", h.function)),
        }
    }
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    attach_tracepoint(ebpf, tracefs, &RESET_TRACEPOINT)?;
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

fn attach_tracepoints(ebpf: &mut Ebpf, tracefs: &Path, udp: UdpHooks) -> Result<Attached> {
    attach_tracepoint(ebpf, tracefs, &STATE_TRACEPOINT)?;
    attach_tracepoint(ebpf, tracefs, &RESET_TRACEPOINT)?;
    for tp in TRACEPOINTS {
        attach_tracepoint(ebpf, tracefs, tp)?;
    }
    if udp == UdpHooks::Attach {
        for (prog, name) in UDP_RAW_TRACEPOINTS {
            let p: &mut RawTracePoint = program(ebpf, prog)?;
            p.load().with_context(|| format!("load {prog}"))?;
            p.attach(name).with_context(|| format!("attach raw tracepoint {name}"))?;
        }
    }
    Ok(Attached { kprobes: None, missing: Vec::new() })
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection, ObjectSymbol};

    use super::*;

    /// Each fentry/fexit hook's program is in the object, in the section
    /// for its function and kind, and so is the global it is loaded with.
    #[test]
    fn every_fentry_hook_names_its_program_and_its_global() {
        let obj = object::File::parse(super::super::OBJECT).unwrap();
        let section_of = |name: &str| {
            let sym = obj.symbols().find(|s| s.name() == Ok(name))?;
            obj.section_by_index(sym.section_index()?).ok()?.name().ok().map(str::to_owned)
        };
        for h in FENTRIES {
            let kind = if h.reads.at_exit() { "fexit" } else { "fentry" };
            assert_eq!(section_of(h.prog), Some(format!("{kind}/{}", h.function)), "{}", h.prog);
            assert_eq!(section_of(h.global).as_deref(), Some(".rodata"), "{}", h.global);
        }
    }
}
