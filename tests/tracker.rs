//! The connection tracker end to end, as root, on the running kernel: the
//! `nettop::Tracer` library in this process watching traffic this process
//! makes. NETTOP_BACKEND picks the backend (default auto), so the same tests
//! run inside the qemu VMs once per backend.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nettop::tracer::{Connection, Direction, Event, EventKind, State};
use nettop::{Config, Tracer};

#[path = "support/common.rs"]
mod common;
use common::{exchange, ipv6_enabled, serial};
#[path = "support/exactness.rs"]
mod exactness;
use exactness::wait_acked;
#[path = "support/netem.rs"]
mod netem;
#[path = "support/screen.rs"]
mod screen;
#[path = "support/watch.rs"]
mod watch;
use watch::{Watch, backend_choice, closes};

fn entry(conns: &[Connection], proto: &str, lport: u16, rport: u16) -> Connection {
    conns
        .iter()
        .find(|c| {
            format!("{:?}", c.tuple.proto).eq_ignore_ascii_case(proto)
                && c.tuple.lport == lport
                && c.tuple.rport == rport
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {proto} entry {lport} -> {rport} in {conns:#?}"))
}

fn our_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim().to_owned()
}

fn check_tcp_exact(listen: &str, family: u8) {
    let _g = serial();
    let w = Watch::start();
    let (cport, sport) = exchange(listen, 512, 32768);
    w.wait_for("both closes", |e| {
        !closes(e, cport, sport).is_empty() && !closes(e, sport, cport).is_empty()
    });
    let (conns, events, stats) = w.finish();
    let me = std::process::id();
    let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
    for (lport, rport, sent, recv, dir, open_kind) in [
        (cport, sport, 512, 32768, Direction::Outgoing, EventKind::Connect),
        (sport, cport, 32768, 512, Direction::Incoming, EventKind::Accept),
    ] {
        let c = entry(&conns, "tcp", lport, rport);
        let what = format!("{c:?}; {stats:?}");
        assert_eq!((c.bytes_sent, c.bytes_recv), (sent, recv), "{what}");
        assert_eq!(c.direction, dir, "{c:?}");
        assert_eq!((c.owner.pid, c.tuple.family, c.tuple.netns), (me, family, netns), "{c:?}");
        assert_eq!(c.owner.comm, our_comm());
        assert_eq!(c.state, State::Closed);
        let close = closes(&events, lport, rport);
        assert_eq!(close.len(), 1, "exactly one close: {close:?}");
        // The close carries the final totals, whatever they are.
        assert_eq!(
            (close[0].bytes_sent, close[0].bytes_recv),
            (Some(c.bytes_sent), Some(c.bytes_recv))
        );
        let opened = events.iter().filter(|e| {
            e.event == open_kind
                && e.conn.as_ref().is_some_and(|c| c.tuple.lport == lport && c.tuple.rport == rport)
        });
        assert_eq!(opened.count(), 1, "one {open_kind:?} for {lport}->{rport}");
    }
    assert_eq!((stats.events_lost, stats.events_dropped), (0, 0));
}

#[test]
fn tcp_v4_exact_bytes_direction_owner_and_one_close() {
    check_tcp_exact("127.0.0.7:0", 4);
}

#[test]
fn tcp_v6_exact_bytes_direction_owner_and_one_close() {
    if ipv6_enabled() {
        check_tcp_exact("[::1]:0", 6);
    }
}

#[test]
fn udp_connected_and_unconnected_exact_bytes() {
    let _g = serial();
    // Long enough that no pause of an emulated VM ends the flow mid-test.
    let w = Watch::with(Config { udp_timeout: Duration::from_secs(3), ..Config::default() });
    let backend_seen = w.tracer.info().backend;
    // An unconnected server answering with sendto, a connected client.
    let server = UdpSocket::bind("127.0.0.8:0").unwrap();
    let saddr = server.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.9:0").unwrap();
    client.connect(saddr).unwrap();
    let caddr = client.local_addr().unwrap();
    for _ in 0..3 {
        client.send(&[1u8; 300]).unwrap();
        let mut buf = [0u8; 2000];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (300, caddr));
        server.send_to(&[2u8; 1200], from).unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), 1200);
    }
    // Idle past the UDP timeout: each flow ends like a TCP close.
    w.wait_for("the client flow's close", |e| !closes(e, caddr.port(), saddr.port()).is_empty());
    drop((client, server));
    std::thread::sleep(Duration::from_millis(300));
    let (conns, events, _) = w.finish();
    let c = entry(&conns, "udp", caddr.port(), saddr.port());
    assert_eq!((c.bytes_sent, c.bytes_recv, c.msgs_sent, c.msgs_recv), (900, 3600, 3, 3), "{c:?}");
    let close = closes(&events, caddr.port(), saddr.port());
    assert_eq!(close.len(), 1);
    assert_eq!((close[0].bytes_sent, close[0].bytes_recv), (Some(900), Some(3600)));
    // The server's side: per peer where the backend sees sendto's address,
    // else per socket with the remote "*".
    let s = conns
        .iter()
        .find(|c| {
            c.tuple.lport == saddr.port()
                && (c.tuple.rport == caddr.port() || c.tuple.raddr.is_none())
        })
        .unwrap_or_else(|| panic!("no server entry in {conns:#?}"));
    assert_eq!((s.bytes_sent, s.bytes_recv), (3600, 900), "{s:?}");
    if backend_seen != nettop::probe::Backend::Tracepoint {
        // kprobe/fentry read sendto's and recvfrom's address: per peer.
        assert_eq!(
            (s.tuple.remote(), s.tuple.rport),
            ("127.0.0.9".to_owned() + &format!(":{}", caddr.port()), caddr.port()),
            "{s:?}"
        );
    }
}

