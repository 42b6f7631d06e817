//! What tracing costs, measured side by side (run as root):
//!
//!   cargo bench -p nettop --bench cost [-- PART…]
//!
//! PART: overhead, churn, cpu, startup, memory, peers (default: all). The release
//! `nettop` binary runs as a separate process, as a user runs it; the
//! workloads run here. NETTOP_BACKEND picks the backend (default auto).
//! Prints numbers and goals; asserts nothing (these machines are noisy:
//! every figure is a ratio or a count from one run).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../../tests/support/common.rs"]
mod common;
use common::{backend, bin};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; we set one bit and apply it to
    // the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// utime + stime of a process and its children (nettop's privileged
/// helper does part of its work), in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect();
    own_cpu_ms(pid) + children.into_iter().map(own_cpu_ms).sum::<f64>()
}

fn own_cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 * 1000.0 / hz
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Memory charged for the BPF maps a process holds (fdinfo's memlock).
fn bpf_memlock_kib(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in dir.flatten() {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field =
            |k: &str| info.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()));
        if let (Some(id), Some(m)) = (field("map_id:"), field("memlock:"))
            && seen.insert(id)
        {
            total += m.parse::<u64>().unwrap_or(0);
        }
    }
    total / 1024
}

/// `nettop trace --json` running, its lines counted by kind for the ports
/// we care about.
struct Trace {
    child: Killed,
    reader: JoinHandle<Counts>,
    start_ms: f64,
}

#[derive(Default, Debug)]
struct Counts {
    /// Events on the benchmark's ports, as the probe reported them.
    ours: u64,
    /// Closes the tracer made itself, at a refresh, for connections whose
    /// close event was lost (`"vanished": true`): not the probe's events.
    vanished: u64,
    stats: Option<serde_json::Value>,
    backend: String,
}

