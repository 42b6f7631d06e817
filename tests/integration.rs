//! End-to-end tests of the real binary on the running kernel, as root.
//! The backend under test comes from NETTOP_BACKEND (default: auto), so the
//! same tests run inside the qemu VMs once per backend.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

#[path = "support/btf_oracle.rs"]
mod btf_oracle;
#[path = "support/common.rs"]
mod common;
use common::{backend, bin, exchange, ipv6_enabled, serial};
#[path = "support/exactness.rs"]
mod exactness;
#[path = "support/netem.rs"]
mod netem;

fn nettop(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--backend").arg(backend()).args(args);
    c
}

fn json_of(args: &[&str]) -> Value {
    let out = nettop(args).output().expect("run nettop");
    assert!(
        out.status.success(),
        "nettop {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nettop printed one JSON object")
}

/// The kernel's BTF for the oracle: NETTOP_ORACLE_BTF where the VM tests
/// hide /sys/kernel/btf/vmlinux from nettop (as on kernels without BTF).
fn oracle_btf() -> std::path::PathBuf {
    std::env::var_os("NETTOP_ORACLE_BTF")
        .map_or_else(|| "/sys/kernel/btf/vmlinux".into(), Into::into)
}

#[test]
fn guessed_offsets_equal_the_kernels_btf() {
    let _g = serial();
    // --offsets guess: the guesser alone, BTF never read by nettop.
    let report = json_of(&["offsets", "--json", "--offsets", "guess"]);
    let oracle = btf_oracle::Oracle::load(&oracle_btf());
    eprintln!(
        "kernel {} backend {} guessed in {} ms with {} connections",
        report["kernel"], report["backend"], report["guess_ms"], report["guess_connections"]
    );
    let fields = report["fields"].as_array().expect("fields array");
    assert_eq!(fields.len(), btf_oracle::FIELDS.len());
    // Every field that differs, named (the matrix's skew check looks for
    // each it skewed).
    let mut wrong = Vec::new();
    for name in btf_oracle::FIELDS {
        let f = fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("field {name} missing"));
        let truth = oracle.field(name).unwrap_or_else(|| panic!("oracle has no {name}"));
        if name.ends_with("_v6") && !ipv6_enabled() {
            assert!(f["guessed"].is_null(), "{name} guessed with IPv6 disabled");
            continue;
        }
        if f["guessed"].as_u64() != Some(truth as u64) {
            wrong.push(format!("{name}: guessed {} vs BTF {truth}", f["guessed"]));
        }
        assert!(f["btf"].is_null(), "--offsets guess must not read BTF");
    }
    assert!(wrong.is_empty(), "guessed offsets differ from BTF: {}", wrong.join("; "));
    if let Ok(expect) = std::env::var("NETTOP_EXPECT_BACKEND") {
        assert_eq!(report["backend"], expect.as_str());
    }
}

#[test]
fn auto_mode_cross_checks_every_field() {
    let _g = serial();
    let report = json_of(&["offsets", "--json"]);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["offsets"], "guessed");
    for f in report["fields"].as_array().unwrap() {
        if f["name"].as_str().unwrap().ends_with("_v6") && !ipv6_enabled() {
            continue;
        }
        assert_eq!(f["agree"], true, "{f}");
        assert_eq!(f["guessed"], f["btf"], "{f}");
    }
}

#[test]
fn btf_mode_reads_offsets_without_guessing() {
    let _g = serial();
    let report = json_of(&["offsets", "--json", "--offsets", "btf"]);
    assert_eq!(report["offsets"], "btf");
    assert!(report["guess_ms"].is_null());
    let oracle = btf_oracle::Oracle::load(&oracle_btf());
    for f in report["fields"].as_array().unwrap() {
        assert!(f["guessed"].is_null());
        assert_eq!(
            f["btf"].as_u64(),
            oracle.field(f["name"].as_str().unwrap()).map(u64::from),
            "{f}"
        );
    }
}

/// `nettop trace --json`, read line by line.
struct Trace {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Trace {
    fn start() -> (Trace, Value) {
        Trace::start_with(&[])
    }

