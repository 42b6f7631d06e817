//! The real `nettop` binary driven in tmux, as a user would (root, tmux and
//! python3 needed: `tests/run` installs them). Two traffic generators on two
//! known ports; the filter, sort keys, `q` and SIGTERM each checked on the
//! screen tmux captures.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/common.rs"]
mod common;
use common::{bin, serial};

/// A process that listens on a port of its own, connects to it and sends
/// 1 KiB every 20 ms both ways; it prints the port.
struct Generator {
    child: Child,
    port: u16,
}

const GENERATOR: &str = r#"
import socket, sys, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
def serve():
    c, _ = srv.accept()
    while True:
        d = c.recv(65536)
        if not d: return
        c.sendall(d)
threading.Thread(target=serve, daemon=True).start()
c = socket.create_connection(srv.getsockname())
while True:
    c.sendall(b"x" * 1024); c.recv(65536); time.sleep(0.02)
"#;

impl Generator {
    fn start() -> Generator {
        Generator::run(GENERATOR)
    }

    fn run(script: &str) -> Generator {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (tests/run installs it)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        Generator { port: line.trim().parse().expect("the generator's port"), child }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A receiver that stops reading: 1 MiB sent, none of it read. Prints the
/// listening port.
const STUCK: &str = r#"
import socket, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()
c.setblocking(False)
c.send(b"x" * (1 << 20))
print(srv.getsockname()[1], flush=True)
time.sleep(600)
"#;

/// Inside nettop's own network namespace: two connections, to 192.0.2.3
/// (which the test's /etc/hosts names) and to 192.0.2.2 (which nothing
/// names), and a DNS server that never answers. Writes the server's port
/// and the two listening ports to argv[1].
const TWO_PEERS: &str = r#"
import socket, sys, time
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); silent.bind(("127.0.0.1", 0))
keep = [silent]
ports = [silent.getsockname()[1]]
for host in ("192.0.2.3", "192.0.2.2"):
    srv = socket.socket(); srv.bind((host, 0)); srv.listen()
    c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()
    keep += [srv, c, s]
    ports.append(srv.getsockname()[1])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(map(str, ports)))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"#;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start() -> Tmux {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = format!("nettop-e2e-{}-{n}", std::process::id());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "200", "-y", "50"])
            .args(["bash", "--norc", "--noprofile"])
            .env("PS1", "$ ")
            .status()
            .expect("tmux (tests/run installs it)");
        assert!(ok.success());
        Tmux { session }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Literal text, no key names.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
    }

    /// Type a command line that reports its exit status as `EXITED-N`.
    fn run(&self, cmd: &str) {
        self.type_text(&format!("{cmd}; echo EXITED-$?"));
        self.keys(&["Enter"]);
    }

    fn wait_exit(&self) -> String {
        // A line of output, not the echo of the command that prints it.
        self.wait_for("exit", |s| s.lines().any(|l| l.starts_with("EXITED-")))
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    fn format(&self, f: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", &self.session, f]).trim().to_owned()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The shell is back and the terminal is as it was: main screen, not
    /// raw, echoing, cursor shown.
    fn assert_restored(&self, marker: &str) {
        // A line of output, not the echo of the command that prints it.
        self.wait_for(marker, |s| s.lines().any(|l| l.starts_with(marker)));
        assert_eq!(self.format("#{alternate_on}"), "0", "still on the alternate screen");
        assert_eq!(self.format("#{cursor_flag}"), "1", "cursor hidden");
        assert_eq!(self.format("#{mouse_any_flag}"), "0", "mouse capture left on");
        self.type_text(
            "echo MODES $(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig)' | sort)",
        );
        self.keys(&["Enter"]);
        let s = self.wait_for("stty", |s| s.lines().any(|l| l.starts_with("MODES ")));
        let line = s.lines().find(|l| l.starts_with("MODES ")).unwrap().trim_end().to_owned();
        assert_eq!(line, "MODES echo icanon isig", "the terminal is not back to normal:\n{s}");
        self.keys(&["clear", "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-session", "-t", &self.session]);
    }
}

/// The table's connection rows: lines between the column titles and the
/// key line that carry a protocol.
fn rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("PID PROCESS"))
        .skip(1)
        .take_while(|l| !l.starts_with("? help"))
        // Each starts with its PID.
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

fn local_port(row: &str) -> u16 {
    let local = row.split_whitespace().nth(3).unwrap();
    local.rsplit(':').next().unwrap().parse().unwrap()
}

fn nettop_running() -> bool {
    nettop_pid().is_some()
}

fn nettop_pid() -> Option<u32> {
    let me = std::fs::canonicalize(bin()).unwrap();
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|p| {
        let exe = std::fs::read_link(p.path().join("exe")).ok()?;
        (exe == me).then(|| p.file_name().to_str()?.parse().ok()).flatten()
    })
}

