//! Real delay and loss: `tc qdisc … netem` on `lo` in a network namespace
//! of the test's own. The Debian kernels of the VM matrix ship sch_netem
//! (tests/vm/run loads it and puts `tc` beside the tests); this host's
//! kernel has none, so here the tests that need it say so and pass only
//! where NETTOP_EXPECT_NETEM (set by the VM matrix) is unset.
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::mpsc;

/// NETTOP_EXPECT_NETEM: netem must work on this kernel.
pub fn expected() -> bool {
    std::env::var_os("NETTOP_EXPECT_NETEM").is_some()
}

/// A connection across netem, both ends open, kept (with the thread that
/// keeps its namespace alive, as a container keeps processes) until dropped.
pub struct Link {
    pub client_port: u16,
    pub server_port: u16,
    pub netns: u32,
    _keep: mpsc::Sender<()>,
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// What crosses a link.
#[derive(Clone, Copy, Debug)]
pub enum Traffic {
    /// This many 1-byte requests, each answered before the next: every
    /// round trip is an RTT sample of the path alone, no queue in it, and
    /// every byte its own packet (a bulk transfer over `lo` is a few 64 KiB
    /// GSO packets, too few for a loss rate to show).
    PingPong(usize),
}

/// A new namespace whose `lo` (MTU 1500, so that a transfer is many
/// segments) has `netem` (e.g. "delay 25ms"), carrying `traffic` from a
/// client to a server. Err where netem is unavailable.
pub fn link(netem: &str, traffic: Traffic) -> Result<Link, String> {
    let (tx, rx) = mpsc::channel();
    let (keep, done) = mpsc::channel::<()>();
    let netem: Vec<String> = netem.split_whitespace().map(str::to_owned).collect();
    std::thread::spawn(move || {
        let made = (|| {
            // SAFETY: affects only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            run("ip", &["link", "set", "lo", "mtu", "1500"])?;
            run("ip", &["link", "set", "lo", "up"])?;
            let mut tc = vec!["qdisc", "add", "dev", "lo", "root", "netem"];
            tc.extend(netem.iter().map(String::as_str));
            run("tc", &tc)?;
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let mut client =
                TcpStream::connect(listener.local_addr().unwrap()).map_err(|e| e.to_string())?;
            let (mut srv, _) = listener.accept().map_err(|e| e.to_string())?;
            let Traffic::PingPong(rounds) = traffic;
            let reader = std::thread::spawn(move || -> std::io::Result<TcpStream> {
                let mut b = [0u8; 1];
                for _ in 0..rounds {
                    srv.read_exact(&mut b)?;
                    srv.write_all(&b)?;
                }
                Ok(srv)
            });
            let mut b = [0u8; 1];
            for _ in 0..rounds {
                client.write_all(&b).map_err(|e| e.to_string())?;
                client.read_exact(&mut b).map_err(|e| e.to_string())?;
            }
            let srv = reader.join().unwrap().map_err(|e| e.to_string())?;
            let netns = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32;
            let ports = (client.local_addr().unwrap().port(), srv.local_addr().unwrap().port());
            Ok((client, srv, ports, netns))
        })();
        match made {
            Ok((client, srv, (client_port, server_port), netns)) => {
                tx.send(Ok((client_port, server_port, netns))).unwrap();
                let _ = done.recv();
                drop((client, srv));
            }
            Err(e) => tx.send(Err(e)).unwrap(),
        }
    });
    let (client_port, server_port, netns) = rx.recv().unwrap()?;
    Ok(Link { client_port, server_port, netns, _keep: keep })
}

/// The health tests' two links: 25 ms each way under 30 round trips (an
/// RTT of 50 ms), and 10 % loss under 50 (retransmits). None where netem is
/// unavailable and not expected (this host says so); a panic where it is
/// expected.
pub fn slow_and_lossy() -> Option<(Link, Link)> {
    let links = link("delay 25ms", Traffic::PingPong(30))
        .and_then(|slow| Ok((slow, link("delay 1ms loss 10%", Traffic::PingPong(50))?)));
    match links {
        Ok(links) => Some(links),
        Err(why) if !expected() => {
            eprintln!("netem unavailable here ({why}); the VM matrix runs this test");
            None
        }
        Err(why) => panic!("netem: {why}"),
    }
}