#[test]
fn a_udp_flow_ends_when_its_socket_closes_where_the_backend_sees_it() {
    let _g = serial();
    let w = Watch::with(Config { udp_timeout: Duration::from_secs(120), ..Config::default() });
    let backend_seen = w.tracer.info().backend;
    let server = UdpSocket::bind("127.0.0.17:0").unwrap();
    let client = UdpSocket::bind("127.0.0.17:0").unwrap();
    client.connect(server.local_addr().unwrap()).unwrap();
    client.send(&[5u8; 64]).unwrap();
    let mut buf = [0u8; 64];
    server.recv_from(&mut buf).unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), server.local_addr().unwrap().port());
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    if backend_seen == nettop::probe::Backend::Tracepoint {
        // No tracepoint shows a UDP socket's end: only the idle timeout does.
        std::thread::sleep(Duration::from_millis(1500));
        let (conns, events, _) = w.finish();
        assert!(closes(&events, cport, sport).is_empty());
        assert_eq!(entry(&conns, "udp", cport, sport).state, State::Open);
    } else {
        w.wait_for("the close of a closed UDP socket", |e| !closes(e, cport, sport).is_empty());
        let (_, events, _) = w.finish();
        let c = closes(&events, cport, sport);
        assert_eq!((c.len(), c[0].bytes_sent), (1, Some(64)));
    }
}

#[test]
fn peeked_bytes_are_not_counted() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.18:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (srv, _) = listener.accept().unwrap();
    client.write_all(&[3u8; 1000]).unwrap();
    let mut buf = [0u8; 1000];
    let mut peeked = 0;
    while peeked < 1000 {
        peeked = srv.peek(&mut buf).unwrap();
    }
    (&srv).read_exact(&mut buf).unwrap();
    let (sport, cport) = (srv.local_addr().unwrap().port(), client.local_addr().unwrap().port());
    drop((client, srv));
    w.wait_for("the server's close", |e| !closes(e, sport, cport).is_empty());
    let (_, events, _) = w.finish();
    assert_eq!(closes(&events, sport, cport)[0].bytes_recv, Some(1000));
}

#[test]
fn failed_connect_is_reported_never_as_a_connection() {
    let _g = serial();
    let w = Watch::start();
    // A port nothing listens on: bind and drop a listener to find one.
    let port = TcpListener::bind("127.0.0.10:0").unwrap().local_addr().unwrap().port();
    let err = TcpStream::connect(("127.0.0.10", port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    w.wait_for("connect_failed", |e| {
        e.iter().any(|e| {
            e.event == EventKind::ConnectFailed
                && e.conn.as_ref().is_some_and(|c| c.tuple.rport == port)
        })
    });
    let (conns, events, _) = w.finish();
    assert!(!conns.iter().any(|c| c.tuple.rport == port), "a failed connect became a connection");
    assert!(!events.iter().any(|e| {
        matches!(e.event, EventKind::Connect | EventKind::Close)
            && e.conn.as_ref().is_some_and(|c| c.tuple.rport == port)
    }));
}

#[test]
fn a_burst_of_5000_connections_is_seen_whole() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.11:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const N: usize = 5000;
    let server = std::thread::spawn(move || {
        for _ in 0..N {
            let (mut c, _) = listener.accept().unwrap();
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            c.write_all(&[9u8; 5]).unwrap();
        }
    });
    let mut ports = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"abc").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        ports.push(c.local_addr().unwrap().port());
    }
    server.join().unwrap();
    let count = |e: &[Event]| e.iter().filter(|e| e.event == EventKind::Close).count();
    w.wait_for("every close", |e| count(e) >= 2 * N);
    let (_, events, stats) = w.finish();
    assert_eq!(
        (stats.events_lost, stats.events_dropped, stats.conn_map_full),
        (0, 0, 0),
        "{stats:?}"
    );
    // TCP totals are the kernel's own: exact, PREEMPT_RT included.
    let mut unexact = Vec::new();
    let mut client_closes = std::collections::HashMap::new();
    for e in events.iter().filter(|e| e.event == EventKind::Close) {
        let c = e.conn.as_ref().unwrap();
        if c.tuple.rport == addr.port() {
            if (e.bytes_sent, e.bytes_recv) != (Some(3), Some(5)) {
                // Everything seen of this client port, both ends, in order.
                let port = c.tuple.lport;
                let history: Vec<String> = events
                    .iter()
                    .filter_map(|e| {
                        let c = e.conn.as_ref()?;
                        (c.tuple.lport == port || c.tuple.rport == port).then(|| {
                            format!(
                                "{:?} id {:?} {}→{} {:?}/{:?} at {}",
                                e.event,
                                c.id,
                                c.tuple.lport,
                                c.tuple.rport,
                                e.bytes_sent,
                                e.bytes_recv,
                                e.ts_ns
                            )
                        })
                    })
                    .collect();
                unexact.push(format!("{e:?}\nport {port}: {history:#?}"));
            }
            *client_closes.entry(c.tuple.lport).or_insert(0) += 1;
        }
    }
    // Ports are reused across the burst; count closes per port.
    let mut expected = std::collections::HashMap::new();
    for p in &ports {
        *expected.entry(*p).or_insert(0) += 1;
    }
    assert!(
        unexact.is_empty(),
        "{} client closes without exactly 3/5 bytes: {}",
        unexact.len(),
        unexact.join("\n")
    );
    let odd: Vec<_> =
        expected.iter().filter(|(p, n)| client_closes.get(p) != Some(n)).take(5).collect();
    assert_eq!(client_closes, expected, "closes missing or extra for ports {odd:?}");
}