impl Trace {
    /// Start tracing; returns once the probes are attached (`ready`).
    fn start(extra: &[&str], ports: Arc<Vec<u16>>) -> Trace {
        let t0 = Instant::now();
        let mut child = Command::new(bin())
            .args(["--backend", &backend()])
            .args(extra)
            .args(["trace", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nettop trace");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().expect("a ready line").unwrap();
        let start_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["event"], "ready", "{ready}");
        let backend = ready["backend"].as_str().unwrap_or("?").to_owned();
        let reader = std::thread::spawn(move || count(lines, &ports, backend));
        Trace { child: Killed(child), reader, start_ms }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the counts (the last line read is the stats line).
    fn stop(self) -> Counts {
        let Trace { child, reader, .. } = self;
        drop(child);
        reader.join().unwrap()
    }
}

/// A child that does not outlive a panicking benchmark.
struct Killed(Child);

impl std::ops::Deref for Killed {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl Killed {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signalling our own, still running, child; SIGTERM
            // lets nettop detach its probes.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

fn count(lines: std::io::Lines<BufReader<ChildStdout>>, ports: &[u16], backend: String) -> Counts {
    let mut c = Counts { backend, ..Counts::default() };
    for line in lines.map_while(Result::ok) {
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["event"] == "stats" {
            c.stats = Some(v["stats"].clone());
            continue;
        }
        let port = |k: &str| v[k].as_u64().unwrap_or(0) as u16;
        if ports.contains(&port("lport")) || ports.contains(&port("rport")) {
            if v["vanished"] == true {
                c.vanished += 1;
            } else {
                c.ours += 1;
            }
        }
    }
    c
}

// ---------------------------------------------------------------- workloads

/// Round trips per second of `size`-byte messages, both ends pinned to CPU 0.
fn pingpong(size: usize, dur: Duration) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        pin_to_cpu(0);
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let client = std::thread::spawn(move || {
        pin_to_cpu(0);
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        let mut buf = vec![1u8; size];
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < dur {
            for _ in 0..64 {
                c.write_all(&buf).unwrap();
                c.read_exact(&mut buf).unwrap();
            }
            n += 64;
        }
        n as f64 / t0.elapsed().as_secs_f64()
    });
    let rate = client.join().unwrap();
    server.join().unwrap();
    rate
}

/// Bytes per second through one connection, in 64 KiB writes.
fn bulk(dur: Duration) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let buf = vec![1u8; 1 << 16];
    let t0 = Instant::now();
    while t0.elapsed() < dur {
        c.write_all(&buf).unwrap();
    }
    drop(c);
    let total = server.join().unwrap();
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Short connections (connect, 8 bytes each way, close), one thread per
/// listener, as fast as they go, for `dur`. Returns how many were made.
fn churn(dur: Duration, listeners: Vec<TcpListener>) -> u64 {
    let made = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let (made, stop) = (made.clone(), stop.clone());
            std::thread::spawn(move || {
                let addr = l.local_addr().unwrap();
                let mut buf = [0u8; 8];
                while !stop.load(Ordering::Relaxed) {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let (mut s, _) = l.accept().unwrap();
                    c.write_all(b"01234567").unwrap();
                    s.read_exact(&mut buf).unwrap();
                    s.write_all(&buf).unwrap();
                    c.read_exact(&mut buf).unwrap();
                    drop(c);
                    drop(s);
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    made.load(Ordering::Relaxed)
}

fn churn_listeners(n: usize) -> (Vec<TcpListener>, Arc<Vec<u16>>) {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    (ls, Arc::new(ports))
}

/// The floor for the length tracepoints: a 2-instruction raw_tp program
/// ("return 0") on `sock_send_length` and `sock_recv_length`, loaded by hand,
/// no nettop. What merely entering a program there costs.
struct EmptyRawTp {
    _links: Vec<std::os::fd::OwnedFd>,
}

impl EmptyRawTp {
    fn attach() -> Result<EmptyRawTp, String> {
        use std::os::fd::FromRawFd;
        // mov64 r0, 0; exit.
        let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]), 0x95];
        let license = c"GPL";
        let mut fds = Vec::new();
        for tp in [c"sock_send_length", c"sock_recv_length"] {
            // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns,
            // license (BPF_PROG_TYPE_RAW_TRACEPOINT is 17).
            let mut attr = [0u64; 16];
            attr[0] = 17 | (insns.len() as u64) << 32;
            attr[1] = insns.as_ptr() as u64;
            attr[2] = license.as_ptr() as u64;
            // SAFETY: bpf(2) reads `size` bytes of the attr we own.
            let prog = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), 128) };
            if prog < 0 {
                return Err(format!("BPF_PROG_LOAD: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: a new fd that nothing else owns.
            fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) });
            // BPF_RAW_TRACEPOINT_OPEN (17): name, prog_fd.
            let mut attr = [0u64; 16];
            attr[0] = tp.as_ptr() as u64;
            attr[1] = prog as u64;
            // SAFETY: as above.
            let link = unsafe { libc::syscall(libc::SYS_bpf, 17, attr.as_ptr(), 128) };
            if link < 0 {
                return Err(format!(
                    "BPF_RAW_TRACEPOINT_OPEN: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: as above.
            fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(link as i32) });
        }
        Ok(EmptyRawTp { _links: fds })
    }
}

/// connect, accept and a close at each end.
const EVENTS_PER_CONNECTION: u64 = 4;

// ---------------------------------------------------------------- parts

fn overhead() {
    println!("\n## traced-host overhead (median of traced/untraced over interleaved pairs)");
    let dur = Duration::from_millis(1500);
    type Work = Box<dyn Fn() -> f64>;
    let works: Vec<(&str, &str, &[&str], Work)> = vec![
        ("ping-pong 1 B (one CPU)", "round trips/s", &[], Box::new(move || pingpong(1, dur))),
        (
            "ping-pong 1 B, --proto tcp",
            "round trips/s",
            &["--proto", "tcp"],
            Box::new(move || pingpong(1, dur)),
        ),
        ("ping-pong 1 KiB (one CPU)", "round trips/s", &[], Box::new(move || pingpong(1024, dur))),
        ("bulk 64 KiB writes", "MiB/s", &[], Box::new(move || bulk(dur) / (1 << 20) as f64)),
    ];
    // The floor the UDP-on figure is held to, in the same run.
    let (mut ratios, mut offs, mut ons) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let off = pingpong(1, dur);
        let floor = match EmptyRawTp::attach() {
            Ok(f) => f,
            Err(why) => {
                println!("{:<28} skipped: {why}", "ping-pong 1 B, empty raw_tp");
                break;
            }
        };
        let on = pingpong(1, dur);
        drop(floor);
        ratios.push(on / off);
        offs.push(off);
        ons.push(on);
    }
    if !ratios.is_empty() {
        println!(
            "{:<28} untraced {:>12.0} round trips/s, with it {:>12.0}, ratio {:.3} (the floor for the first row: goal within 0.01)",
            "ping-pong 1 B, empty raw_tp",
            median(&mut offs),
            median(&mut ons),
            median(&mut ratios)
        );
    }
    let mut backend = String::new();
    for (name, unit, flags, work) in &works {
        let (mut ratios, mut offs, mut ons) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..7 {
            let off = work();
            let t = Trace::start(flags, Arc::new(Vec::new()));
            let on = work();
            backend = t.stop().backend;
            ratios.push(on / off);
            offs.push(off);
            ons.push(on);
        }
        println!(
            "{name:<28} untraced {:>12.0} {unit}, traced {:>12.0}, ratio {:.3} (goal ≥ 0.98) [{backend}]",
            median(&mut offs),
            median(&mut ons),
            median(&mut ratios)
        );
    }
}

