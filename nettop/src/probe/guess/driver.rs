//! The guessing driver: makes the loopback connections the state machine in
//! `solver` asks for, arms the probe through the status map, and feeds back
//! what the probe copied.
//!
//! Connections run on worker threads named with a random, unique comm: the
//! probe matches that name, not a pid, so guessing also works inside a
//! container with its own pid namespace, and renaming a worker thread leaves
//! the process's own name alone. A second worker moves to a private network
//! namespace when it can, so namespace pointers and inodes are confirmed
//! across two namespaces.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Array, MapData};
use nettop_shared::{
    GUESS_ARMED, GUESS_AT_SHUTDOWN, GUESS_AT_UDP_SEND, GUESS_CHECKED, GUESS_IDLE, GuessStatus,
};
use socket2::{Domain, Socket, Type};

use super::super::backend::UdpHooks;
use super::solver::{
    CounterValues, Expected, GuessConfig, Guessed, Guesser, Next, Observation, Request, Transfer,
};

/// Tries per connection before concluding the hook does not fire.
const TRIES: usize = 3;

#[derive(Clone, Debug)]
pub struct GuessRun {
    pub offsets: Guessed,
    pub connections: usize,
    pub namespaces: usize,
    pub elapsed_ms: f64,
}

/// Whether IPv6 fields can be guessed, and if not, why.
pub fn ipv6_status() -> Result<(), String> {
    match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        Err(_) => Err("IPv6 is disabled on this host (ipv6.disable=1 or no IPv6 support)".into()),
        Ok(v) if v.trim() != "0" => {
            Err("IPv6 is disabled on this host (net.ipv6.conf.all.disable_ipv6=1)".into())
        }
        Ok(_) => Ok(()),
    }
}

/// Test and debug switches (the binary reads them from the environment
/// once, at start: NETTOP_TEST_SKEW, NETTOP_GUESS_DUMP).
#[derive(Clone, Debug, Default)]
pub struct GuessSwitches {
    /// Test-only: guess this field 4 bytes off, to prove the kernel matrix
    /// catches a wrong guess.
    pub skew: Option<String>,
    /// Keep every window the probe copied, and what was expected of it,
    /// in this directory: for debugging a kernel the guesser fails on.
    pub dump_dir: Option<PathBuf>,
}