/// Run `f` on a thread in a fresh network namespace with loopback up.
/// The tables read without pause by another thread while small messages
/// go both ways. Each read is a bpf() syscall, and on PREEMPT_RT a task
/// preempted inside one holds the CPU's "a BPF program is running" mark:
/// the kernel then skips kprobe and tracepoint programs on that CPU (6.12
/// counts those skips; 6.1 reported none).
#[test]
fn counts_stay_exact_while_the_tables_are_read_without_pause() {
    let _g = serial();
    let w = Watch::start();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::black_box(w.tracer.connections());
                std::hint::black_box(w.tracer.stats());
                n += 1;
            }
            n
        });
        let listener = TcpListener::bind("127.0.0.19:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const CONNS: usize = 8;
        const ROUNDS: usize = 300;
        let server = scope.spawn(move || {
            for _ in 0..CONNS {
                let (mut c, _) = listener.accept().unwrap();
                let mut b = [0u8; 1];
                for _ in 0..ROUNDS {
                    c.read_exact(&mut b).unwrap();
                    c.write_all(&b).unwrap();
                }
            }
        });
        let mut ports = Vec::new();
        for _ in 0..CONNS {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            let mut b = [1u8; 1];
            for _ in 0..ROUNDS {
                c.write_all(&b).unwrap();
                c.read_exact(&mut b).unwrap();
            }
            ports.push(c.local_addr().unwrap().port());
        }
        server.join().unwrap();
        let sport = addr.port();
        w.wait_for("every close", |e| {
            ports
                .iter()
                .all(|&p| !closes(e, p, sport).is_empty() && !closes(e, sport, p).is_empty())
        });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap();
        (reads, ports, sport)
    });
    let (reads, ports, sport) = reads;
    let (_, events, stats) = w.finish();
    for p in ports {
        for (l, r) in [(p, sport), (sport, p)] {
            let c = closes(&events, l, r);
            let what = format!("{l}->{r} after {reads} table reads: {c:?}; {stats:?}");
            let got: Vec<_> = c.iter().map(|c| (c.bytes_sent, c.bytes_recv)).collect();
            assert_eq!(got, [(Some(300), Some(300))], "{what}");
        }
    }
    eprintln!("{reads} table reads while tracing");
}

/// `f`'s result from a thread in a new network namespace, and a handle
/// that keeps the thread (and so a process) in it until dropped.
fn in_netns_kept<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, std::sync::mpsc::Sender<()>) {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let out = in_new_netns_here(f);
        result_tx.send(out).unwrap();
        let _ = done_rx.recv();
    });
    (result_rx.recv().unwrap(), done_tx)
}

fn in_new_netns_here<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: affects only this thread.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
    let ok = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    assert!(ok.is_ok_and(|s| s.success()), "ip link set lo up");
    f()
}

#[test]
fn same_tuple_in_two_namespaces_is_two_connections() {
    let _g = serial();
    let w = Watch::start();
    // The same addresses and ports in the host and in a private namespace.
    let listen = "127.0.0.12:47001";
    let client_addr: SocketAddr = "127.0.0.13:47002".parse().unwrap();
    let run = move |up: usize| {
        let listener = TcpListener::bind(listen).unwrap();
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&client_addr.into()).unwrap();
        sock.connect(&listener.local_addr().unwrap().into()).unwrap();
        let mut client: TcpStream = sock.into();
        let (mut srv, _) = listener.accept().unwrap();
        client.write_all(&vec![1u8; up]).unwrap();
        let mut buf = vec![0u8; up];
        srv.read_exact(&mut buf).unwrap();
        // Keep both open: the tracer must still tell them apart.
        (client, srv, std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32)
    };
    let host = run(100);
    // The namespace keeps a thread in it, as a container keeps processes:
    // that is how nettop enters it to read its sockets' counters.
    let (private, resident) = in_netns_kept(move || run(200));
    std::thread::sleep(Duration::from_millis(700));
    let (conns, _, _) = w.finish();
    drop(resident);
    let mine: Vec<&Connection> =
        conns.iter().filter(|c| c.tuple.lport == 47002 && c.tuple.rport == 47001).collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let by_ns = |ns: u32| {
        mine.iter().find(|c| c.tuple.netns == ns).unwrap_or_else(|| panic!("netns {ns}: {mine:#?}"))
    };
    assert_eq!(by_ns(host.2).bytes_sent, 100);
    assert_eq!(by_ns(private.2).bytes_sent, 200);
    assert_ne!(host.2, private.2);
}

/// A connection opened and used before the tracer starts, then at rest.
#[test]
fn connections_older_than_the_tracer_are_listed_with_exact_totals() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.14:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut srv, _) = listener.accept().unwrap();
    client.write_all(&[1u8; 4321]).unwrap();
    let mut buf = vec![0u8; 4321];
    srv.read_exact(&mut buf).unwrap();
    srv.write_all(&[2u8; 1234]).unwrap();
    client.read_exact(&mut buf[..1234]).unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
    // At rest: the kernel has every byte acked (+1 for the client's SYN).
    // Under emulation an ACK can take far longer than any fixed sleep.
    wait_acked(&[((cport, sport), 4321 + 1), ((sport, cport), 1234)]);
    let (conns, _, _) = Watch::start().finish();
    let c = entry(&conns, "tcp", cport, sport);
    assert!(c.backfilled, "{c:?}");
    assert_eq!(
        (c.bytes_sent, c.bytes_recv, c.direction),
        (4321, 1234, Direction::Outgoing),
        "{c:?}"
    );
    let s = entry(&conns, "tcp", sport, cport);
    assert_eq!(
        (s.bytes_sent, s.bytes_recv, s.direction),
        (1234, 4321, Direction::Incoming),
        "{s:?}"
    );
    assert_eq!(c.owner.pid, std::process::id());
}