fn churn_part() {
    println!("\n## churn (two threads: connect, 8 B each way, close)");
    let dur = Duration::from_secs(5);
    for (label, ring) in [("default ring (4 MiB)", None), ("ring shrunk to 4 KiB", Some("4096"))] {
        let (ls, ports) = churn_listeners(2);
        let extra: Vec<&str> = ring.map(|r| vec!["--ring-bytes", r]).unwrap_or_default();
        let t = Trace::start(&extra, ports.clone());
        let made = churn(dur, ls);
        std::thread::sleep(Duration::from_millis(500)); // the last events drain
        let c = t.stop();
        let stats = c.stats.unwrap_or_default();
        let lost = stats["events_lost"].as_u64().unwrap_or(0);
        let dropped = stats["events_dropped"].as_u64().unwrap_or(0);
        let generated = made * EVENTS_PER_CONNECTION;
        println!(
            "{label:<22} {:>8.0} connections/s; events generated {generated}, delivered {}, \
             missing {}, reported lost {} (kernel {lost}, consumer {dropped}); closes made at a \
             refresh for lost ones {} [{}]",
            made as f64 / dur.as_secs_f64(),
            c.ours,
            generated.saturating_sub(c.ours),
            lost + dropped,
            c.vanished,
            c.backend
        );
    }
    println!("goal: 0 lost with the default ring; with the shrunk one, missing = reported lost");
}

