//! `nettop serve` end to end, as root: a real Prometheus server (Debian's
//! `prometheus` package; tests/run installs it) scrapes the daemon, and its
//! query API must show exactly the bytes a named process sent.
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/common.rs"]
mod common;
use common::{bin, serial};
#[path = "support/exactness.rs"]
#[allow(dead_code)] // only wait_acked here
mod exactness;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nettop-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn get(url: &str) -> Result<String, ureq::Error> {
    ureq::get(url).call()?.body_mut().read_to_string()
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `nettop serve`; killed (SIGKILL) if a test fails half-way.
struct Daemon {
    child: Option<Child>,
    base: String,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let backend = std::env::var("NETTOP_BACKEND").unwrap_or_else(|_| "auto".into());
        let child = Command::new(bin())
            .args(["--backend", &backend, "serve", "--listen", &listen])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nettop serve");
        let d = Daemon { child: Some(child), base: format!("http://{listen}") };
        wait_until("nettop serve's /healthz", Duration::from_secs(60), || {
            get(&format!("{}/healthz", d.base)).ok()
        });
        d
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn get(&self, path: &str) -> String {
        get(&format!("{}{path}", self.base)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// SIGTERM, as systemd would: a clean exit, status 0.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_until("nettop serve to exit", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        });
        assert!(status.success(), "nettop serve exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Debian's Prometheus, scraping `target` every second, its data in `dir`.
struct Prometheus {
    child: Child,
    base: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let exe = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Prometheus is not installed (apt-get install prometheus; tests/run does)");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: nettop\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, base: format!("http://{listen}") };
        wait_until("Prometheus to be ready", Duration::from_secs(60), || {
            get(&format!("{}/-/ready", p.base)).ok()
        });
        p
    }

    /// The value of an instant query that returns one sample; None while
    /// it returns none.
    fn value(&self, query: &str) -> Option<f64> {
        let body = ureq::get(format!("{}/api/v1/query", self.base))
            .query("query", query)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        assert_eq!(v["status"], "success", "{body}");
        let result = v["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "one sample wanted: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    fn wait_for_value(&self, query: &str, want: f64) {
        let mut last = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            last = self.value(query);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{query}: wanted {want}, Prometheus last said {last:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MIB: usize = 1 << 20;

/// Sends exactly 1 MiB to `port` from a process whose name is the script's
/// file name (the kernel names a process after the script it executes).
fn send_mib_as(script: &Path, port: u16, listener: &TcpListener) {
    let mut child = Command::new(script).arg(port.to_string()).spawn().expect("run the sender");
    let (mut s, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), MIB);
    assert!(child.wait().unwrap().success());
}

#[test]
fn prometheus_sees_exactly_the_mebibyte_a_named_process_sent() {
    let _g = serial();
    let dir = tempdir("prometheus");
    let sender = dir.join("nt-mib-sender");
    std::fs::write(
        &sender,
        "#!/usr/bin/python3\nimport socket, sys\n\
         s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
         s.sendall(b'x' * (1 << 20))\ns.close()\n",
    )
    .unwrap();
    std::fs::set_permissions(&sender, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let daemon = Daemon::start(&[]);
    let prom = Prometheus::start(&dir, daemon.base.trim_start_matches("http://"));
    prom.wait_for_value("up{job=\"nettop\"}", 1.0);

    let sent = "sum(nettop_sent_bytes_total{process=\"nt-mib-sender\"})";
    send_mib_as(&sender, port, &listener);
    prom.wait_for_value(sent, MIB as f64);
    // The first connection has closed and left the table: its bytes stay,
    // and the second adds exactly its own.
    std::thread::sleep(Duration::from_secs(6)); // past the 5 s linger
    send_mib_as(&sender, port, &listener);
    prom.wait_for_value(sent, 2.0 * MIB as f64);
    prom.wait_for_value(
        "sum(nettop_connections_opened_total{process=\"nt-mib-sender\",direction=\"outgoing\"})",
        2.0,
    );
    prom.wait_for_value("sum(nettop_connections_closed_total{process=\"nt-mib-sender\"})", 2.0);
    prom.wait_for_value("sum(nettop_received_bytes_total{process=\"nt-mib-sender\"})", 0.0);
    // Over the whole run, as a dashboard would ask it.
    prom.wait_for_value(
        &format!("max_over_time({sent}[5m:1s]) - min_over_time({sent}[5m:1s])"),
        MIB as f64,
    );
    prom.wait_for_value("nettop_tracer", 1.0);
    drop(prom);
    daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_endpoint_has_the_same_exact_totals_as_list_json() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let daemon = Daemon::start(&[]);
    client.write_all(&[1u8; 12345]).unwrap();
    let mut buf = vec![0u8; 54321];
    server.read_exact(&mut buf[..12345]).unwrap();
    server.write_all(&[2u8; 54321]).unwrap();
    client.read_exact(&mut buf).unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), server.local_addr().unwrap().port());
    // `list` starts from the kernel's tcp_info: let it come to rest.
    exactness::wait_acked(&[((cport, sport), 12345 + 1), ((sport, cport), 54321)]);
    let find = |json: &str| -> (u64, u64) {
        let all: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        let c = all
            .iter()
            .find(|c| c["lport"] == cport && c["rport"] == sport)
            .unwrap_or_else(|| panic!("no {cport}->{sport} in {json}"));
        (c["bytes_sent"].as_u64().unwrap(), c["bytes_recv"].as_u64().unwrap())
    };
    let served = find(&daemon.get("/connections"));
    let listed = Command::new(bin()).args(["list", "--json"]).output().unwrap();
    assert!(listed.status.success());
    let listed = find(&String::from_utf8(listed.stdout).unwrap());
    // The daemon started after the connection opened: it counts from then
    // on, yet exactly, as `list` does.
    assert_eq!(served, (12345, 54321));
    assert_eq!(listed, served);

    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    for key in ["backend", "offsets", "verified", "stats", "label_sets", "label_sets_limit"] {
        assert!(status.get(key).is_some(), "/status has no {key}: {status}");
    }
    // The listing above was timed: the tracer's lock was held that long.
    assert!(status["longest_listing_ms"].as_f64().unwrap() > 0.0, "{status}");
    assert_eq!(status["stats"]["events_lost"], 0);
    let missing = ureq::get(format!("{}/nothing", daemon.base)).call();
    assert!(matches!(missing, Err(ureq::Error::StatusCode(404))), "{missing:?}");
    daemon.stop();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

#[test]
fn twenty_thousand_short_connections_keep_series_capped_and_memory_flat() {
    let _g = serial();
    const CAP: usize = 40;
    let daemon = Daemon::start(&["--max-series", "40", "--linger", "1", "--labels", "port"]);
    // 100 listening ports below the ephemeral range: 100 label values for
    // `port`, more than the cap allows. (Nothing else on the host sends to
    // them; the sum below relies on it.)
    let listeners: Vec<TcpListener> = (0..400u16)
        .filter_map(|i| TcpListener::bind(("127.0.0.1", 21000 + i)).ok())
        .take(100)
        .collect();
    assert_eq!(listeners.len(), 100, "could not find 100 free ports from 21000");
    let mut rss = Vec::new();
    let mut sent = 0u64;
    for round in 0..4 {
        for i in 0..5000 {
            let l = &listeners[i % listeners.len()];
            let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"0123456789").unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).unwrap();
            sent += 10;
        }
        // Past the linger: the closed connections have left the table.
        std::thread::sleep(Duration::from_millis(2500));
        let text = daemon.get("/metrics");
        let sets = metric(&text, "nettop_label_sets") as usize;
        let series = text.lines().filter(|l| l.starts_with("nettop_sent_bytes_total{")).count();
        assert!(sets <= CAP + 1 && series == sets, "round {round}: {sets} sets, {series} series");
        // Folding loses no byte: our ports' sets plus the overflow hold
        // exactly what was sent to them.
        let ours: f64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("nettop_sent_bytes_total{port=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter(|(port, _)| {
                *port == "_overflow"
                    || port.parse::<u16>().is_ok_and(|p| (21000..21400).contains(&p))
            })
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .sum();
        assert_eq!(ours as u64, sent, "round {round}");
        assert!(text.contains("port=\"_overflow\""), "no overflow series");
        rss.push(rss_kib(daemon.pid()));
    }
    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    assert_eq!(status["stats"]["events_lost"], 0, "{status}");
    eprintln!("nettop serve RSS after each 5000 connections (KiB): {rss:?}");
    // Flat: the last three rounds add (almost) nothing to what the first
    // one settled at.
    let growth = rss[3].saturating_sub(rss[1]);
    assert!(growth < 2048, "RSS grew by {growth} KiB from 10 000 to 20 000 connections: {rss:?}");
    daemon.stop();
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let _g = serial();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let dir = tempdir("bad");
    let not_socket = dir.join("file");
    std::fs::write(&not_socket, "x").unwrap();
    let cases: [(&[&str], i32, &str); 6] = [
        (&["serve", "--listen", &busy], 1, "cannot listen on"),
        (&["serve", "--listen", "localhost:80:1"], 2, "--listen"),
        (&["serve", "--listen", "999.1.1.1:9633"], 2, "--listen"),
        (&["serve", "--labels", "process,pid"], 2, "unknown label `pid`"),
        (&["serve", "--max-series", "0"], 2, "--max-series"),
        (&["serve", "--unix", not_socket.to_str().unwrap()], 1, "is not a socket"),
    ];
    for (args, code, text) in cases {
        let out = Command::new(bin()).args(args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_unix_socket_is_private_and_serves_the_same() {
    let _g = serial();
    let dir = tempdir("unix");
    let path = dir.join("nettop.sock");
    let daemon = Daemon::start(&["--unix", path.to_str().unwrap()]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok\n"), "{reply}");
    daemon.stop();
    assert!(!path.exists(), "the socket file is removed on exit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` short connections to `listener`, one after another: the i-th client
/// sends `up(i)` bytes, the server answers `down(i)`, both close. Returns
/// each end's (local port, remote port) and the (sent, received) it must
/// report. Ports come back (the server closes first), sizes do not.
fn short_connections(
    listener: &TcpListener,
    n: usize,
    up: impl Fn(usize) -> usize,
    down: impl Fn(usize) -> usize + Send + Copy + 'static,
) -> Vec<Row> {
    let server_port = listener.local_addr().unwrap().port();
    let l = listener.try_clone().unwrap();
    let up_sizes: Vec<usize> = (0..n).map(&up).collect();
    let server = std::thread::spawn(move || {
        for (i, want) in up_sizes.into_iter().enumerate() {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = vec![0u8; want];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&vec![2u8; down(i)]).unwrap();
        }
    });
    let mut want = Vec::new();
    for i in 0..n {
        let mut c = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
        c.write_all(&vec![1u8; up(i)]).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), down(i));
        let cport = c.local_addr().unwrap().port();
        want.push(((cport, server_port), (up(i) as u64, down(i) as u64)));
        want.push(((server_port, cport), (down(i) as u64, up(i) as u64)));
    }
    server.join().unwrap();
    want
}

/// A connection end: (local port, remote port), (sent, received).
type Row = ((u16, u16), (u64, u64));

fn row(c: &serde_json::Value) -> Row {
    let port = |k: &str| c[k].as_u64().unwrap() as u16;
    let count = |k: &str| c[k].as_u64().unwrap();
    ((port("lport"), port("rport")), (count("bytes_sent"), count("bytes_recv")))
}

/// Rows of a `?client_id=` reply that belong to `port`'s connections.
fn rows_of(reply: &serde_json::Value, port: u16) -> Vec<&serde_json::Value> {
    reply["connections"]
        .as_array()
        .expect("a connections array")
        .iter()
        .filter(|c| c["lport"] == port || c["rport"] == port)
        .collect()
}

/// Until the daemon lists every end in `ends` as closed (closed ones linger
/// 5 s by default): the tracer has seen each close.
fn wait_all_closed(daemon: &Daemon, ends: &[Row]) {
    wait_until("every short connection closed", Duration::from_secs(60), || {
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&daemon.get("/connections")).unwrap();
        let closed: std::collections::HashSet<Row> =
            all.iter().filter(|c| c["state"] == "closed").map(row).collect();
        ends.iter().all(|e| closed.contains(e)).then_some(())
    });
}

/// The sum of a labelled counter over its label sets.
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The agent contract: a client polling `/connections?client_id=a` every
/// 10 s while 1 000 short connections of known sizes open and close between
/// its polls receives each end exactly once, closed, with its exact totals;
/// a second client polling at another pace gets the same set.
#[test]
fn agents_receive_each_short_connection_once_with_exact_totals() {
    let _g = serial();
    let daemon = Daemon::start(&[]);
    let poll = |id: &str| -> serde_json::Value {
        serde_json::from_str(&daemon.get(&format!("/connections?client_id={id}"))).unwrap()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(poll("a")["first"], true);
    assert_eq!(poll("b")["first"], true);
    let mut last_a = Instant::now();
    let mut want = Vec::new();
    let mut got: [Vec<Row>; 2] = Default::default();
    let mut take = |which: usize, reply: &serde_json::Value| {
        assert_eq!(reply["first"], false);
        assert_eq!(reply["dropped"], 0, "{}", reply["dropped"]);
        for c in rows_of(reply, port) {
            assert_eq!(c["state"], "closed", "only finished connections between polls: {c}");
            got[which].push(row(c));
        }
    };
    for round in 0..2 {
        let ends = short_connections(
            &listener,
            500,
            move |i| 100 + 3 * i + round,
            move |i| 7000 + 11 * i + round,
        );
        wait_all_closed(&daemon, &ends);
        want.extend(ends);
        // Every 10 s, as an agent would.
        std::thread::sleep(Duration::from_secs(10).saturating_sub(last_a.elapsed()));
        last_a = Instant::now();
        take(0, &poll("a"));
    }
    take(1, &poll("b"));
    assert_eq!(want.len(), 2000, "1 000 connections, two ends each");
    // Sizes are unique, so equal sorted lists are each end exactly once,
    // with its exact totals.
    want.sort_unstable();
    for (which, name) in [(0, "a"), (1, "b")] {
        got[which].sort_unstable();
        let missing: Vec<_> = want.iter().filter(|w| !got[which].contains(w)).take(5).collect();
        assert!(
            got[which] == want,
            "client {name}: {} rows for 2000 ends; missing or inexact, first few: {missing:?}",
            got[which].len()
        );
    }
    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    assert_eq!(status["clients"]["count"], 2, "{status}");
    assert_eq!(status["clients"]["dropped"], 0, "{status}");
    daemon.stop();
}

/// A client too slow for its buffer gets the newest closed connections,
/// exact, and is told how many it missed; /status counts them too.
#[test]
fn an_over_slow_agent_hits_the_bound_and_is_told() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // No linger: what the buffer drops cannot come back through the listing.
    // Only this port: the test's own HTTP polls are connections too.
    let filter = format!("port:{port}");
    let daemon = Daemon::start(&[
        "--client-buffer",
        "100",
        "--linger",
        "0",
        "--max-clients",
        "1",
        "--filter",
        &filter,
    ]);
    let poll = || -> serde_json::Value {
        serde_json::from_str(&daemon.get("/connections?client_id=slow")).unwrap()
    };
    assert_eq!(poll()["first"], true);
    let want = short_connections(&listener, 300, |i| 50 + i, |i| 900 + i);
    // Every close has reached the agents' buffers once the exporter, fed by
    // the same loop, has counted it (the filter keeps only this port's).
    wait_until("the daemon to count 600 closed ends", Duration::from_secs(60), || {
        let text = daemon.get("/metrics");
        (sum_of(&text, "nettop_connections_closed_total") >= 600.0).then_some(())
    });
    let reply = poll();
    let rows = rows_of(&reply, port);
    assert_eq!(rows.len(), 100, "the buffer's newest 100 ends");
    let dropped = reply["dropped"].as_u64().unwrap();
    assert_eq!(dropped, 500, "600 ends closed, 100 kept");
    for c in rows {
        assert!(want.contains(&row(c)), "not one of the ends, or inexact: {c}");
    }
    assert_eq!(poll()["dropped"], 0, "a drop is reported once");
    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    assert!(status["clients"]["dropped"].as_u64().unwrap() >= dropped, "{status}");
    // Bad ids and too many clients are refused, not served.
    let bad = ureq::get(format!("{}/connections?client_id=a%20b", daemon.base)).call();
    assert!(matches!(bad, Err(ureq::Error::StatusCode(400))), "{bad:?}");
    let second = ureq::get(format!("{}/connections?client_id=other", daemon.base)).call();
    assert!(matches!(second, Err(ureq::Error::StatusCode(503))), "{second:?}");
    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    assert_eq!(status["clients"]["refused"], 1, "{status}");
    daemon.stop();
}

/// A connection in a network namespace made after `serve` confined itself
/// (tests/support: a thread of this test holds the namespace, as a
/// container's process would): nettop has dropped CAP_SYS_ADMIN, so its
/// helper enters the namespace, and finds who accepted the connection.
#[test]
fn a_namespace_made_after_start_is_read_through_the_helper() {
    let _g = serial();
    let daemon = Daemon::start(&[]);
    let status: serde_json::Value = serde_json::from_str(&daemon.get("/status")).unwrap();
    assert!(status["protections"]["helper"]["pid"].as_u64().is_some(), "{status}");
    let (tx, rx) = std::sync::mpsc::channel();
    let (keep, done) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // SAFETY: affects only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let up = Command::new("ip").args(["link", "set", "lo", "up"]).status();
        assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
        use std::os::unix::fs::MetadataExt;
        let netns = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1u8; 3333]).unwrap();
        let mut buf = vec![0u8; 4444];
        server.read_exact(&mut buf[..3333]).unwrap();
        server.write_all(&[2u8; 4444]).unwrap();
        client.read_exact(&mut buf).unwrap();
        let ports = (client.local_addr().unwrap().port(), server.local_addr().unwrap().port());
        tx.send((ports, netns)).unwrap();
        let _ = done.recv();
    });
    let ((cport, sport), netns) = rx.recv().unwrap();
    let ends =
        wait_until("both ends, exact, the accepting one named", Duration::from_secs(20), || {
            let all: Vec<serde_json::Value> =
                serde_json::from_str(&daemon.get("/connections")).ok()?;
            let end = |l: u16, r: u16| {
                all.iter()
                    .find(|c| c["lport"] == l && c["rport"] == r && c["netns"] == netns)
                    .cloned()
            };
            let (c, s) = (end(cport, sport)?, end(sport, cport)?);
            let exact = |c: &serde_json::Value, sent: u64, recv: u64| {
                c["bytes_sent"] == sent && c["bytes_recv"] == recv
            };
            (exact(&c, 3333, 4444) && exact(&s, 4444, 3333) && s["pid"] == std::process::id())
                .then_some((c, s))
        });
    assert_eq!(ends.0["pid"], std::process::id(), "{ends:?}");
    drop(keep);
    daemon.stop();
}

/// The status line of the answer to `raw`, sent on a connection of its own.
fn status_line(base: &str, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (431) and close before taking it all.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
}

/// Hostile clients, on loopback: a thousand connections held open, some
/// with half a request sent (slowloris), do not keep `/metrics` from
/// answering within a second, and are closed once their time for a
/// request head is up; an oversized request line or header is refused
/// (431); anything but GET gets 405, an unknown path 404.
#[test]
fn hostile_clients_do_not_stop_the_scrape() {
    let _g = serial();
    let daemon = Daemon::start(&[]);
    let addr = daemon.base.trim_start_matches("http://").to_owned();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).unwrap();
            if i % 2 == 1 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            }
            s
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let text = daemon.get("/metrics");
        slowest = slowest.max(t.elapsed());
        assert!(text.contains("nettop_"), "{text}");
    }
    eprintln!("the slowest of 5 scrapes beside 1000 idle clients: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    // Their time is up: the server closes them (bounded wait).
    let mut first = idle.into_iter().next().unwrap();
    first.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 64];
    let t = Instant::now();
    let closed =
        matches!(first.read(&mut buf), Ok(0) | Err(_)) && t.elapsed() < Duration::from_secs(15);
    assert!(closed, "an idle client was not closed in {:?}", t.elapsed());