    fn start_with(options: &[&str]) -> (Trace, Value) {
        let mut child = nettop(&[options, &["trace", "--json"]].concat())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nettop trace");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        (Trace { child, lines }, ready)
    }

    /// Lines until `pred` has held for `n` of them.
    fn until(&mut self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let mut hits = 0;
        while hits < n {
            let line = self.lines.next().expect("trace ended early").unwrap();
            let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
            if pred(&v) {
                hits += 1;
            }
            seen.push(v);
        }
        seen
    }

    /// SIGINT, then the rest of the output; it must exit 0.
    fn interrupt(mut self) -> Vec<Value> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let rest: Vec<Value> =
            self.lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
        assert!(self.child.wait().unwrap().success());
        rest
    }
}

const EVENT_KEYS: [&str; 11] = [
    "event", "ts_ns", "proto", "family", "pid", "comm", "laddr", "lport", "raddr", "rport", "netns",
];

/// From 6.1 the connection and socket maps are allocated as they fill;
/// before, they are preallocated (the kernel's rules for tracing programs).
/// What the ready line says is what the kernel holds.
#[test]
fn maps_grow_with_use_from_6_1() {
    let _g = serial();
    let (trace, ready) = Trace::start_with(&["--max-connections", "3001"]);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap());
    let (major, minor) = (v.next().unwrap(), v.next().unwrap());
    let preallocated = ready["maps_preallocated"].as_bool().expect("maps_preallocated");
    assert_eq!(preallocated, (major, minor) < (6, 1), "{release}: {ready}");
    // The two hash maps sized by --max-connections, as the kernel sees them.
    let mut flags = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{}/fdinfo", trace.child.id())).unwrap() {
        let info = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        let field =
            |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_owned());
        if field("map_type:").as_deref() == Some("1")
            && field("max_entries:").as_deref() == Some("3001")
        {
            flags.push(field("map_flags:").unwrap());
        }
    }
    let want = if preallocated { "0x0" } else { "0x1" };
    assert_eq!(flags, [want, want], "{ready}");
    trace.interrupt();
}

#[test]
fn trace_json_streams_ready_then_events_with_final_totals() {
    let _g = serial();
    let (trace, ready) = Trace::start();
    assert_eq!(ready["event"], "ready");
    assert!(ready["backend"].is_string() && ready["offsets"].is_string(), "{ready}");
    let mut trace = trace;
    let (cport, sport) = exchange("127.0.0.7:0", 512, 32768);
    let is_close =
        |v: &Value| v["event"] == "close" && (v["lport"] == cport || v["lport"] == sport);
    let seen = trace.until(2, is_close);
    let rest = trace.interrupt();
    assert_eq!(rest.last().unwrap()["event"], "stats", "a closing stats line: {rest:?}");
    for v in seen.iter().filter(|v| v["lport"] == cport || v["lport"] == sport) {
        for k in EVENT_KEYS {
            assert!(!v[k].is_null(), "{k} missing in {v}");
        }
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(v["family"], 4);
    }
    let close = |l: u16| {
        seen.iter()
            .find(|v| is_close(v) && v["lport"] == l)
            .unwrap_or_else(|| panic!("no close of {l} in {seen:#?}"))
    };
    // Exact: TCP totals are the kernel's own.
    let stats = &rest.last().unwrap()["stats"];
    for (port, want) in [(cport, (512, 32768)), (sport, (32768, 512))] {
        let c = close(port);
        let got = (c["bytes_sent"].as_u64().unwrap(), c["bytes_recv"].as_u64().unwrap());
        assert_eq!(got, want, "close of {port}; {stats}");
    }
    assert!(seen.iter().any(|v| v["event"] == "connect" && v["lport"] == cport));
    assert!(seen.iter().any(|v| v["event"] == "accept" && v["lport"] == sport));
    // Guessing's own connections are never traffic.
    assert!(!seen.iter().any(|v| v["comm"].as_str().is_some_and(|c| c.starts_with("ntg-"))));
}