fn cpu_part() {
    println!("\n## userspace CPU per 1000 events under churn (nettop's own utime+stime)");
    let dur = Duration::from_secs(5);
    // trace --json > /dev/null, as the goal is stated. No `ready` line to
    // wait for there: start-up takes well under a second everywhere
    // (emulated VMs included), so a few seconds suffice.
    let (ls, _) = churn_listeners(2);
    let mut quiet = Killed(
        Command::new(bin())
            .args(["--backend", &backend(), "trace", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nettop trace"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(quiet.exited().is_none(), "nettop trace --json > /dev/null exited");
    let before = cpu_ms(quiet.id());
    let made = churn(dur, ls);
    std::thread::sleep(Duration::from_millis(300));
    let used = cpu_ms(quiet.id()) - before;
    drop(quiet);
    let events = made * EVENTS_PER_CONNECTION;
    println!(
        "trace --json > /dev/null   {:.3} ms per 1000 events ({used:.0} ms for {events} events; goal ≤ 0.5)",
        used / events as f64 * 1000.0,
    );
    // The same to a pipe that a JSON parser reads (this benchmark's, on
    // the same two CPUs): nettop also pays for waiting on a full pipe.
    let (ls, ports) = churn_listeners(2);
    let t = Trace::start(&[], ports.clone());
    let before = cpu_ms(t.pid());
    let made = churn(dur, ls);
    std::thread::sleep(Duration::from_millis(300));
    let used = cpu_ms(t.pid()) - before;
    let c = t.stop();
    let events = made * EVENTS_PER_CONNECTION;
    println!(
        "trace --json | parser      {:.3} ms per 1000 events ({used:.0} ms for {events} events) [{}]",
        used / events as f64 * 1000.0,
        c.backend
    );
    // The TUI, in a tmux session of 200x50.
    let tui = match Tui::start() {
        Ok(t) => t,
        Err(why) => {
            println!("TUI                    skipped: {why}");
            return;
        }
    };
    let pid = tui.pid;
    let (ls, _) = churn_listeners(2);
    let before = cpu_ms(pid);
    let made = churn(dur, ls);
    std::thread::sleep(Duration::from_millis(300));
    let used = cpu_ms(pid) - before;
    drop(tui);
    let events = made * EVENTS_PER_CONNECTION;
    println!(
        "TUI (1 s refresh)          {:.3} ms per 1000 events ({used:.0} ms for {events} events; goal ≤ 0.5)",
        used / events as f64 * 1000.0
    );
}

/// The TUI in a detached tmux session of 200x50, killed on drop.
struct Tui {
    session: String,
    pid: u32,
}

impl Tui {
    fn start() -> Result<Tui, &'static str> {
        if Command::new("tmux").arg("-V").output().is_err() {
            return Err("tmux is not installed");
        }
        let session = format!("nettop-bench-{}", std::process::id());
        let cmd = format!("exec {} --backend {}", bin(), backend());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "200", "-y", "50", &cmd])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("tmux could not start a session");
        }
        let pid = String::from_utf8_lossy(
            &Command::new("tmux")
                .args(["display", "-p", "-t", &session, "#{pane_pid}"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
        )
        .trim()
        .parse()
        .unwrap_or(0);
        std::thread::sleep(Duration::from_secs(2)); // started and drawing
        Ok(Tui { session, pid })
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
        // Gone before the next part starts, or its CPU would count there.
        let gone = || !std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
        let until = Instant::now() + Duration::from_secs(10);
        while !gone() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn startup() {
    println!("\n## start-up (exec → probes attached and offsets guessed), median of 10");
    let mut ready = Vec::new();
    let mut used = String::new();
    for _ in 0..10 {
        let t = Trace::start(&[], Arc::new(Vec::new()));
        ready.push(t.start_ms);
        used = t.stop().backend;
    }
    println!("trace: first `ready` line   {:.0} ms (goal ≤ 200) [{used}]", median(&mut ready));
    let mut list = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let out = Command::new(bin())
            .args(["--backend", &backend(), "list", "--json"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        list.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "list --json: exec → exit       {:.0} ms (whole run: start, snapshot, detach)",
        median(&mut list)
    );
}

/// Connections one holder process keeps open (two descriptors each; hosts
/// often cap a process at 20 000 descriptors and refuse to raise it).
const PER_HOLDER: usize = 9000;

/// Open `n` loopback connections in helper processes (this same binary,
/// NETTOP_COST_HOLD=count) and keep them until the returned children are
/// dropped: 2n tracked ends.
fn open_many(n: usize) -> Vec<Child> {
    let mut holders = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(PER_HOLDER);
        left -= k;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("NETTOP_COST_HOLD", k.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "a holder failed");
        holders.push(child);
    }
    holders
}

/// The holder's side: open `n` connections to our own listeners, say so,
/// keep them until stdin closes.
fn hold(n: usize) {
    let listeners: Vec<TcpListener> =
        (0..4).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let l = &listeners[i % listeners.len()];
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        keep.push((c, s));
    }
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn http_status(addr: SocketAddr) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("{}");
    serde_json::from_str(body).unwrap_or_default()
}

fn memory() {
    println!("\n## memory per tracked connection (`nettop serve`, every connection open at once)");
    for n in [10_000usize, 100_000] {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Killed(
            Command::new(bin())
                .args(["--backend", &backend(), "--max-connections", "262144"])
                .args(["serve", "--listen", &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "nettop serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let (rss0, map0) = (rss_kib(child.id()), bpf_memlock_kib(child.id()));
        let holders = open_many(n);
        // Wait until the daemon's table holds them all (both ends), or at
        // least the connecting ends with no more coming for 3 s: naming
        // the owners of 100 000 accepted ends takes a few seconds, and
        // idle is after that.
        let t0 = Instant::now();
        let (mut last, mut same) = (0, 0);
        let tracked = loop {
            std::thread::sleep(Duration::from_millis(500));
            let open = http_status(addr)["stats"]["connections_open"].as_u64().unwrap_or(0);
            same = if open == last { same + 1 } else { 0 };
            let settled = open >= n as u64 && same >= 6;
            if open >= 2 * n as u64 || settled || t0.elapsed() > Duration::from_secs(90) {
                break open;
            }
            last = open;
        };
        let settle_s = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(1500)); // a refresh or two
        let (rss, map) = (rss_kib(child.id()), bpf_memlock_kib(child.id()));
        let per = |kib: u64| kib as f64 * 1024.0 / tracked.max(1) as f64;
        // Maps in all (ring buffer, hash buckets and, before 6.1, every
        // preallocated entry), and what the connections added to them.
        println!(
            "{n:>6} connections ({tracked} tracked ends, {settle_s:.1} s after opening): \
             RSS {rss0} → {rss} KiB = {:.0} B per end; \
             BPF maps {map0} → {map} KiB = {:.0} B per end in all, {:.0} B per end added; \
             together {:.0} B (goal ≤ 1024)",
            per(rss.saturating_sub(rss0)),
            per(map),
            per(map.saturating_sub(map0)),
            per(rss.saturating_sub(rss0) + map)
        );
        // The tracer's lock is held while it lists its connections; a
        // /connections round trip (listing, then JSON) bounds that hold.
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /connections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s.read_to_end(&mut Vec::new()).unwrap();
            worst = worst.max(t.elapsed());
        }
        let held = http_status(addr)["longest_listing_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{n:>6} connections: GET /connections, the slowest of 5, {:.0} ms; the longest \
             listing (the tracer's lock held) {held:.0} ms",
            worst.as_secs_f64() * 1e3
        );
        // Left running on a host with many connections and no traffic:
        // what refreshing their counters costs.
        let before = cpu_ms(child.id());
        std::thread::sleep(Duration::from_secs(5));
        println!(
            "{n:>6} connections, idle: nettop used {:.1} % of a core (`serve`, counters read each second)",
            (cpu_ms(child.id()) - before) / 5000.0 * 100.0
        );
        drop(child);
        for mut h in holders {
            drop(h.stdin.take());
            let _ = h.wait();
        }
    }
}

/// Exactly `bytes` from a client to a server, both in this process: the
/// (client port, server port).
fn transfer(bytes: usize, hold: Duration) -> (u16, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).unwrap();
        sink.len()
    });
    let mut c = TcpStream::connect(("127.0.0.1", sport)).unwrap();
    let cport = c.local_addr().unwrap().port();
    // Open for a while before and after: tools that map sockets to
    // processes by scanning /proc every second get their chance.
    std::thread::sleep(hold);
    c.write_all(&vec![7u8; bytes]).unwrap();
    std::thread::sleep(hold);
    drop(c);
    assert_eq!(server.join().unwrap(), bytes);
    (cport, sport)
}