pub fn run(
    status: &mut Array<&mut MapData, GuessStatus>,
    ipv6: bool,
    udp: UdpHooks,
    switches: &GuessSwitches,
) -> Result<GuessRun> {
    let started = Instant::now();
    let comm = unique_comm();
    let host = Connector::spawn(comm, false)?;
    let private = Connector::spawn(comm, true).ok();
    let connectors: Vec<&Connector> = std::iter::once(&host).chain(private.as_ref()).collect();
    let mut guesser = Guesser::new(GuessConfig {
        ipv6,
        namespaces: connectors.len(),
        udp: udp == UdpHooks::Attach,
    });

    let result = loop {
        let req = match guesser.next() {
            Next::Connect(req) => req,
            Next::Done(r) => break r.map_err(anyhow::Error::from),
        };
        let mut observed = None;
        for _ in 0..TRIES {
            let mut st = GuessStatus::zeroed();
            st.state = GUESS_ARMED;
            st.comm = comm;
            if let Some(off) = req.deref_net {
                st.deref_net = 1;
                st.net_ptr_offset = off;
            }
            if req.transfer.is_some() {
                st.at = GUESS_AT_SHUTDOWN;
            }
            if req.udp {
                st.at = GUESS_AT_UDP_SEND;
            }
            status.set(0, st, 0).context("arm the guess status map")?;
            let expected = connectors[req.ns].connect(req)?;
            let st = status.get(&0, 0).context("read the guess status map")?;
            if st.state == GUESS_CHECKED {
                observed = Some(Observation {
                    expected,
                    ns: req.ns,
                    sk: st.sk_data.to_vec(),
                    net: req.deref_net.map(|_| st.net_data.to_vec()),
                });
                break;
            }
        }
        if let (Some(dir), Some(obs)) = (&switches.dump_dir, &observed) {
            write_observation(dir, guesser.connections(), &req, obs);
        }
        let Some(obs) = observed else {
            break Err(anyhow!(
                "the probe's {} hook never fired for a guessing connection ({TRIES} tries)",
                if req.udp { "UDP send" } else { "connect" }
            ));
        };
        guesser.feed(obs);
    };
    let mut idle = GuessStatus::zeroed();
    idle.state = GUESS_IDLE;
    status.set(0, idle, 0).context("disarm the guess status map")?;
    let mut offsets = result?;
    if let Some(field) = &switches.skew {
        offsets.skew(field);
    }
    Ok(GuessRun {
        offsets,
        connections: guesser.connections(),
        namespaces: connectors.len(),
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// One guessing connection's windows and expectations, into `dir`
/// (`GuessSwitches::dump_dir`).
fn write_observation(dir: &Path, n: usize, req: &Request, obs: &Observation) {
    let _ = std::fs::create_dir_all(dir);
    let kind = if req.udp {
        "udp"
    } else if req.v6 {
        "v6"
    } else {
        "v4"
    };
    let name = format!("{n:02}-ns{}-{kind}", req.ns);
    let _ = std::fs::write(dir.join(format!("{name}.sk")), &obs.sk);
    if let Some(net) = &obs.net {
        let _ = std::fs::write(
            dir.join(format!("{name}-deref{}.net", req.deref_net.unwrap_or(0))),
            net,
        );
    }
    let _ =
        std::fs::write(dir.join(format!("{name}.txt")), format!("{req:?}\n{:?}\n", obs.expected));
}

/// "ntg-" and 11 random letters: nothing else on the host is called that.
fn unique_comm() -> [u8; 16] {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"ntg-");
    for b in &mut comm[4..15] {
        *b = fastrand::alphabetic() as u8;
    }
    comm
}

type Job = (Request, mpsc::Sender<Result<Expected>>);

/// A thread that makes the guessing connections, in the host's network
/// namespace or a private one.
struct Connector {
    jobs: mpsc::Sender<Job>,
}

impl Connector {
    fn spawn(comm: [u8; 16], private_netns: bool) -> Result<Connector> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::Builder::new()
            .name("nettop-guess".into())
            .spawn(move || {
                let setup = setup_thread(&comm, private_netns);
                let ok = setup.is_ok();
                let _ = ready_tx.send(setup);
                if !ok {
                    return;
                }
                for (req, reply) in rx {
                    let _ = reply.send(match req.transfer {
                        Some(t) => transfer_once(t),
                        None if req.udp => udp_once(),
                        None => connect_once(req.v6),
                    });
                }
            })
            .context("spawn guessing thread")?;
        ready_rx.recv().context("guessing thread died")??;
        Ok(Connector { jobs })
    }

    fn connect(&self, req: Request) -> Result<Expected> {
        let (tx, rx) = mpsc::channel();
        self.jobs.send((req, tx)).map_err(|_| anyhow!("guessing thread died"))?;
        rx.recv().map_err(|_| anyhow!("guessing thread died"))?
    }
}

fn setup_thread(comm: &[u8; 16], private_netns: bool) -> Result<()> {
    // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated 16-byte buffer.
    if unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) } != 0 {
        bail!("name the guessing thread: {}", std::io::Error::last_os_error());
    }
    if private_netns {
        // SAFETY: unshare affects only this thread, which does nothing else.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        loopback_up()?;
    }
    Ok(())
}