/// A connection older than the tracer that carries nothing while it runs,
/// then closes: it ends, with its whole life's totals, at both ends, and is
/// listed closed (the probe never knew the sockets: the kernel's counters
/// at the change to CLOSE say what they moved).
#[test]
fn an_older_idle_connection_ends_with_its_final_totals() {
    let _g = serial();
    let listener = TcpListener::bind("127.0.0.16:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut srv, _) = listener.accept().unwrap();
    client.write_all(&[1u8; 5555]).unwrap();
    let mut buf = vec![0u8; 5555];
    srv.read_exact(&mut buf).unwrap();
    srv.write_all(&[2u8; 777]).unwrap();
    client.read_exact(&mut buf[..777]).unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
    let w = Watch::start();
    assert!(
        w.tracer.connections().iter().any(|c| c.tuple.lport == cport && c.backfilled),
        "backfilled"
    );
    // Graceful: the client closes first, the server on reading its FIN.
    drop(client);
    assert_eq!(srv.read(&mut buf).unwrap(), 0);
    drop(srv);
    w.wait_for("both ends' closes", |e| {
        !closes(e, cport, sport).is_empty() && !closes(e, sport, cport).is_empty()
    });
    let (conns, events, _) = w.finish();
    let c = closes(&events, cport, sport);
    let s = closes(&events, sport, cport);
    assert_eq!((c.len(), s.len()), (1, 1), "{events:#?}");
    assert_eq!((c[0].bytes_sent, c[0].bytes_recv), (Some(5555), Some(777)), "{:?}", c[0]);
    assert_eq!((s[0].bytes_sent, s[0].bytes_recv), (Some(777), Some(5555)), "{:?}", s[0]);
    for (l, r) in [(cport, sport), (sport, cport)] {
        let e = entry(&conns, "tcp", l, r);
        assert_eq!(e.state, State::Closed, "{e:?}");
    }
}

/// A receiver that stops reading, for real: over the next interval its end
/// is marked (data waits unread), and the sender's end is marked too (the
/// peer's window is zero, its data waits unacknowledged) and is held back
/// by the receiver. Once the receiver reads, the marks go.
#[test]
fn a_receiver_that_stops_reading_marks_both_ends() {
    use nettop::tracer::health::SendLimit;
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.17:0").unwrap();
    common::small_receive_buffer(&listener);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut srv, _) = listener.accept().unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
    // More than the receiver takes, less than the sender's buffer (4 MiB
    // on loopback): the window, not the buffer, holds the sender.
    client.set_nonblocking(true).unwrap();
    let written = client.write(&vec![7u8; 1 << 20]).unwrap();
    // A read that finds both ends, the window closed, is the base; the read
    // an interval later judges it. (The tracepoint backend lists an
    // accepted end once its owner is known.)
    #[derive(PartialEq)]
    enum Window {
        Closed,
        Open,
    }
    let both_read = |window: Window| {
        let start = Instant::now();
        loop {
            let conns = w.tracer.connections();
            let tcp = |l| conns.iter().find(|c| c.tuple.lport == l).and_then(|c| c.tcp);
            // Under emulation the window can take a while to fill: until
            // it has, the sender's data is still being acknowledged.
            let closed = tcp(cport).is_some_and(|t| t.snd_wnd == Some(0));
            if tcp(sport).is_some() && closed == (window == Window::Closed) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "never read, or never settled");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    both_read(Window::Closed);
    std::thread::sleep(Duration::from_millis(1000));
    let conns = w.tracer.connections();
    let (c, s) = (entry(&conns, "tcp", cport, sport), entry(&conns, "tcp", sport, cport));
    let what = format!("wrote {written}\nclient {c:#?}\nserver {s:#?}");
    let ch = c.health.unwrap_or_else(|| panic!("no health: {what}"));
    assert!(ch.zero_window && ch.send_stalled && ch.marked(), "{what}");
    assert_eq!(ch.send_limit, Some(SendLimit::Receiver), "{what}");
    // The JSON of `list --json` and `/connections`.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["health"]["send_limit"], "receiver", "{json}");
    assert_eq!(json["health"]["zero_window"], true, "{json}");
    assert_eq!(json["tcp"]["snd_wnd"], 0, "{json}");
    let sh = s.health.unwrap_or_else(|| panic!("no health: {what}"));
    assert!(sh.recv_stalled && sh.marked() && !sh.zero_window, "{what}");
    // On screen, with the health columns: both marked, the sender held by
    // its receiver with its queue, the receiver's queue.
    let lines = screen::table(&w.tracer, vec![c.clone(), s.clone()], true, 160);
    let row = |arrow: char| {
        lines.iter().find(|l| l.contains(arrow) && l.contains("open")).cloned().unwrap_or_default()
    };
    let (sender, receiver) = (row('→'), row('←'));
    let queue = |n: u32| nettop::text::bytes_short(u64::from(n));
    let (send_q, recv_q) = (queue(c.tcp.unwrap().send_queue), queue(s.tcp.unwrap().recv_queue));
    assert!(sender.contains(" !") && sender.contains("receiver"), "{lines:#?}");
    assert!(sender.contains(&format!(" {send_q} ")), "SEND-Q {send_q}: {lines:#?}");
    assert!(receiver.contains(" !") && receiver.contains(&format!(" {recv_q} ")), "{lines:#?}");
    // The receiver reads it all; the next interval is healthy.
    srv.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; written];
    srv.read_exact(&mut buf).unwrap();
    both_read(Window::Open);
    std::thread::sleep(Duration::from_millis(1000));
    let conns = w.tracer.connections();
    for (l, r) in [(cport, sport), (sport, cport)] {
        let e = entry(&conns, "tcp", l, r);
        assert!(e.health.is_some_and(|h| !h.marked()), "{e:#?}");
    }
    w.finish();
}