/// The process the peers must attribute the exact transfer to.
const TRANSFER_NAME: &str = "nt-transfer";

/// `transfer` in a process of its own, named TRANSFER_NAME (a copy of this
/// binary), so that per-process tools count nothing else under its name and
/// pid: the ports and its pid.
fn transfer_elsewhere(bytes: usize) -> ((u16, u16), u32) {
    let exe = std::env::temp_dir().join(TRANSFER_NAME);
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let child = Command::new(&exe)
        .env("NETTOP_COST_TRANSFER", bytes.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&exe);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|p| p.parse().unwrap());
    ((it.next().unwrap(), it.next().unwrap()), pid)
}

/// A peer (or nettop) running with its output in a file.
struct Tool {
    child: Killed,
    out: std::path::PathBuf,
}

impl Tool {
    fn start(name: &'static str, cmd: &[&str]) -> Option<Tool> {
        let out = std::env::temp_dir().join(format!("nettop-peer-{}-{name}", std::process::id()));
        let file = std::fs::File::create(&out).ok()?;
        let child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Tool { child: Killed(child), out })
    }

    fn output(self) -> String {
        drop(self.child);
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        text
    }
}

/// What a tool said of the exact transfer: sent and received, as it
/// reports them (per connection for nettop, per process for the peers).
fn reported(name: &str, text: &str, ports: (u16, u16), pid: u32) -> String {
    match name {
        "nettop trace --json" => {
            let close = |l: u16, r: u16| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["event"] == "close" && v["lport"] == l && v["rport"] == r)
                    .map(|v| (v["bytes_sent"].as_u64(), v["bytes_recv"].as_u64()))
            };
            format!(
                "client end sent/recv {:?}, server end {:?}",
                close(ports.0, ports.1),
                close(ports.1, ports.0)
            )
        }
        // Trace mode, totals in bytes: "name/pid/uid\tsent\trecv".
        "nethogs" => {
            let tag = format!("/{pid}/");
            let last = text.lines().rfind(|l| l.contains(&tag));
            let unknown = text.lines().rfind(|l| l.starts_with("unknown TCP"));
            format!("the sender {:?}, unattributed {:?}", last.map(str::trim), unknown)
        }
        // Raw mode with totals: `process: <t> "name" up/down Bps: U/D …`.
        _ => {
            let ours = format!("\"{TRANSFER_NAME}\"");
            let last = |needle: &str| {
                text.lines()
                    .rfind(|l| l.starts_with("process:") && l.contains(needle))
                    .and_then(|l| l.split("Bps: ").nth(1))
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_owned)
            };
            format!("the sender up/down {:?}, \"<UNKNOWN>\" {:?}", last(&ours), last("<UNKNOWN>"))
        }
    }
}