fn wait_gone(why: &str) {
    let start = Instant::now();
    while nettop_running() {
        assert!(start.elapsed() < Duration::from_secs(10), "nettop still running: {why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_detached() {
    let out = Command::new("bpftool").args(["prog", "show"]).output().expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["tp_inet_sock_se", "krp_tcp_v4_conn", "fx_tcp_v4_conne", "kp_tcp_v4_conne"] {
        assert!(!text.contains(name), "{name} still loaded:\n{text}");
    }
}

#[test]
fn a_user_filters_sorts_and_quits_in_a_real_terminal() {
    let _s = serial();
    let (g1, g2) = (Generator::start(), Generator::start());
    let (p1, p2) = (format!(":{} ", g1.port), format!(":{} ", g2.port));
    let t = Tmux::start();
    t.run(&format!("{} --interval 0.5", bin()));
    t.wait_for("both generators on screen", |s| s.contains(&p1) && s.contains(&p2));

    t.type_text(&format!("/port:{}", g1.port));
    t.keys(&["Enter"]);
    // The rows filter as the text is typed; Enter then keeps the filter,
    // which the status line shows once the key is handled.
    let kept = format!("filter: port:{}", g1.port);
    let s = t.wait_for("only P1's rows, the filter kept", |s| {
        let r = rows(s);
        r.len() >= 2 && r.iter().all(|l| l.contains(&p1)) && s.contains(&kept)
    });
    assert!(!rows(&s).iter().any(|l| l.contains(&p2)), "{s}");

    // From the default (receive rate), `s` seven times reaches LOCAL.
    for _ in 0..7 {
        t.keys(&["s"]);
    }
    let asc = t.wait_for("sorted by LOCAL, ascending", |s| s.contains("LOCAL▲"));
    let ports: Vec<u16> = rows(&asc).iter().map(|r| local_port(r)).collect();
    assert!(ports.len() >= 2 && ports.is_sorted(), "{asc}");
    t.keys(&["S"]);
    let desc = t.wait_for("sorted by LOCAL, descending", |s| s.contains("LOCAL▼"));
    let rev: Vec<u16> = rows(&desc).iter().map(|r| local_port(r)).collect();
    assert!(rev.is_sorted_by(|a, b| a >= b) && rev.first() != ports.first(), "{desc}");

    t.keys(&["q"]);
    t.assert_restored("EXITED-0");
    assert!(!nettop_running(), "nettop still running after q");
    assert_detached();

    // Again, ended by SIGTERM from elsewhere.
    t.run(&bin());
    t.wait_for("the table", |s| s.contains("PID PROCESS") && s.contains(&p2));
    let pid = nettop_pid().expect("nettop's pid");
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    t.assert_restored("EXITED-0");
    wait_gone("after SIGTERM");
    assert_detached();
}

#[test]
fn a_stuck_receiver_is_marked_on_screen_with_what_holds_its_sender() {
    let _s = serial();
    let stuck = Generator::run(STUCK);
    let port = stuck.port.to_string();
    let t = Tmux::start();
    t.run(&format!("{} --interval 0.5 --filter port:{port}", bin()));
    // Both ends marked once an interval has been judged.
    let s = t.wait_for("both ends marked", |s| {
        let r = rows(s);
        r.len() == 2 && r.iter().all(|l| l.contains(" !"))
    });
    assert!(s.contains("RTT"), "{s}");
    t.keys(&["t"]);
    let s = t.wait_for("the health columns", |s| s.contains("LIMIT") && s.contains("receiver"));
    let r = rows(&s);
    let sender = r.iter().find(|l| l.contains('→')).expect("the sender's row");
    let receiver = r.iter().find(|l| l.contains('←')).expect("the receiver's row");
    // After the mark: RTT, RETRANS, SEND-Q, RECV-Q.
    let queues = |row: &str| {
        let f: Vec<String> = row.split_whitespace().map(str::to_owned).collect();
        let mark = f.iter().position(|f| f == "!").unwrap();
        (f[mark + 3].clone(), f[mark + 4].clone())
    };
    let kib = |q: &str| q.ends_with('K') || q.ends_with('M');
    // The sender: held by the receiver, its data queued; the receiver's
    // data waits in its receive queue.
    let (send_q, _) = queues(sender);
    assert!(sender.contains("receiver") && kib(&send_q), "SEND-Q {send_q}: {s}");
    let (_, recv_q) = queues(receiver);
    assert!(kib(&recv_q), "RECV-Q {recv_q}: {s}");
    t.keys(&["q"]);
    t.assert_restored("EXITED-0");
}

/// Names: a peer that /etc/hosts names shows that name; a peer whose DNS
/// server never answers (a silent one on loopback) keeps its address, and
/// the table answers keys meanwhile; `d` shows addresses again, and
/// `host:` filters by name. /etc/hosts is the test's own, bind-mounted in
/// a mount namespace of nettop's.
#[test]
fn names_from_etc_hosts_and_a_silent_dns_server() {
    let _s = serial();
    let dir = std::env::temp_dir().join(format!("nettop-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hosts, peers, ports) = (dir.join("hosts"), dir.join("peers.py"), dir.join("ports"));
    std::fs::write(&hosts, "127.0.0.1 localhost\n192.0.2.3 db.example.test db\n").unwrap();
    std::fs::write(&peers, TWO_PEERS).unwrap();
    let script = dir.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "ip link set lo up && ip addr add 192.0.2.2/32 dev lo && ip addr add 192.0.2.3/32 dev lo \
             && mount --bind {hosts} /etc/hosts || exit 9\n\
             python3 {peers} {ports} &\n\
             peers=$!\n\
             trap 'kill $peers' EXIT HUP TERM\n\
             while [ ! -s {ports} ]; do sleep 0.1; done\n\
             read dns named unnamed < {ports}\n\
             {bin} --interval 0.5 --dns-server 127.0.0.1:$dns --filter \"port:$named|$unnamed\"\n",
            hosts = hosts.display(),
            peers = peers.display(),
            ports = ports.display(),
            bin = bin(),
        ),
    )
    .unwrap();
    let t = Tmux::start();
    t.run(&format!("unshare -m -n sh {}", script.display()));
    let start = Instant::now();
    while !ports.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "the peers never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ports = std::fs::read_to_string(&ports).unwrap();
    let ports: Vec<&str> = ports.split_whitespace().collect();
    let (named, unnamed) = (ports[1], ports[2]);
    let s = t.wait_for("the named peer", |s| s.contains(&format!("db.example.test:{named}")));
    assert!(s.contains(&format!("192.0.2.2:{unnamed}")), "{s}");
    // Lookups of 192.0.2.2 wait on the silent server: keys still answer.
    let start = Instant::now();
    t.keys(&["t"]);
    t.wait_for("the health columns", |s| s.contains("RETRANS"));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?} to answer a key", start.elapsed());
    t.keys(&["t"]);
    std::thread::sleep(Duration::from_secs(3));
    let s = t.wait_for("the table", |s| s.contains("RTT"));
    assert!(s.contains(&format!("192.0.2.2:{unnamed}")), "no name after the timeout: {s}");
    t.keys(&["d"]);
    t.wait_for("addresses again", |s| {
        s.contains(&format!("192.0.2.3:{named}")) && !s.contains("db.example.test")
    });
    t.keys(&["d"]);
    // `/` edits the filter in force; Ctrl-U clears it first.
    t.type_text("/");
    t.keys(&["C-u"]);
    t.type_text(&format!("host:db.example port:{named}"));
    t.keys(&["Enter"]);
    // Both ends of the named connection have it as their remote end.
    let s = t.wait_for("only the named peer's rows", |s| {
        rows(s).len() == 2 && s.contains("filter: host:db.example port:")
    });
    assert!(rows(&s).iter().all(|r| r.contains("db.example.test")), "{s}");
    t.keys(&["q"]);
    t.assert_restored("EXITED-0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn startup_errors_are_one_line_with_the_terminal_untouched() {
    let _s = serial();
    let t = Tmux::start();
    t.run(&format!("{} --filter 'port:htp'", bin()));
    let s = t.wait_exit();
    assert!(s.contains("nettop: bad filter: port:htp — port wants a port"), "{s}");
    assert!(s.contains("EXITED-2"), "a bad flag exits 2: {s}");
    t.assert_restored("EXITED-2");
}

#[test]
fn closing_the_terminal_ends_nettop() {
    let _s = serial();
    let _g = Generator::start();
    let t = Tmux::start();
    // In a session of its own, so that no SIGHUP comes: the terminal just
    // reads end-of-file from then on.
    t.type_text(&format!("setsid -w {}", bin()));
    t.keys(&["Enter"]);
    t.wait_for("the table", |s| s.contains("PID PROCESS"));
    assert!(nettop_running());
    drop(t);
    wait_gone("its terminal went away");
    assert_detached();
}

#[test]
fn a_panic_restores_the_terminal_and_detaches() {
    let _s = serial();
    let t = Tmux::start();
    t.run(&format!("NETTOP_TEST_PANIC=1 {}", bin()));
    let s = t.wait_exit();
    // The message is on the main screen, whole, not overwritten.
    assert!(s.contains("panicked") && s.contains("NETTOP_TEST_PANIC is set"), "{s}");
    t.assert_restored("EXITED-101");
    assert!(!nettop_running());
    assert_detached();
}