    let long_line =
        [b"GET /".to_vec(), vec![b'a'; 100_000], b" HTTP/1.1\r\n\r\n".to_vec()].concat();
    assert!(status_line(&daemon.base, &long_line).contains(" 431 "), "a 100 kB request line");
    let long_header =
        [b"GET /metrics HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; 100_000], b"\r\n\r\n".to_vec()]
            .concat();
    assert!(status_line(&daemon.base, &long_header).contains(" 431 "), "a 100 kB header");
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
    assert!(status_line(&daemon.base, many.as_bytes()).contains(" 431 "), "200 headers");
    let req = |line: &str| format!("{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status_line(&daemon.base, req("POST /metrics").as_bytes()).contains(" 405 "));
    assert!(status_line(&daemon.base, req("GET /etc/passwd").as_bytes()).contains(" 404 "));
    assert!(status_line(&daemon.base, req("GET /healthz").as_bytes()).contains(" 200 "));
    daemon.stop();
}

/// A python3 process that opens `pairs` loopback connections to
/// listeners of its own and holds both ends until its stdin closes:
/// 20 000 descriptors a process is all root gets here (no
/// CAP_SYS_RESOURCE), so a flood takes several.
struct Flooder(Child);

impl Flooder {
    fn start(pairs: usize) -> Flooder {
        const SCRIPT: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
listeners = [socket.socket() for _ in range(8)]
for l in listeners:
    l.bind(("127.0.0.31", 0))
    l.listen(4096)
held = []
for i in range(int(sys.argv[1])):
    l = listeners[i % 8]
    held.append(socket.create_connection(l.getsockname()))
    held.append(l.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"#;
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT, &pairs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (tests/run installs it)");
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the flooder failed");
        Flooder(child)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_of(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_str(&daemon.get("/status")).unwrap()
}

/// Floods from a local user and from `serve`'s clients, on loopback:
/// connections opened and held until far past `--max-connections` leave
/// the table at its bound and nettop's memory flat, every refusal counted
/// (`table_full`, the "tracer" evictions); clients that ask for
/// `/connections` and never read hold at most `MAX_LISTINGS` answers, the
/// others wait then get 503, and `/metrics` answers meanwhile.
#[test]
fn a_connection_flood_and_listings_nobody_reads_keep_memory_bounded() {
    let _g = serial();
    const MAX: u64 = 8000;
    let daemon = Daemon::start(&["--max-connections", &MAX.to_string()]);
    let mut held = Vec::new();
    let mut rss = Vec::new();
    // Four rounds of 4 500 connections (9 000 ends) held open: the first
    // fills the table, the other three are refused.
    for round in 0..4 {
        held.push(Flooder::start(4500));
        // A refresh or two: the kernel's table read, the accepts resolved.
        std::thread::sleep(Duration::from_millis(2500));
        let status = status_of(&daemon);
        let open = status["stats"]["connections_open"].as_u64().unwrap();
        assert!(open <= MAX, "round {round}: {open} open past the bound: {status}");
        rss.push(rss_kib(daemon.pid()));
    }
    let status = status_of(&daemon);
    let stats = &status["stats"];
    // Refused by the kernel's table or by the tracer's (which one depends
    // on the backend: kprobe and fentry report a connection the kernel's
    // table refused, and the tracer's refuses it in turn).
    let refused: u64 = ["sock_map_full", "conn_map_full", "table_full"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap())
        .sum();
    assert!(refused >= 27_000, "36 000 ends, {MAX} tracked, the rest refused: {stats}");
    let metrics = daemon.get("/metrics");
    let evictions: f64 = ["connections", "sockets", "tracer"]
        .iter()
        .map(|t| metric(&metrics, &format!("nettop_evictions_total{{table=\"{t}\"}}")))
        .sum();
    assert!(evictions as u64 >= refused, "the scrape's evictions: {evictions}, {stats}");
    eprintln!("nettop serve RSS after each 9 000 ends held (KiB): {rss:?}; {stats}");
    // Flat once the table is full: 18 000 more ends held add (almost)
    // nothing; tracked, they would add some 18 MB.
    let growth = rss[3].saturating_sub(rss[1]);
    assert!(growth < 4096, "RSS grew by {growth} KiB from 18 000 to 36 000 ends: {rss:?}");

    // Six clients ask for the listing (some thousands of rows, megabytes)
    // and never read it.
    let listing_bytes = daemon.get("/connections").len();
    let addr = daemon.base.trim_start_matches("http://").to_owned();
    let mut slow: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /connections HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    let sending = |d: &Daemon| status_of(d)["listings"]["sending"].as_u64().unwrap();
    while sending(&daemon) < 4 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let scrape = Instant::now();
    assert!(daemon.get("/metrics").contains("nettop_"));
    let scrape = scrape.elapsed();
    // The two beyond the bound waited, then were told to come back.
    std::thread::sleep(Duration::from_secs(6));
    let status = status_of(&daemon);
    assert_eq!(status["listings"]["sending"], 4, "held by clients that do not read: {status}");
    assert_eq!(status["listings"]["refused"], 2, "{status}");
    let rss_held = rss_kib(daemon.pid());
    let mut heads = Vec::new();
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        heads.push(String::from_utf8_lossy(&head).into_owned());
    }
    heads.sort();
    assert_eq!(
        heads,
        [
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 503",
            "HTTP/1.1 503"
        ]
    );
    eprintln!(
        "a listing of {listing_bytes} B; with 4 held unread RSS {rss_held} KiB; a scrape meanwhile took {scrape:?}"
    );
    assert!(scrape < Duration::from_secs(1), "{scrape:?}");
    // Once they go, listings are answered again.
    drop(slow);
    let t = Instant::now();
    while sending(&daemon) > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "slots not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows: serde_json::Value = serde_json::from_str(&daemon.get("/connections")).unwrap();
    assert!(rows.as_array().unwrap().len() as u64 <= MAX + 10_000, "open and lingering closed");
    drop(held);
    daemon.stop();
}