fn peers() {
    const BYTES: usize = 10 << 20;
    println!(
        "\n## against peers: CPU (% of one core) on the same loads, and what each says of a \
         {BYTES}-byte loopback transfer"
    );
    let bandwhich = std::env::var("NETTOP_BANDWHICH").unwrap_or_else(|_| "bandwhich".into());
    let backend = backend();
    let bin = bin();
    let trace = [bin.as_str(), "--backend", &backend, "trace", "--json"];
    let bw = [bandwhich.as_str(), "-i", "lo", "-n", "--raw", "--total-utilization"];
    let nh = ["nethogs", "-t", "-v", "2", "-d", "1", "-a", "lo"];
    let tools: [(&'static str, &[&str]); 3] =
        [("nettop trace --json", &trace), ("bandwhich", &bw), ("nethogs", &nh)];
    for (name, cmd) in tools {
        let Some(mut tool) = Tool::start(name, cmd) else {
            println!("{name:<20} skipped: could not start {}", cmd[0]);
            continue;
        };
        std::thread::sleep(Duration::from_secs(2)); // started, probes or capture up
        if let Some(status) = tool.child.exited() {
            println!("{name:<20} skipped: exited at start ({status})");
            continue;
        }
        let pid = tool.child.id();
        let dur = Duration::from_secs(5);
        let pct = |ms: f64| ms / dur.as_secs_f64() / 10.0;
        let c0 = cpu_ms(pid);
        let rate = bulk(dur) / (1 << 20) as f64;
        let c1 = cpu_ms(pid);
        let (ls, _) = churn_listeners(2);
        let made = churn(dur, ls);
        let c2 = cpu_ms(pid);
        let (ports, sender) = transfer_elsewhere(BYTES);
        std::thread::sleep(Duration::from_secs(3)); // a refresh or two after it
        let text = tool.output();
        println!(
            "{name:<20} bulk {:>5.1} % ({rate:.0} MiB/s), churn {:>5.1} % ({:.0} connections/s); \
             {BYTES} B: {}",
            pct(c1 - c0),
            pct(c2 - c1),
            made as f64 / dur.as_secs_f64(),
            reported(name, &text, ports, sender)
        );
    }
    // The TUI on the same loads: CPU only (its counts are the tracer's, as
    // above).
    if let Ok(tui) = Tui::start() {
        let dur = Duration::from_secs(5);
        let c0 = cpu_ms(tui.pid);
        let rate = bulk(dur) / (1 << 20) as f64;
        let c1 = cpu_ms(tui.pid);
        let (ls, _) = churn_listeners(2);
        let made = churn(dur, ls);
        let c2 = cpu_ms(tui.pid);
        println!(
            "{:<20} bulk {:>5.1} % ({rate:.0} MiB/s), churn {:>5.1} % ({:.0} connections/s)",
            "nettop (TUI)",
            (c1 - c0) / dur.as_secs_f64() / 10.0,
            (c2 - c1) / dur.as_secs_f64() / 10.0,
            made as f64 / dur.as_secs_f64()
        );
    }
    println!("goal: nettop's CPU ≤ 1/5 of bandwhich's, and exact where they are not");
}

fn main() {
    if let Some(n) = std::env::var("NETTOP_COST_HOLD").ok().and_then(|n| n.parse().ok()) {
        return hold(n);
    }
    if let Some(n) = std::env::var("NETTOP_COST_TRANSFER").ok().and_then(|n| n.parse().ok()) {
        let (c, s) = transfer(n, Duration::from_millis(2500));
        println!("{c} {s}");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "cost: run as root (it loads eBPF programs): sudo -E cargo bench -p nettop --bench cost"
        );
        std::process::exit(2);
    }
    let asked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |p: &str| asked.is_empty() || asked.iter().any(|a| a == p);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "# nettop cost on {} ({} CPUs), backend {}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        backend()
    );
    if want("overhead") {
        overhead();
    }
    if want("churn") {
        churn_part();
    }
    if want("cpu") {
        cpu_part();
    }
    if want("startup") {
        startup();
    }
    if want("memory") {
        memory();
    }
    if want("peers") {
        peers();
    }
}