/// A new network namespace's `lo` starts down.
fn loopback_up() -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None).context("socket for SIOCSIFFLAGS")?;
    // SAFETY: ifreq is plain data; the ioctls read and write it in place.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[..2].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char]);
        use std::os::fd::AsRawFd;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            bail!("SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            bail!("SIOCSIFFLAGS lo: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// 127.x.y.z, never 127.0.0.1 (an unbound socket's default, and a value that
/// matched unrelated fields on some kernels), never a .0 or .255 host part.
fn random_loopback() -> Ipv4Addr {
    Ipv4Addr::new(127, fastrand::u8(1..=254), fastrand::u8(..), fastrand::u8(1..=254))
}

/// Two different random loopback addresses: the client's and the listener's.
fn loopback_pair() -> (Ipv4Addr, Ipv4Addr) {
    let saddr = random_loopback();
    loop {
        let d = random_loopback();
        if d != saddr {
            return (saddr, d);
        }
    }
}

/// The calling thread's network namespace, as the probe reports it.
fn thread_netns() -> Result<u32> {
    Ok(
        std::fs::metadata("/proc/thread-self/ns/net")
            .context("stat /proc/thread-self/ns/net")?
            .ino() as u32,
    )
}

/// Ports whose two bytes differ, so network and host byte order never agree.
fn random_port() -> u16 {
    loop {
        let p = fastrand::u16(20000..60000);
        if p >> 8 != p & 0xff {
            return p;
        }
    }
}

fn mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
}

fn bound_socket(domain: Domain, addr: impl Fn(u16) -> SocketAddr) -> Result<(Socket, u16)> {
    bound(domain, Type::STREAM, addr)
}