#[test]
fn list_json_shows_an_older_connection_with_exact_totals() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.16:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut srv, _) = listener.accept().unwrap();
    client.write_all(&[1u8; 777]).unwrap();
    let mut buf = [0u8; 777];
    srv.read_exact(&mut buf).unwrap();
    srv.write_all(&[2u8; 555]).unwrap();
    client.read_exact(&mut buf[..555]).unwrap();
    let cport = client.local_addr().unwrap().port();
    // At rest before nettop starts: every byte acked.
    let sport = listener.local_addr().unwrap().port();
    exactness::wait_acked(&[((cport, sport), 777 + 1), ((sport, cport), 555)]);
    let list = json_of(&["list", "--json"]);
    let c = list
        .as_array()
        .expect("an array")
        .iter()
        .find(|c| c["lport"] == cport)
        .unwrap_or_else(|| panic!("{cport} not listed"));
    for k in [
        "proto",
        "family",
        "pid",
        "comm",
        "cmdline",
        "laddr",
        "lport",
        "raddr",
        "rport",
        "direction",
        "state",
        "bytes_sent",
        "bytes_recv",
        "netns",
        "container",
    ] {
        assert!(c.get(k).is_some(), "{k} missing in {c}");
    }
    assert_eq!((&c["bytes_sent"], &c["bytes_recv"]), (&777.into(), &555.into()), "{c}");
    assert_eq!(
        (&c["direction"], &c["proto"], &c["pid"]),
        (&"outgoing".into(), &"tcp".into(), &std::process::id().into())
    );
    assert_eq!(c["backfilled"], true);
}

/// `list --interval`: a receiver that stops reading is marked at both
/// ends, with the queues and the zero window that say why.
#[test]
fn list_interval_shows_a_stuck_receiver_at_both_ends() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.18:0").unwrap();
    common::small_receive_buffer(&listener);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_srv, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    client.write_all(&vec![7u8; 512 << 10]).unwrap();
    let cport = client.local_addr().unwrap().port();
    let sport = listener.local_addr().unwrap().port();
    let list = json_of(&["list", "--json", "--interval", "1", "--port", &sport.to_string()]);
    let end = |l| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["lport"] == l)
            .cloned()
            .unwrap_or_else(|| panic!("{l} not listed: {list}"))
    };
    let (c, s) = (end(cport), end(sport));
    let what = format!("client {c}\nserver {s}");
    assert!(c["tcp"]["send_queue"].as_u64().unwrap() > 0, "{what}");
    assert_eq!(c["tcp"]["snd_wnd"], 0, "{what}");
    assert_eq!(c["health"]["zero_window"], true, "{what}");
    assert_eq!(c["health"]["send_stalled"], true, "{what}");
    assert_eq!(c["health"]["send_limit"], "receiver", "{what}");
    assert!(s["tcp"]["recv_queue"].as_u64().unwrap() > 0, "{what}");
    assert_eq!(s["health"]["recv_stalled"], true, "{what}");
    // Without --interval: one read, no health.
    let once = json_of(&["list", "--json", "--port", &sport.to_string()]);
    assert!(once.as_array().unwrap().iter().all(|c| c.get("health").is_none()), "{once}");
}

/// `list --interval` across real delay and loss (netem): 25 ms each way
/// under a ping-pong gives an RTT within 20 % of 50 ms; 10 % loss under 50
/// one-byte round trips gives retransmits, with the bytes exact. (Not a bulk
/// transfer: `lo` hands netem 64 KiB GSO packets, so 256 KiB is a handful
/// of packets, and 5 % loss then often drops none.)
#[test]
fn list_interval_shows_netem_delay_and_loss() {
    let _g = serial();
    let Some((slow, lossy)) = netem::slow_and_lossy() else { return };
    let ports = format!("port:{}|{}", slow.server_port, lossy.server_port);
    let list = json_of(&["list", "--json", "--interval", "1", "--filter", &ports]);
    let end = |link: &netem::Link| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["lport"] == link.client_port && c["netns"] == link.netns)
            .cloned()
            .unwrap_or_else(|| panic!("the client end is not listed: {list}"))
    };
    let (s, l) = (end(&slow), end(&lossy));
    let rtt = s["tcp"]["rtt_us"].as_u64().unwrap_or(0);
    assert!((40_000..=60_000).contains(&rtt), "RTT {rtt} µs: {s}");
    assert!(l["retransmits"].as_u64().unwrap() > 0, "{l}");
    assert_eq!((&l["bytes_sent"], &l["bytes_recv"]), (&50.into(), &50.into()), "{l}");
    assert!(s.get("health").is_some() && l.get("health").is_some(), "{s}\n{l}");
}

