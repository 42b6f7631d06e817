//! `nettop sockets`: the probe's raw per-socket records after a while.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use nettop::probe::{Probe, StartConfig};
use nettop_shared::{DIR_INCOMING, DIR_OUTGOING, FLAG_CLOSED, SockInfo};
use serde::Serialize;

use super::escape;

#[derive(Serialize)]
struct Row {
    sk: String,
    proto: &'static str,
    family: u16,
    pid: u32,
    comm: String,
    laddr: String,
    lport: u16,
    raddr: String,
    rport: u16,
    direction: &'static str,
    closed: bool,
    bytes_sent: u64,
    bytes_recv: u64,
    sends: u32,
    recvs: u32,
    retransmits: u32,
    netns: u32,
}

fn addr(family: u16, b: &[u8; 16]) -> String {
    match family {
        2 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])).to_string(),
        10 => IpAddr::V6(Ipv6Addr::from(*b)).to_string(),
        _ => "?".to_owned(),
    }
}

fn row(sk: u64, s: &SockInfo) -> Row {
    let comm_len = s.comm.iter().position(|&b| b == 0).unwrap_or(s.comm.len());
    Row {
        sk: format!("{sk:#x}"),
        proto: match s.proto {
            6 => "tcp",
            17 => "udp",
            _ => "?",
        },
        family: match s.family {
            2 => 4,
            10 => 6,
            f => f,
        },
        pid: s.tgid,
        comm: escape(&String::from_utf8_lossy(&s.comm[..comm_len])),
        laddr: addr(s.family, &s.saddr),
        lport: s.sport,
        raddr: addr(s.family, &s.daddr),
        rport: s.dport,
        direction: match s.direction {
            DIR_OUTGOING => "outgoing",
            DIR_INCOMING => "incoming",
            _ => "unknown",
        },
        closed: s.flags & FLAG_CLOSED != 0,
        bytes_sent: s.bytes_sent,
        bytes_recv: s.bytes_recv,
        sends: s.sends,
        recvs: s.recvs,
        retransmits: s.retransmits,
        netns: s.netns,
    }
}

pub fn run(config: &StartConfig, duration: f64, json: bool) -> Result<ExitCode> {
    let probe = Probe::start(config)?;
    if json {
        // Tests start traffic once this line is out: the probe is live.
        println!(
            "{}",
            serde_json::json!({"event": "ready", "backend": probe.backend()})
        );
    } else {
        eprintln!(
            "nettop: tracing on the {} backend for {duration} s",
            probe.backend()
        );
    }
    std::thread::sleep(Duration::from_secs_f64(duration.max(0.0)));
    let mut rows: Vec<Row> = probe.sockets()?.iter().map(|(sk, s)| row(*sk, s)).collect();
    rows.sort_by_key(|r| (r.pid, r.lport, r.rport));
    let counters = probe.counters()?;
    if json {
        println!(
            "{}",
            serde_json::json!({"sockets": rows, "counters": counters, "kprobe_missed": probe.kprobe_missed()})
        );
    } else {
        for r in &rows {
            println!(
                "{:<4} {:>7} {:<16} {}:{} -> {}:{} {:<8} sent {} recv {}{}",
                r.proto,
                r.pid,
                r.comm,
                r.laddr,
                r.lport,
                r.raddr,
                r.rport,
                r.direction,
                r.bytes_sent,
                r.bytes_recv,
                if r.closed { " closed" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