fn bound(domain: Domain, ty: Type, addr: impl Fn(u16) -> SocketAddr) -> Result<(Socket, u16)> {
    let mut last = None;
    for _ in 0..16 {
        let port = random_port();
        let s = Socket::new(domain, ty, None).context("guessing socket")?;
        if domain == Domain::IPV6 {
            s.set_only_v6(false).context("IPV6_V6ONLY")?;
        }
        match s.bind(&addr(port).into()) {
            Ok(()) => return Ok((s, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!("bind a guessing socket: {}", last.expect("tried at least once")))
}

/// One guessing connection: a listener on one random loopback address, a
/// client bound to another, connect, then reset both (SO_LINGER 0), so that
/// nothing lingers in TIME_WAIT.
fn connect_once(v6: bool) -> Result<Expected> {
    let (saddr, daddr) = loopback_pair();
    let (listener, dport) =
        bound_socket(Domain::IPV4, |p| SocketAddr::V4(SocketAddrV4::new(daddr, p)))?;
    listener.listen(4).context("listen")?;
    let (client, sport) = if v6 {
        bound_socket(Domain::IPV6, |p| SocketAddr::V6(SocketAddrV6::new(mapped(saddr), p, 0, 0)))?
    } else {
        bound_socket(Domain::IPV4, |p| SocketAddr::V4(SocketAddrV4::new(saddr, p)))?
    };
    client.set_linger(Some(std::time::Duration::ZERO)).context("SO_LINGER")?;
    let peer = if v6 {
        SocketAddr::V6(SocketAddrV6::new(mapped(daddr), dport, 0, 0))
    } else {
        SocketAddr::V4(SocketAddrV4::new(daddr, dport))
    };
    client.connect(&peer.into()).with_context(|| format!("guessing connect to {peer}"))?;
    if let Ok((conn, _)) = listener.accept() {
        let _ = conn.set_linger(Some(std::time::Duration::ZERO));
    }
    let netns_ino = thread_netns()?;
    Ok(Expected {
        saddr: saddr.octets(),
        daddr: daddr.octets(),
        saddr_v6: v6.then(|| mapped(saddr).octets()),
        daddr_v6: v6.then(|| mapped(daddr).octets()),
        sport,
        dport,
        family: if v6 { libc::AF_INET6 as u16 } else { libc::AF_INET as u16 },
        netns_ino,
        counters: None,
        protocol: libc::IPPROTO_TCP as u16,
    })
}

/// One counting connection (IPv4): `t.send` bytes out, `t.recv` back, then
/// the client shuts down its sending side, the moment the probe copies its
/// socket. What the counters must hold then comes from the client's own
/// `TCP_INFO`, checked against the sizes: the kernel counts the SYN the
/// peer acknowledged as one byte acked, and nothing else but payload.
fn transfer_once(t: Transfer) -> Result<Expected> {
    use std::io::{Read, Write};
    let (saddr, daddr) = loopback_pair();
    let (listener, dport) =
        bound_socket(Domain::IPV4, |p| SocketAddr::V4(SocketAddrV4::new(daddr, p)))?;
    listener.listen(4).context("listen")?;
    let (client, sport) =
        bound_socket(Domain::IPV4, |p| SocketAddr::V4(SocketAddrV4::new(saddr, p)))?;
    client.set_out_of_band_inline(t.oobinline).context("SO_OOBINLINE")?;
    client.set_keepalive(t.keepalive).context("SO_KEEPALIVE")?;
    client.set_linger(t.linger.then_some(std::time::Duration::ZERO)).context("SO_LINGER")?;
    let peer = SocketAddr::V4(SocketAddrV4::new(daddr, dport));
    client.connect(&peer.into()).with_context(|| format!("counting connect to {peer}"))?;
    let (server, _) = listener.accept().context("accept a counting connection")?;
    server.set_linger(Some(std::time::Duration::ZERO)).context("SO_LINGER")?;
    let mut client = std::net::TcpStream::from(client);
    let mut server = std::net::TcpStream::from(server);
    thread::scope(|scope| -> Result<()> {
        let echo = scope.spawn(|| -> std::io::Result<()> {
            let mut got = vec![0u8; t.send];
            server.read_exact(&mut got)?;
            server.write_all(&vec![7u8; t.recv])
        });
        client.write_all(&vec![5u8; t.send]).context("counting send")?;
        let mut back = vec![0u8; t.recv];
        client.read_exact(&mut back).context("counting receive")?;
        echo.join().map_err(|_| anyhow!("counting peer panicked"))?.context("counting peer")
    })?;
    // The peer's data acknowledged everything sent; wait out a slow ACK.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    let (acked, received) = loop {
        let (a, r) = tcp_counters(&client)?;
        if a == t.send as u64 + 1 || Instant::now() > deadline {
            break (a, r);
        }
        thread::sleep(std::time::Duration::from_millis(5));
    };
    if (acked, received) != (t.send as u64 + 1, t.recv as u64) {
        bail!(
            "after sending {} and receiving {} bytes, TCP_INFO says {acked} acked and {received} \
             received: this kernel does not count as nettop expects (payload, plus 1 for the SYN)",
            t.send,
            t.recv
        );
    }
    client.shutdown(std::net::Shutdown::Write).context("shutdown a counting connection")?;
    Ok(Expected {
        counters: Some(CounterValues {
            bytes_acked: acked,
            bytes_received: received,
            flags_byte: t.flags_byte(),
        }),
        ..expected_v4((saddr, sport), (daddr, dport), libc::IPPROTO_TCP)?
    })
}

/// What an IPv4 socket of this thread from `src` to `dst` holds.
fn expected_v4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), protocol: i32) -> Result<Expected> {
    Ok(Expected {
        saddr: src.0.octets(),
        daddr: dst.0.octets(),
        saddr_v6: None,
        daddr_v6: None,
        sport: src.1,
        dport: dst.1,
        family: libc::AF_INET as u16,
        netns_ino: thread_netns()?,
        counters: None,
        protocol: protocol as u16,
    })
}

/// One UDP datagram (IPv4) from one random loopback address to another:
/// the probe copies the sending socket.
fn udp_once() -> Result<Expected> {
    let (saddr, daddr) = loopback_pair();
    let v4 = |a: Ipv4Addr| move |p| SocketAddr::V4(SocketAddrV4::new(a, p));
    let (receiver, dport) = bound(Domain::IPV4, Type::DGRAM, v4(daddr))?;
    let (sender, sport) = bound(Domain::IPV4, Type::DGRAM, v4(saddr))?;
    let peer = SocketAddr::V4(SocketAddrV4::new(daddr, dport));
    sender.connect(&peer.into()).with_context(|| format!("guessing UDP connect to {peer}"))?;
    sender.send(b"nettop").context("guessing UDP send")?;
    drop(receiver);
    expected_v4((saddr, sport), (daddr, dport), libc::IPPROTO_UDP)
}

/// `tcpi_bytes_acked` and `tcpi_bytes_received` of one of our own sockets.
fn tcp_counters(s: &std::net::TcpStream) -> Result<(u64, u64)> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("TCP_INFO: {}", std::io::Error::last_os_error());
    }
    Ok((info.tcpi_bytes_acked, info.tcpi_bytes_received))
}