#[test]
fn no_program_stays_attached_after_exit() {
    let _g = serial();
    json_of(&["offsets", "--json"]);
    let out = Command::new("bpftool").args(["prog", "show"]).output().expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["tp_inet_sock_se", "krp_tcp_v4_conn", "fx_tcp_v4_conne", "kp_tcp_v4_conne"] {
        assert!(!text.contains(name), "{name} still loaded:\n{text}");
    }
    let events = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events").unwrap_or_default();
    assert!(!events.contains("nettop_"), "kprobe events left behind:\n{events}");
}

fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let out = Command::new(bin()).args(["--backend", "bogus", "offsets"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");

    // Flag values nettop itself checks: exit 2 too, one line, before any
    // probe loads (so no root needed to see them).
    for (args, says) in [
        (&["--filter", "port:htp", "list"][..], "bad filter: port:htp"),
        (&["--filter", "host:github", "list"][..], "only the interactive table resolves"),
        (&["--filter", "colour:red"][..], "unknown key 'colour'"),
        (&["--interval", "0"][..], "--interval must be more than 0"),
        (&["--linger=-1", "list"][..], "--linger wants"),
        (&["--max-connections", "0", "list"][..], "--max-connections must be"),
        (&["list", "--interval", "0.1"][..], "at least 0.2 seconds"),
        (&["--columns", "pid,colour"][..], "unknown column \"colour\""),
        // Not a terminal: the table says what to use instead.
        (&[][..], "needs a terminal"),
    ] {
        let out =
            Command::new(bin()).args(args).stdin(std::process::Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(one_line_error(&out).contains(says), "{args:?}");
    }

    let _g = serial();
    let out =
        nettop(&["offsets", "--offsets", "btf", "--btf", "/nonexistent/btf"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("/nonexistent/btf"));
}

#[test]
fn missing_privileges_say_what_is_needed() {
    // A copy nobody can reach: the checkout may sit under a private home.
    let dir = std::env::temp_dir().join(format!("nettop-priv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("nettop");
    std::fs::copy(bin(), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&copy)
        .arg("offsets")
        .output()
        .expect("setpriv (util-linux)");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = one_line_error(&out);
    assert!(
        err.contains("root") && err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
}

#[test]
fn filters_keep_only_what_was_asked_for() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.19:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = TcpStream::connect(("127.0.0.19", port)).unwrap();
    let _srv = listener.accept().unwrap();
    let list = json_of(&["list", "--json", "--port", &port.to_string()]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "both ends of the one connection: {list}");
    assert!(rows.iter().all(|r| r["lport"] == port || r["rport"] == port));
    let none = json_of(&["list", "--json", "--port", &port.to_string(), "--proto", "udp"]);
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    let out = nettop(&["list", "--udp-timeout", "-3"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    one_line_error(&out);
}

/// `--version` names the commit and the embedded probe object's SHA-256
/// (checked here with sha256sum on the committed object), and the ready
/// line carries the same values.
#[test]
fn version_names_the_commit_and_the_probe_object() {
    let _g = serial();
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let object = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/nettop.bpf.o");
    let sum = Command::new("sha256sum").arg(object).output().expect("sha256sum");
    let sha = String::from_utf8(sum.stdout).unwrap().split_whitespace().next().unwrap().to_owned();
    let head = Command::new("git").args(["rev-parse", "HEAD"]).output().expect("git");
    let commit = String::from_utf8(head.stdout).unwrap().trim().to_owned();
    assert_eq!(
        text.trim(),
        format!("nettop {} (commit {commit}, probe sha256 {sha})", env!("CARGO_PKG_VERSION"))
    );
    let (trace, ready) = Trace::start();
    trace.interrupt();
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"), "{ready}");
    assert_eq!(ready["commit"], commit.as_str(), "{ready}");
    assert_eq!(ready["probe_sha256"], sha.as_str(), "{ready}");
}

/// A capability set (a bit per capability) from a task's status file.
fn cap_set(status: &str, key: &str) -> u64 {
    let hex = status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

fn cap_bits(names: &str) -> u64 {
    const NUMBERS: &[(&str, u32)] = &[
        ("CAP_DAC_READ_SEARCH", 2),
        ("CAP_SETGID", 6),
        ("CAP_SETUID", 7),
        ("CAP_SYS_MODULE", 16),
        ("CAP_SYS_RAWIO", 17),
        ("CAP_SYS_PTRACE", 19),
        ("CAP_SYS_ADMIN", 21),
        ("CAP_BPF", 39),
    ];
    (names.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none"))
        .map(|n| NUMBERS.iter().find(|(k, _)| *k == n).unwrap_or_else(|| panic!("{n}")).1)
        .fold(0, |set, c| set | 1 << c)
}

fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (it.next().unwrap(), it.next().unwrap())
}

/// The capabilities docs/security.md says nettop's threads and its
/// helper keep on this kernel: the table's row for this kernel's version
/// and `kernel.unprivileged_bpf_disabled`.
fn documented_sets() -> (u64, u64) {
    let doc = include_str!("../docs/security.md");
    let table = doc.split("<!-- capabilities: read by tests/integration.rs -->").nth(1).unwrap();
    let version = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.trim().split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let here = kernel_version();
    let unpriv =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_default();
    let rows = table.lines().skip_while(|l| l.trim().is_empty()).take_while(|l| l.starts_with('|'));
    for row in rows.skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (from, below, sysctl, ours, helper) =
            (cells[1], cells[2], cells[3], cells[4], cells[5]);
        let in_range =
            version(from).is_some_and(|f| here >= f) && version(below).is_none_or(|b| here < b);
        let sysctl_ok = sysctl == "any" || sysctl.split(',').any(|v| v.trim() == unpriv.trim());
        if in_range && sysctl_ok {
            return (cap_bits(ours), cap_bits(helper));
        }
    }
    panic!("docs/security.md has no row for {here:?} with unprivileged_bpf_disabled {unpriv}");
}

#[test]
fn a_running_nettop_keeps_only_the_capabilities_docs_security_md_lists() {
    let _g = serial();
    let (trace, ready) = Trace::start();
    let (ours, helpers) = documented_sets();
    let pid = trace.child.id();
    let forbidden = cap_bits("CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SETUID, CAP_SETGID");
    let check = |pid: u32, want: u64, who: &str| {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let mut n = 0;
        for t in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
            let name = status.lines().next().unwrap_or_default();
            for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
                let set = cap_set(&status, key);
                assert_eq!(set & forbidden, 0, "{who} {name} {key} {set:x} holds a forbidden one");
                assert_eq!(set, want, "{who} {name} {key} {set:x}, docs/security.md: {want:x}");
            }
            assert_eq!(cap_set(&status, "CapAmb:"), 0, "{who} {name}");
            assert!(status.contains("NoNewPrivs:\t1"), "{who} {name} without no_new_privs");
            n += 1;
        }
        n
    };
    // The tracer's own threads are up once the ready line is out.
    assert!(check(pid, ours, "nettop") >= 2, "nettop's threads");
    let main = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        cap_set(&main, "CapEff:") & cap_bits("CAP_SYS_ADMIN"),
        0,
        "nettop holds CAP_SYS_ADMIN"
    );
    let helper = ready["protections"]["helper"]["pid"].as_u64().expect("a helper") as u32;
    let status = std::fs::read_to_string(format!("/proc/{helper}/status")).unwrap();
    assert!(status.contains(&format!("PPid:\t{pid}\n")), "the helper is nettop's: {status}");
    assert!(check(helper, helpers, "the helper") >= 1);
    trace.interrupt();
}

/// Whether Landlock is among the active LSMs (securityfs mounted if need be).
fn landlock_active() -> bool {
    let lsm = std::path::Path::new("/sys/kernel/security/lsm");
    if !lsm.exists() {
        let _ = Command::new("mount")
            .args(["-t", "securityfs", "securityfs", "/sys/kernel/security"])
            .status();
    }
    std::fs::read_to_string(lsm).unwrap_or_default().split(',').any(|l| l.trim() == "landlock")
}

#[test]
fn landlock_refuses_a_write_outside_the_allowed_paths_where_the_kernel_has_it() {
    let _g = serial();
    let target = std::env::temp_dir().join(format!("nettop-landlock-{}", std::process::id()));
    let _ = std::fs::remove_file(&target);
    let out = nettop(&["offsets", "--json"]).env("NETTOP_TEST_WRITE", &target).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["protections"];
    let landlock = p["landlock"].as_str().unwrap();
    let wrote = target.exists();
    let _ = std::fs::remove_file(&target);
    if landlock_active() {
        assert!(landlock.starts_with("enforced"), "{p}");
        assert!(p["test_write"].as_str().unwrap().starts_with("refused"), "{p}");
        assert!(!wrote, "{} was written", target.display());
    } else {
        assert!(landlock.starts_with("unavailable"), "{p}");
        // Nothing refused it: the switch itself works.
        assert_eq!(p["test_write"], "written", "{p}");
        assert!(wrote);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nettop: note: Landlock unavailable"), "a one-line note: {err}");
    }
    assert_eq!(p["no_new_privs"], true, "{p}");
}

/// A flood of short-lived processes with hostile names: each child of a
/// Python parent renames itself to escape sequences and invalid UTF-8
/// (`prctl(PR_SET_NAME)`), connects, and exits once the test closes its
/// end; the parent's command line, which they share, is 64 KiB of the same. Every output shows them escaped, never raw,
/// and the command line cut to its bound.
#[test]
fn hostile_process_names_are_escaped_and_bounded_in_every_output() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (trace, _) = Trace::start_with(&["--filter", &format!("rport:{port}")]);
    let script = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None)
port = int(sys.argv[1])
kids = []
for i in range(1000):
    pid = os.fork()
    if pid == 0:
        libc.prctl(15, b"\x1b[2J\x9b\xff" + str(i % 10).encode(), 0, 0, 0)
        s = socket.create_connection(("127.0.0.1", port)); s.send(b"x")
        s.recv(1)  # until the test closes its end: alive while listed
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"#;
    let hostile = [b"\x1b]0;pwned\x07\x1b[31m\x9b\xff\xfe".to_vec(), vec![b'A'; 64 << 10]].concat();
    use std::os::unix::ffi::OsStrExt;
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(std::ffi::OsStr::from_bytes(&hostile))
        .spawn()
        .expect("python3");
    listener.set_nonblocking(false).unwrap();
    let mut held = Vec::new();
    for _ in 0..1000 {
        held.push(listener.accept().unwrap().0);
    }
    // `list` while the accepted ends are open: the table, as a terminal shows it.
    let out = nettop(&["list", "--filter", &format!("rport:{port}")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let raw_control =
        |b: &[u8]| String::from_utf8_lossy(b).chars().any(|c| c.is_control() && c != '\n');
    assert!(
        !raw_control(&out.stdout) && !raw_control(&out.stderr),
        "list printed a control character"
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.matches("\\u{1b}[2J").count() >= 1000,
        "the children's rows, escaped:\n{listed}"
    );
    let json = nettop(&["list", "--json", "--filter", &format!("rport:{port}")]).output().unwrap();
    assert!(json.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.len(), 1000);
    assert!(
        rows.iter().all(|r| r["cmdline"].as_str().unwrap().ends_with('…')),
        "cut command lines"
    );
    drop(held);
    assert!(py.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let lines = trace.interrupt();
    assert!(lines.last().unwrap()["event"] == "stats");
    let connects: Vec<&Value> = lines.iter().filter(|v| v["event"] == "connect").collect();
    assert_eq!(connects.len(), 1000, "{:?}", lines.last());
    // JSON escapes what JSON must; the names survive, decoded, and the
    // command line is cut.
    for v in connects {
        let comm = v["comm"].as_str().unwrap();
        assert!(comm.starts_with("\u{1b}[2J"), "{comm:?}");
        let cmdline = v["cmdline"].as_str().unwrap();
        assert!(cmdline.chars().count() <= 4097 && cmdline.ends_with('…'), "{}", cmdline.len());
    }
}