/// Real delay and loss (netem on `lo` in namespaces of the test's own):
/// 25 ms each way gives an RTT within 20 % of 50 ms under a ping-pong, and
/// 10 % of packets dropped gives retransmits under 50 one-byte round trips
/// (a bulk transfer over `lo` is a handful of 64 KiB GSO packets), counted
/// exactly; both in the connection and on screen.
#[test]
fn netem_delay_and_loss_show_as_rtt_and_retransmits() {
    let _g = serial();
    let w = Watch::start();
    let Some((slow, lossy)) = netem::slow_and_lossy() else { return };
    let read = |link: &netem::Link| {
        let ours =
            |c: &Connection| c.tuple.netns == link.netns && c.tuple.lport == link.client_port;
        // The first read of it is the base; the one an interval later lists it.
        let start = Instant::now();
        while !w.tracer.connections().iter().any(|c| ours(c) && c.tcp.is_some()) {
            assert!(start.elapsed() < Duration::from_secs(60), "never read");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        w.tracer.connections().into_iter().find(|c| ours(c)).unwrap()
    };
    let (s, l) = (read(&slow), read(&lossy));
    let (st, lt) = (s.tcp.unwrap(), l.tcp.unwrap());
    assert!((40_000..=60_000).contains(&st.rtt_us), "RTT {} µs: {s:#?}", st.rtt_us);
    assert!(l.retransmits > 0 && lt.total_retrans == l.retransmits, "{l:#?}");
    assert_eq!((l.bytes_sent, l.bytes_recv), (50, 50), "exact through loss: {l:#?}");
    eprintln!("netem: RTT {} µs at 50 ms; {} retransmits at 10 % loss", st.rtt_us, l.retransmits);
    let lines = screen::table(&w.tracer, vec![s.clone(), l.clone()], true, 160);
    let row = |port: u16| {
        lines.iter().find(|r| r.contains(&format!(":{port} "))).cloned().unwrap_or_default()
    };
    let rtt = nettop::text::duration_us(st.rtt_us);
    assert!(row(slow.server_port).contains(&format!(" {rtt} ")), "RTT {rtt}: {lines:#?}");
    assert!(
        row(lossy.server_port).contains(&format!(" {} ", l.retransmits)),
        "RETRANS: {lines:#?}"
    );
    drop((slow, lossy));
    w.finish();
}

/// The process view's totals for this process equal the sum of its
/// connections' exact bytes, connections that closed and left the table
/// included (a 1 s linger here).
#[test]
fn the_process_view_keeps_the_bytes_of_closed_connections() {
    use nettop::ui::{App, Snapshot};
    let _g = serial();
    let tracer = Arc::new(
        Tracer::start(Config {
            backend: backend_choice(),
            linger: Duration::from_secs(1),
            ..Config::default()
        })
        .unwrap(),
    );
    let app = Arc::new(std::sync::Mutex::new(App::new(
        tracer.info().clone(),
        nettop::Filter::default(),
        nettop::ui::theme::Theme::plain(),
        0.25,
    )));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (tracer, app, stop) = (tracer.clone(), app.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let snap = Snapshot {
                    now_ns: nettop::tracer::monotonic_ns(),
                    conns: tracer.connections(),
                    stats: tracer.stats(),
                };
                app.lock().unwrap().ingest(snap);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let mut total = 0u64;
    let mut ends = Vec::new();
    for k in 1..=6usize {
        let (up, down) = (1000 * k + 1, 3000 * k + 7);
        ends.push(exchange("127.0.0.19:0", up, down));
        total += (up + down) as u64;
    }
    // Every end listed, closed, then gone from the table.
    let start = Instant::now();
    while tracer
        .connections()
        .iter()
        .any(|c| ends.iter().any(|e| c.tuple.lport == e.0 || c.tuple.lport == e.1))
        || start.elapsed() < Duration::from_secs(2)
    {
        assert!(start.elapsed() < Duration::from_secs(60), "the closed ends never left");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    let app = app.lock().unwrap();
    let me = app.ledger.processes.get(&std::process::id()).expect("this process in the view");
    // Both ends are this process's: it sent, and received, every byte.
    assert_eq!((me.sent, me.recv), (total, total), "{me:?}");
    assert!(me.connections >= 12, "{me:?}");
}

/// A listing holds the table's lock while it runs (here a consumer of
/// `for_each_connection` that takes its time; at 100 000 connections a
/// listing takes a few hundred milliseconds). The reader keeps taking
/// events from the ring buffer meanwhile, so a burst of 4 000 events then
/// loses none, with a ring of 512.
#[test]
fn a_burst_while_a_listing_holds_the_table_loses_nothing() {
    let _g = serial();
    let w = Watch::with(Config { ring_bytes: 65536, ..Config::default() });
    let listener = TcpListener::bind("127.0.0.23:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A connection to list, so that the listing has a row to dwell on.
    let _first = TcpStream::connect(addr).unwrap();
    let _first_accepted = listener.accept().unwrap();
    w.wait_for("the first connection", |e| e.iter().any(|e| e.event == EventKind::Connect));
    const N: usize = 1000;
    let mut ports = Vec::with_capacity(N);
    std::thread::scope(|scope| {
        let (held, holding) = std::sync::mpsc::channel();
        let (done, burst_over) = std::sync::mpsc::channel::<()>();
        let tracer = &w.tracer;
        scope.spawn(move || {
            let mut once = Some(held);
            tracer.for_each_connection(|_| {
                if let Some(held) = once.take() {
                    held.send(()).unwrap();
                    // Held until the burst is over (at most a minute).
                    let _ = burst_over.recv_timeout(Duration::from_secs(60));
                }
            });
        });
        holding.recv().unwrap();
        for _ in 0..N {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().unwrap();
            ports.push(c.local_addr().unwrap().port());
            drop((c, s));
        }
        // Then a little longer: the last events on their way.
        std::thread::sleep(Duration::from_millis(300));
        done.send(()).unwrap();
    });
    let sport = addr.port();
    // A client port can come round again within the burst (loopback
    // reuses ports in TIME_WAIT): one close per use.
    let mut uses = std::collections::HashMap::new();
    for &p in &ports {
        *uses.entry(p).or_insert(0) += 1;
    }
    let all_closed = |e: &[Event]| {
        uses.iter().all(|(&p, &n)| closes(e, p, sport).len() == n && closes(e, sport, p).len() == n)
    };
    let start = Instant::now();
    while !all_closed(&w.events()) && w.tracer.stats().events_lost == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", w.tracer.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, events, stats) = w.finish();
    assert_eq!(stats.events_lost, 0, "{stats:?}");
    assert!(all_closed(&events));
    assert!(events.iter().all(|e| !e.vanished));
}

/// Closes lost to a full ring buffer (forced: one page of it, under
/// churn) do not leave connections open: a refresh that no longer finds
/// them in the kernel's table ends them, marked as such.
#[test]
fn a_connection_whose_close_was_lost_ends_at_a_refresh() {
    let _g = serial();
    let w = Watch::with(Config { ring_bytes: 4096, ..Config::default() });
    let listener = TcpListener::bind("127.0.0.17:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const N: usize = 3000;
    let server = std::thread::spawn(move || {
        for _ in 0..N {
            let (mut c, _) = listener.accept().unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
        }
    });
    let mut ports = std::collections::HashSet::new();
    for _ in 0..N {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        ports.insert(c.local_addr().unwrap().port());
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    }
    server.join().unwrap();
    let start = Instant::now();
    let open_left = || {
        w.tracer
            .connections()
            .into_iter()
            .filter(|c| c.state == State::Open)
            .filter(|c| c.tuple.rport == addr.port() || c.tuple.lport == addr.port())
            .filter(|c| ports.contains(&c.tuple.lport) || ports.contains(&c.tuple.rport))
            .count()
    };
    while open_left() > 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "{} still open", open_left());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (conns, events, stats) = w.finish();
    assert!(stats.events_lost > 0, "no event was lost: the test proved nothing ({stats:?})");
    let vanished = conns.iter().filter(|c| c.vanished).count();
    assert!(vanished > 0, "none ended as vanished, {} lost events", stats.events_lost);
    // Each vanished end is an event too, marked so.
    let marked = events.iter().filter(|e| e.event == EventKind::Close && e.vanished).count();
    assert_eq!(marked, vanished, "{stats:?}");
    eprintln!("{} events lost, {vanished} connections ended as vanished", stats.events_lost);
}

/// A local user who opens connections without end: past
/// `max_connections` open, the kernel's tables and the tracer's own refuse
/// new ones and count each refusal (the TUI's "evicted"); once they close,
/// new connections are tracked again, exactly.
#[test]
fn past_max_connections_new_ones_are_refused_and_counted() {
    let _g = serial();
    const MAX: u32 = 64;
    let listener = TcpListener::bind("127.0.0.18:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = |n| -> Vec<(TcpStream, TcpStream)> {
        (0..n).map(|_| (TcpStream::connect(addr).unwrap(), listener.accept().unwrap().0)).collect()
    };
    // 100 connections older than the tracer (200 ends) are more than its
    // table takes from the kernel's list of sockets; 100 more after it
    // started fill the kernel's socket table, and find the tracer's full.
    let before = hold(100);
    let w = Watch::with(Config { max_connections: MAX, ..Config::default() });
    let after = hold(100);
    let start = Instant::now();
    let stats = loop {
        let s = w.tracer.stats();
        if s.table_full > 0 && s.conn_map_full + s.sock_map_full > 0 {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "nothing refused: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let open = w.tracer.connections().iter().filter(|c| c.state == State::Open).count();
    assert!(open <= MAX as usize, "{open} open past the bound of {MAX}: {stats:?}");
    assert!(w.tracer.stats().connections_open <= u64::from(MAX));
    assert_eq!(stats.evicted(), stats.conn_map_full + stats.sock_map_full + stats.table_full);
    eprintln!("{open} open; {stats:?}");
    drop((before, after));
    let ours = |c: &Connection| c.tuple.laddr == addr.ip() || c.tuple.raddr == Some(addr.ip());
    let ours_open = || {
        let conns = w.tracer.connections();
        conns.iter().filter(|c| c.state == State::Open && ours(c)).count()
    };
    while ours_open() > 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "{} still open", ours_open());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cport, sport) = exchange("127.0.0.18:0", 512, 32768);
    w.wait_for("both closes", |e| {
        !closes(e, cport, sport).is_empty() && !closes(e, sport, cport).is_empty()
    });
    let (conns, _, stats) = w.finish();
    for (lport, rport, sent, recv) in [(cport, sport, 512, 32768), (sport, cport, 32768, 512)] {
        let c = entry(&conns, "tcp", lport, rport);
        assert_eq!((c.bytes_sent, c.bytes_recv), (sent, recv), "{c:?}; {stats:?}");
    }
}

/// A connected UDP socket older than the tracer, still in use, stays
/// open past the idle timeout: it is alive from when it was found, and
/// every datagram keeps it so.
#[test]
fn a_backfilled_udp_socket_in_use_stays_open() {
    let _g = serial();
    let a = UdpSocket::bind("127.0.0.18:0").unwrap();
    let b = UdpSocket::bind("127.0.0.18:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    a.send(b"before").unwrap();
    let mut buf = [0u8; 64];
    b.recv(&mut buf).unwrap();
    let aport = a.local_addr().unwrap().port();
    let w = Watch::with(Config { udp_timeout: Duration::from_secs(2), ..Config::default() });
    // Quiet through the first refreshes (less than the timeout), then a
    // datagram each 300 ms for four seconds: never idle for 2 s.
    std::thread::sleep(Duration::from_millis(1200));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        a.send(b"ping").unwrap();
        b.recv(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let (conns, events, _) = w.finish();
    let mine = entry(&conns, "udp", aport, b.local_addr().unwrap().port());
    assert!(mine.backfilled, "{mine:?}");
    assert_eq!(mine.state, State::Open, "{mine:?}");
    assert!(
        closes(&events, aport, b.local_addr().unwrap().port()).is_empty(),
        "ended while in use: {events:#?}"
    );
}

/// A consumer that falls behind loses events, and is told how many with a
/// `lost` event, as for the kernel's own loss.
#[test]
fn events_a_slow_consumer_missed_are_reported_lost() {
    let _g = serial();
    let mut tracer =
        Tracer::start(Config { backend: backend_choice(), event_queue: 16, ..Config::default() })
            .expect("start the tracer");
    let mut stream = tracer.events().unwrap();
    for _ in 0..40 {
        exchange("127.0.0.19:0", 10, 10);
    }
    // Taken only now, after a refresh or two: the queue held 16.
    std::thread::sleep(Duration::from_millis(1500));
    let mut lost = 0;
    let mut seen = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        match stream.try_next() {
            Some(e) if e.event == EventKind::Lost => lost += e.lost.unwrap(),
            Some(_) => seen += 1,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let stats = tracer.stats();
    tracer.stop();
    assert!(stats.events_dropped > 0, "nothing dropped: {stats:?}");
    assert_eq!(lost, stats.events_dropped + stats.events_lost, "{stats:?}, {seen} events seen");
}

/// Nothing runs per TCP packet. With the kernel's BPF run-time statistics
/// on, 10 000 round trips on an established TCP connection run none of
/// nettop's programs on kprobe and fentry; on the tracepoint backend only
/// the length tracepoints run (raw_tp), which UDP needs and TCP shares (for
/// TCP they return at once). With UDP off (`--proto tcp`) no UDP hook is attached,
/// and nothing runs on any backend. Opening and closing one connection runs the
/// state-change program: the positive control, without which a test that
/// found no programs would pass.
#[test]
fn nothing_runs_per_tcp_packet() {
    let _g = serial();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    for udp in [true, false] {
        let w = Watch::with(Config { udp, ..Config::default() });
        let backend = w.tracer.info().backend;
        let runs = || -> std::collections::HashMap<String, u64> {
            w.tracer.program_runs().into_iter().collect()
        };
        let grown = |before: &std::collections::HashMap<String, u64>| -> Vec<(String, u64)> {
            let mut g: Vec<_> = runs()
                .into_iter()
                .filter_map(|(n, r)| {
                    let d = r - before.get(&n).copied().unwrap_or(0);
                    (d > 0).then_some((n, d))
                })
                .collect();
            g.sort();
            g
        };
        let names = runs();
        assert!(names.keys().any(|n| n.starts_with("tp_inet_sock_set_state")), "{names:?}");
        let length_hook = |n: &str| n == "raw_sock_send_length" || n == "raw_sock_recv_length";
        let udp_hooks = names.keys().filter(|n| n.contains("udp") || length_hook(n)).count();
        let listener = TcpListener::bind("127.0.0.20:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        c.set_nodelay(true).unwrap();
        s.set_nodelay(true).unwrap();
        let mut pingpong = |n: usize| {
            let mut b = [0u8; 1];
            for _ in 0..n {
                c.write_all(b"x").unwrap();
                s.read_exact(&mut b).unwrap();
                s.write_all(b"y").unwrap();
                c.read_exact(&mut b).unwrap();
            }
        };
        pingpong(10);
        std::thread::sleep(Duration::from_millis(200));
        let before = runs();
        pingpong(10_000);
        let grew = grown(&before);
        if backend == nettop::probe::Backend::Tracepoint && udp {
            assert!(grew.iter().all(|(n, _)| length_hook(n)), "udp {udp}: {grew:?}")
        } else {
            assert!(grew.is_empty(), "{backend} udp {udp}: {grew:?}")
        }
        eprintln!("{backend}, udp {udp}: 10 000 round trips ran {grew:?}");
        drop((c, s));
        // The positive control.
        let before = runs();
        let (cp, sp) = exchange("127.0.0.20:0", 1, 1);
        w.wait_for("the control's closes", |e| {
            !closes(e, cp, sp).is_empty() && !closes(e, sp, cp).is_empty()
        });
        let grew = grown(&before);
        assert!(
            grew.iter().any(|(n, _)| n.starts_with("tp_inet_sock_set_state")),
            "a connection ran no state-change program: {grew:?}"
        );
        let (_, _, _) = w.finish();
        if !udp {
            assert_eq!(udp_hooks, 0, "--proto tcp attached UDP hooks on {backend}");
        }
    }
}

/// An accepted connection that never carries data is listed and owned on
/// every backend (the tracepoint backend learns its owner from /proc at its
/// next refresh), and ends with its close.
#[test]
fn an_accepted_connection_without_data_is_listed_with_its_owner() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.21:0").unwrap();
    let sport = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let cport = client.local_addr().unwrap().port();
    let (server, _) = listener.accept().unwrap();
    w.wait_accepted(&[(sport, cport)]);
    let listed = w.tracer.connections();
    let s = entry(&listed, "tcp", sport, cport);
    assert_eq!(
        (s.owner.pid, s.direction, s.state),
        (std::process::id(), Direction::Incoming, State::Open)
    );
    drop((client, server));
    w.wait_for("its close", |e| !closes(e, sport, cport).is_empty());
    let (_, events, _) = w.finish();
    let close = closes(&events, sport, cport);
    assert_eq!((close.len(), close[0].bytes_sent, close[0].bytes_recv), (1, Some(0), Some(0)));
}

/// A server that accepts and closes at once, before the tracer's next
/// refresh could find the socket in /proc (the tracepoint backend's way of
/// naming owners): its connections still come with their owner, named at
/// its close, whichever end closes first.
#[test]
fn connections_accepted_and_closed_at_once_have_their_owner() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.22:0").unwrap();
    let sport = listener.local_addr().unwrap().port();
    let mut cports = Vec::new();
    for i in 0..20 {
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        cports.push(client.local_addr().unwrap().port());
        let (server, _) = listener.accept().unwrap();
        if i % 2 == 1 {
            // The client first: the server's close is then from CLOSE_WAIT.
            drop(client);
            std::thread::sleep(Duration::from_millis(5));
            drop(server);
        } else {
            drop(server);
            let _ = client.read(&mut [0u8; 1]);
        }
    }
    w.wait_for("every close", |e| cports.iter().all(|&c| !closes(e, sport, c).is_empty()));
    let (_, events, _) = w.finish();
    let pid = std::process::id();
    for &c in &cports {
        let at_server = |kind: EventKind| {
            let evs: Vec<_> = (events.iter())
                .filter(|e| e.event == kind)
                .filter_map(|e| e.conn.as_ref())
                .filter(|conn| (conn.tuple.lport, conn.tuple.rport) == (sport, c))
                .map(|conn| conn.owner.pid)
                .collect();
            evs
        };
        assert_eq!(
            (at_server(EventKind::Accept), at_server(EventKind::Close)),
            (vec![pid], vec![pid]),
            "the connection from port {c}"
        );
    }
}

/// The kernel's own tcp_info (through sock_diag) as an oracle for 100
/// connections with random sizes up to 1 MiB, at rest.
#[test]
fn counters_equal_the_kernels_tcp_info_on_100_connections() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.15:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let sizes: Vec<(usize, usize)> =
        (0..100).map(|_| (rng.usize(1..=1 << 20), rng.usize(1..=1 << 20))).collect();
    let mut keep = Vec::new();
    for &(up, down) in &sizes {
        let mut c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let writer = std::thread::spawn(move || {
            c.write_all(&vec![1u8; up]).unwrap();
            c
        });
        let mut buf = vec![0u8; up];
        s.read_exact(&mut buf).unwrap();
        let mut c = writer.join().unwrap();
        let writer = std::thread::spawn(move || {
            s.write_all(&vec![2u8; down]).unwrap();
            s
        });
        let mut buf = vec![0u8; down];
        c.read_exact(&mut buf).unwrap();
        keep.push((c, writer.join().unwrap()));
    }
    let mut want = Vec::new();
    for ((c, s), &(up, down)) in keep.iter().zip(&sizes) {
        let (cp, sp) = (c.local_addr().unwrap().port(), s.local_addr().unwrap().port());
        want.push(((cp, sp), up as u64 + 1));
        want.push(((sp, cp), down as u64));
    }
    wait_acked(&want);
    let servers: Vec<_> = want.iter().skip(1).step_by(2).map(|w| w.0).collect();
    w.wait_accepted(&servers);
    let kernel = nettop::tracer::backfill::sockets().unwrap();
    let (conns, _, stats) = w.finish();
    let mut checked = 0;
    for k in
        kernel.iter().filter(|k| k.state == 1 && (k.lport == addr.port() || k.rport == addr.port()))
    {
        let c = entry(&conns, "tcp", k.lport, k.rport);
        // tcp_info counts the active opener's SYN as one acked byte.
        let syn = u64::from(k.rport == addr.port());
        let kernel_says = (k.bytes_acked.unwrap() - syn, k.bytes_received.unwrap());
        let what = format!("{c:?} vs {k:?}; {stats:?}");
        assert_eq!((c.bytes_sent, c.bytes_recv), kernel_says, "{what}");
        assert!(!c.backfilled);
        checked += 1;
    }
    assert_eq!(checked, 200, "both ends of 100 connections");
    drop(keep);
}

#[test]
fn stop_and_drop_leave_nothing_attached() {
    let _g = serial();
    let loaded = || {
        let out =
            std::process::Command::new("bpftool").args(["prog", "show"]).output().expect("bpftool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let probe_progs = |text: &str| {
        text.contains("tp_inet_sock_se")
            || text.contains("krp_tcp_v4_conn")
            || text.contains("fx_tcp_v4_conne")
    };
    let t = Tracer::start(Config { backend: backend_choice(), ..Config::default() }).unwrap();
    assert!(probe_progs(&loaded()), "nothing attached while running?");
    t.stop();
    assert!(!probe_progs(&loaded()), "programs left after stop:\n{}", loaded());
    drop(Tracer::start(Config { backend: backend_choice(), ..Config::default() }).unwrap());
    assert!(!probe_progs(&loaded()), "programs left after drop:\n{}", loaded());
    let events = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events").unwrap_or_default();
    assert!(!events.contains("nettop_"), "kprobe events left behind:\n{events}");
}

/// An accepted connection bound to an interface (its listener's
/// SO_BINDTODEVICE, inherited) is missed by sock_diag's exact lookups too:
/// on the tracepoint backend, where accepts are named by looking the socket
/// up, it is still listed with its owner while open.
#[test]
fn an_accepted_connection_bound_to_an_interface_is_named_while_open() {
    let _g = serial();
    let w = Watch::start();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind_device(Some(b"lo")).unwrap();
    sock.bind(&"127.0.0.25:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.listen(16).unwrap();
    let listener: TcpListener = sock.into();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (srv, _) = listener.accept().unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
    w.wait_accepted(&[(sport, cport)]);
    let conns = w.tracer.connections();
    let accepted = entry(&conns, "tcp", sport, cport);
    assert_eq!(accepted.state, State::Open, "{accepted:?}");
    assert_eq!(accepted.owner.pid, std::process::id(), "{accepted:?}");
    drop((client, srv));
}

/// A socket bound to an interface (SO_BINDTODEVICE here; IPv6 link-local
/// and VRF sockets are bound too) is invisible to sock_diag's exact lookup
/// of its tuple, which names no interface: across several refreshes it
/// stays open, its totals exact, never ended as vanished.
#[test]
fn a_connection_bound_to_an_interface_stays_open_with_exact_totals() {
    let _g = serial();
    let w = Watch::start();
    let listener = TcpListener::bind("127.0.0.18:0").unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind_device(Some(b"lo")).unwrap();
    sock.connect(&listener.local_addr().unwrap().into()).unwrap();
    let mut client: TcpStream = sock.into();
    let (mut srv, _) = listener.accept().unwrap();
    client.write_all(&[1u8; 3210]).unwrap();
    let mut buf = vec![0u8; 3210];
    srv.read_exact(&mut buf).unwrap();
    srv.write_all(&[2u8; 123]).unwrap();
    client.read_exact(&mut buf[..123]).unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
    wait_acked(&[((cport, sport), 3210 + 1), ((sport, cport), 123)]);
    // Each listing reads the kernel's counters; a miss counts twice.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        let conns = w.tracer.connections();
        let c = entry(&conns, "tcp", cport, sport);
        assert_eq!(c.state, State::Open, "{c:?}");
        assert_eq!((c.bytes_sent, c.bytes_recv), (3210, 123), "{c:?}");
    }
    let (_, evs, _) = w.finish();
    assert!(
        closes(&evs, cport, sport).is_empty(),
        "ended while open: {:?}",
        closes(&evs, cport, sport)
    );
    drop((client, srv));
}
