//! Frame time of the TUI with many connections: `cargo bench --bench frame`.
//! Prints, for 100 000 connections, the median time to take in a snapshot
//! (rates, filter, sort: once per refresh), to draw a frame, and both
//! together — the worst frame a user sees. Target: ≤ 16 ms.
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nettop::Filter;
use nettop::probe::Backend;
use nettop::tracer::{Connection, Direction, Info, Owner, Proto, State, Stats, Tuple};
use nettop::ui::theme::Theme;
use nettop::ui::{App, Snapshot};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const N: u64 = 100_000;
const S: u64 = 1_000_000_000;

fn conns(round: u64) -> Vec<Connection> {
    // 500 processes; as in the tracer, a process's connections share one owner.
    let owners: Vec<Arc<Owner>> = (0..500u64)
        .map(|p| {
            Arc::new(Owner {
                pid: 1000 + p as u32,
                comm: format!("svc{p}"),
                cmdline: format!("/usr/bin/svc{p} --port {}", 8000 + p),
                ..Owner::default()
            })
        })
        .collect();
    (0..N)
        .map(|i| Connection {
            id: i + 1,
            tuple: Tuple {
                proto: if i % 5 == 0 { Proto::Udp } else { Proto::Tcp },
                family: 4,
                laddr: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
                lport: 1024 + (i % 60000) as u16,
                raddr: Some(IpAddr::V4(Ipv4Addr::new(192, 168, (i >> 16) as u8, (i >> 4) as u8))),
                rport: 443,
                netns: 4026531840,
            },
            owner: owners[(i % 500) as usize].clone(),
            direction: if i % 2 == 0 { Direction::Outgoing } else { Direction::Incoming },
            state: if i % 50 == 0 { State::Closed } else { State::Open },
            bytes_sent: i * 7 * (round + 1),
            bytes_recv: (N - i) * 3 * (round + 1),
            msgs_sent: i,
            msgs_recv: i,
            retransmits: 0,
            backfilled: false,
            counted_since_start: false,
            vanished: false,
            // TCP rows carry their health, as the tracer's do after two reads.
            tcp: (i % 5 != 0).then(|| nettop::tracer::sock_diag::TcpInfo {
                rtt_us: 200 + (i % 5000) as u32,
                total_retrans: (i % 7) as u32,
                send_queue: (i % 3000) as u32,
                snd_cwnd: 10,
                ..Default::default()
            }),
            health: (i % 5 != 0).then(|| nettop::tracer::health::Health {
                interval_ms: 1000,
                retransmits: (i % 11 == 0) as u32,
                ..Default::default()
            }),
            first_ns: S,
            last_ns: S + round * S,
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let info = Info {
        backend: Backend::Tracepoint,
        offsets: "guessed",
        verified: Some(true),
        guess_ms: Some(5.0),
        ipv6: true,
        maps_preallocated: false,
        backfill_error: None,
        build: nettop::PROVENANCE,
    };
    let rounds = 15;
    let snaps: Vec<Vec<Connection>> = (0..rounds + 1).map(conns).collect();
    println!("nettop TUI frame time, {N} connections, 200x50 terminal (median of {rounds})");
    println!("{:<28} {:>12} {:>12} {:>12}", "view", "ingest", "draw", "ingest+draw");
    for (name, setup) in [
        ("sorted by receive rate", &[][..]),
        ("sorted by process name", &[KeyCode::Char('s'); 5][..]),
        ("grouped by process", &[KeyCode::Char('g')][..]),
        ("TCP health columns", &[KeyCode::Char('t')][..]),
        ("process view", &[KeyCode::Char('2')][..]),
        ("peer view", &[KeyCode::Char('3')][..]),
    ]
    .into_iter()
    .chain([("filtered: proc:svc42", &[][..])])
    {
        let filter = if name.starts_with("filtered") {
            Filter::parse("proc:svc42").unwrap()
        } else {
            Filter::default()
        };
        let mut app = App::new(info.clone(), filter, Theme::colored(), 1.0);
        let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
        app.ingest(Snapshot { now_ns: S, conns: snaps[0].clone(), stats: Stats::default() });
        for &k in setup {
            app.on_key(KeyEvent::new(k, KeyModifiers::NONE));
        }
        let (mut ingest, mut draw, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for (r, snap) in snaps.iter().enumerate().skip(1) {
            let snap = Snapshot {
                now_ns: (r as u64 + 1) * S,
                conns: snap.clone(),
                stats: Stats::default(),
            };
            let t0 = Instant::now();
            app.ingest(snap);
            let t1 = Instant::now();
            term.draw(|f| nettop::ui::draw(f, &mut app)).unwrap();
            let t2 = Instant::now();
            ingest.push(t1 - t0);
            draw.push(t2 - t1);
            both.push(t2 - t0);
        }
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "{name:<28} {:>12} {:>12} {:>12}",
            ms(median(ingest)),
            ms(median(draw)),
            ms(median(both))
        );
    }
    // Where an ingest goes: rates (matching the previous snapshot) and
    // lines (filter and sort), by sort column.
    let mut rates = nettop::ui::view::RateState::default();
    let expanded = std::collections::HashSet::new();
    let filter = Filter::default();
    let columns = [nettop::ui::view::Column::RecvRate, nettop::ui::view::Column::Process];
    let (mut r_t, mut l_t) = (Vec::new(), vec![Vec::new(); columns.len()]);
    for (r, snap) in snaps.iter().enumerate() {
        let conns = snap.clone();
        let t0 = Instant::now();
        let rows = rates.rows(conns, (r as u64 + 1) * S, Vec::new());
        r_t.push(t0.elapsed());
        for (c, &sort) in columns.iter().enumerate() {
            let t = Instant::now();
            let options = nettop::ui::view::Options {
                filter: &filter,
                dns: None,
                show_closed: true,
                grouped: false,
                expanded: &expanded,
                sort,
                reverse: false,
            };
            std::hint::black_box(nettop::ui::view::lines(&rows, &options));
            l_t[c].push(t.elapsed());
        }
        std::mem::forget(rows); // freeing is not what is measured here
    }
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let sorts: Vec<String> =
        columns.iter().zip(l_t).map(|(c, t)| format!("{} {}", c.title(), ms(median(t)))).collect();
    println!("ingest parts: rates {}; filter+sort by {}", ms(median(r_t)), sorts.join(", by "));
    println!("target: ingest+draw ≤ 16 ms");
}
