//! End-to-end tests of the real binary on the running kernel, as root.
//! The backend under test comes from NETTOP_BACKEND (default: auto), so the
//! same tests run inside the qemu VMs once per backend.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

#[path = "support/btf_oracle.rs"]
mod btf_oracle;

/// The binary under test: NETTOP_BIN inside the qemu VMs, where the build
/// tree's path does not exist.
fn bin() -> String {
    std::env::var("NETTOP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nettop").to_owned())
}

/// One nettop at a time: tests look at what is attached system-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn backend() -> String {
    std::env::var("NETTOP_BACKEND").unwrap_or_else(|_| "auto".into())
}

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

fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .is_ok_and(|v| v.trim() == "0")
}

#[test]
fn guessed_offsets_equal_the_kernels_btf() {
    let _g = serial();
    // --offsets guess: the guesser alone, BTF never read by nettop.
    let report = json_of(&["offsets", "--json", "--offsets", "guess"]);
    let oracle = btf_oracle::Oracle::load(Path::new("/sys/kernel/btf/vmlinux"));
    eprintln!(
        "kernel {} backend {} guessed in {} ms with {} connections",
        report["kernel"], report["backend"], report["guess_ms"], report["guess_connections"]
    );
    let fields = report["fields"].as_array().expect("fields array");
    assert_eq!(fields.len(), btf_oracle::FIELDS.len());
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
        assert_eq!(f["guessed"].as_u64(), Some(truth as u64), "{name}: guessed vs BTF");
        assert!(f["btf"].is_null(), "--offsets guess must not read BTF");
    }
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
    let oracle = btf_oracle::Oracle::load(Path::new("/sys/kernel/btf/vmlinux"));
    for f in report["fields"].as_array().unwrap() {
        assert!(f["guessed"].is_null());
        assert_eq!(
            f["btf"].as_u64(),
            oracle.field(f["name"].as_str().unwrap()).map(u64::from),
            "{f}"
        );
    }
}

/// nettop `sockets --json` running until its duration ends.
struct Watch(Child);

impl Watch {
    fn start(seconds: f64) -> Watch {
        let mut child = nettop(&["sockets", "--json", "--duration", &seconds.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nettop sockets");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("\"ready\""), "expected the ready line, got {line:?}");
        Watch(child)
    }

    fn finish(mut self) -> Value {
        let mut rest = String::new();
        self.0.stdout.take().unwrap().read_to_string(&mut rest).unwrap();
        assert!(self.0.wait().unwrap().success());
        serde_json::from_str(rest.trim()).expect("sockets JSON")
    }
}

/// A client sends exactly 512 B, the server answers exactly 32768 B.
fn exchange(listen: &str) -> (u16, u16) {
    let listener = TcpListener::bind(listen).expect("bind");
    let server_port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&[7u8; 32768]).unwrap();
    });
    let mut client = TcpStream::connect(listener_addr(listen, server_port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(&[1u8; 512]).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 32768);
    server.join().unwrap();
    (client_port, server_port)
}

fn listener_addr(listen: &str, port: u16) -> String {
    let host = listen.rsplit_once(':').unwrap().0;
    format!("{host}:{port}")
}

fn find(sockets: &Value, lport: u16, rport: u16) -> &Value {
    sockets["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["lport"] == lport && s["rport"] == rport)
        .unwrap_or_else(|| panic!("no socket {lport} -> {rport} in {sockets}"))
}

fn check_exact_bytes(listen: &str, family: u64) {
    let _g = serial();
    let watch = Watch::start(1.5);
    let (cport, sport) = exchange(listen);
    let out = watch.finish();
    let me = std::process::id();
    let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let client = find(&out, cport, sport);
    assert_eq!(client["bytes_sent"], 512, "{client}");
    assert_eq!(client["bytes_recv"], 32768, "{client}");
    assert_eq!(client["direction"], "outgoing", "{client}");
    assert_eq!(client["pid"], me, "{client}");
    assert_eq!(client["family"], family, "{client}");
    assert_eq!(client["netns"], netns, "{client}");
    // Guessing's own connections are never traffic.
    let guessing = out["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["comm"].as_str().is_some_and(|c| c.starts_with("ntg-")));
    assert_eq!(guessing.count(), 0, "guessing connections recorded: {out}");
    let server = find(&out, sport, cport);
    assert_eq!(server["bytes_sent"], 32768, "{server}");
    assert_eq!(server["bytes_recv"], 512, "{server}");
    assert_eq!(server["direction"], "incoming", "{server}");
    assert_eq!(server["pid"], me, "{server}");
    assert_eq!(server["closed"], true, "{server}");
}

#[test]
fn tcp_v4_bytes_are_exact_both_ways() {
    check_exact_bytes("127.0.0.7:0", 4);
}

#[test]
fn tcp_v6_bytes_are_exact_both_ways() {
    if !ipv6_enabled() {
        // The IPv4 tests above still run; here the fields must say why.
        let _g = serial();
        let report = json_of(&["offsets", "--json", "--offsets", "guess"]);
        assert_eq!(report["ipv6"], false);
        assert!(report["ipv6_unavailable"].as_str().unwrap().contains("IPv6 is disabled"));
        return;
    }
    check_exact_bytes("[::1]:0", 6);
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
