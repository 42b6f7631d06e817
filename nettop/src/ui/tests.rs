//! The TUI without a terminal: state changes from keys and the mouse, and
//! snapshots of the screen drawn into ratatui's `TestBackend`.
use std::net::IpAddr;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::style::Modifier;

use super::app::{App, Snapshot};
use super::history::RECENT;
use super::theme::Theme;
use super::view::{Column, Key};
use crate::filter::Filter;
use crate::probe::Backend;
use crate::tracer::health::{Health, SendLimit};
use crate::tracer::{
    Connection, Direction, Event, EventConn, EventKind, Info, Owner, Proto, State, Stats, Tuple,
};

const S: u64 = 1_000_000_000;
const T0: u64 = 1000 * S;

fn info() -> Info {
    Info {
        backend: Backend::Kprobe,
        offsets: "guessed",
        verified: Some(true),
        guess_ms: Some(12.4),
        ipv6: true,
        maps_preallocated: false,
        backfill_error: None,
        build: crate::PROVENANCE,
    }
}

#[allow(clippy::too_many_arguments)]
fn conn(
    id: u64,
    pid: u32,
    comm: &str,
    proto: Proto,
    l: (&str, u16),
    r: Option<(&str, u16)>,
    dir: Direction,
    bytes: (u64, u64),
) -> Connection {
    let laddr: IpAddr = l.0.parse().unwrap();
    Connection {
        id,
        tuple: Tuple {
            proto,
            family: if laddr.is_ipv4() { 4 } else { 6 },
            laddr,
            lport: l.1,
            raddr: r.map(|r| r.0.parse().unwrap()),
            rport: r.map_or(0, |r| r.1),
            netns: 4026531840,
        },
        owner: Owner {
            pid,
            comm: comm.into(),
            cmdline: format!("/usr/bin/{comm} --serve"),
            user: Some("www".into()),
            container: None,
            cgroup: Some("/system.slice/x.service".into()),
            owner_note: None,
        }
        .into(),
        direction: dir,
        state: State::Open,
        bytes_sent: bytes.0,
        bytes_recv: bytes.1,
        msgs_sent: 3,
        msgs_recv: 4,
        retransmits: 0,
        backfilled: false,
        counted_since_start: false,
        vanished: false,
        tcp: (proto == Proto::Tcp).then_some(crate::tracer::sock_diag::TcpInfo {
            rtt_us: 1250,
            rttvar_us: 300,
            snd_cwnd: 10,
            recv_queue: 2048,
            delivery_rate: 1 << 20,
            snd_wnd: Some(65_535),
            ..Default::default()
        }),
        health: (proto == Proto::Tcp).then_some(Health {
            interval_ms: 1000,
            send_limit: Some(SendLimit::Application),
            ..Health::default()
        }),
        first_ns: T0 - 75 * S,
        last_ns: T0,
    }
}

/// Five connections of three processes, one closed, one older than nettop,
/// one whose process name tries to clear the screen.
fn conns(scale: u64) -> Vec<Connection> {
    let mut v = vec![
        conn(
            1,
            100,
            "nginx",
            Proto::Tcp,
            ("10.0.0.5", 443),
            Some(("203.0.113.7", 51000)),
            Direction::Incoming,
            (9_000_000 * scale, 40_000 * scale),
        ),
        conn(
            2,
            100,
            "nginx",
            Proto::Tcp,
            ("10.0.0.5", 443),
            Some(("198.51.100.2", 40222)),
            Direction::Incoming,
            (2_000 * scale, 900 * scale),
        ),
        conn(
            3,
            200,
            "curl",
            Proto::Tcp,
            ("2001:db8::5", 39000),
            Some(("2001:db8::1", 8080)),
            Direction::Outgoing,
            (500 * scale, 3_000_000 * scale),
        ),
        conn(
            4,
            300,
            "evil\x1b[2J\x07",
            Proto::Udp,
            ("0.0.0.0", 5353),
            None,
            Direction::Unknown,
            (100 * scale, 0),
        ),
        conn(
            5,
            200,
            "curl",
            Proto::Tcp,
            ("10.0.0.5", 39100),
            Some(("192.0.2.9", 80)),
            Direction::Outgoing,
            (77, 1234),
        ),
    ];
    v[4].state = State::Closed;
    v[4].last_ns = T0 - 5 * S;
    v[4].health = None;
    v[1].backfilled = true;
    // A slow client: retransmits in the last interval, its window full.
    v[1].retransmits = 7 * scale as u32;
    v[1].health = Some(Health {
        interval_ms: 1000,
        retransmits: 3,
        zero_window: true,
        send_stalled: false,
        recv_stalled: false,
        send_limit: Some(SendLimit::Receiver),
    });
    if let Some(t) = &mut v[1].tcp {
        (t.rtt_us, t.total_retrans, t.send_queue, t.snd_wnd) = (48_000, 7, 262_144, Some(0));
    }
    v
}

fn stats() -> Stats {
    Stats { connections_open: 4, connections_closed: 1, backfilled: 1, ..Stats::default() }
}

/// An app that has seen two snapshots a second apart (so rates exist).
fn app() -> App {
    let mut a = App::new(info(), Filter::default(), Theme::plain(), 1.0);
    a.ingest(Snapshot { now_ns: T0 - S, conns: conns(1), stats: stats() });
    a.ingest(Snapshot { now_ns: T0, conns: conns(2), stats: stats() });
    a
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| super::draw(f, app)).unwrap();
    t
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    render(app, w, h).backend().to_string()
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn pids(app: &App) -> Vec<u64> {
    app.lines
        .iter()
        .map(|l| match l {
            super::view::Line::Conn(i) => app.rows[*i].id,
            super::view::Line::Group(g) => 1000 + u64::from(app.groups[*g].pid),
            super::view::Line::Busy(b) => 2000 + *b as u64,
        })
        .collect()
}

#[test]
fn table_snapshot() {
    insta::assert_snapshot!(screen(&mut app(), 150, 12));
}

/// At 80 columns (a default ssh window) and up, the process, the remote
/// end (its port too) and the state stay; numbers are shortened before any
/// column goes, and the local end and the age go before the rates.
#[test]
fn narrow_terminals_keep_what_a_diagnosis_needs() {
    for w in [80u16, 100, 120, 200] {
        let text = screen(&mut app(), w, 12);
        insta::assert_snapshot!(format!("table_{w}_columns"), text);
        let header = text.lines().nth(2).unwrap();
        for title in ["PROCESS", "REMOTE", "STATE", "SEND/s", "RECV/s"] {
            assert!(header.contains(title), "{w} columns: {title} missing from {header}");
        }
        // The IPv6 remote end keeps its port, elided or not.
        assert!(text.contains(":http-alt "), "{w} columns:\n{text}");
    }
    let header = |w| screen(&mut app(), w, 12).lines().nth(2).unwrap().to_string();
    assert!(!header(80).contains("LOCAL") && !header(80).contains("AGE"), "{}", header(80));
    assert!(header(120).contains("LOCAL") && header(120).contains("PID"), "{}", header(120));
    for w in 20..=250 {
        let (cols, _) = super::table::fit(&Column::DEFAULT, w);
        if w >= 29 {
            assert!(cols.contains(&Column::Process) && cols.contains(&Column::Remote), "{w}");
        }
        let mut a = app();
        render(&mut a, w, 12);
        let right_edge = a.column_x.iter().map(|&(x, width, _)| x + width).max().unwrap_or(0);
        assert!(right_edge <= w, "{w} columns: the table is {right_edge} wide");
    }
}

#[test]
fn health_columns_show_how_each_tcp_connection_is_doing() {
    let mut a = app();
    key(&mut a, KeyCode::Char('t'));
    let text = screen(&mut a, 120, 12);
    insta::assert_snapshot!(text);
    let header = text.lines().nth(2).unwrap();
    for title in ["RTT", "RETRANS", "SEND-Q", "RECV-Q", "CWND", "LIMIT", "REMOTE", "PROCESS"] {
        assert!(header.contains(title), "{title} missing from {header}");
    }
    let row = |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap().to_string();
    // The slow client: marked, its retransmits of the last interval, a
    // full send queue, held back by its receiver.
    let slow = row("198.51.100.2");
    for cell in ["← open* !", "48.0ms", "+3 14", "256K", "receiver"] {
        assert!(slow.contains(cell), "{cell} missing from {slow}");
    }
    assert!(!row("203.0.113.7").contains('!'), "a healthy row is not marked");
    // UDP has none of these.
    assert_eq!(row("evil").matches('—').count(), 6, "{}", row("evil"));
    // Sorting cycles through the shown columns only.
    for _ in 0..a.columns().len() {
        key(&mut a, KeyCode::Char('s'));
        assert!(Column::HEALTH.contains(&a.sort), "{:?}", a.sort);
    }
    key(&mut a, KeyCode::Char('t'));
    assert!(screen(&mut a, 120, 12).lines().nth(2).unwrap().contains("AGE"), "t toggles back");
}

/// Names from a DNS server on loopback: the remote end shows its name once
/// the lookup is back (asking never waits), `d` shows addresses again, `p`
/// port numbers, and `host:` filters by name.
#[test]
fn remote_names_and_service_names_toggle() {
    let (server, _) = crate::names::dns::test_server::server(Some("lb-7.example.test."));
    let mut a = app();
    a.dns = Some(crate::names::Dns::start(Some(server)).unwrap());
    let row = |a: &mut App, needle: &str| {
        let text = screen(a, 150, 12);
        text.lines().find(|l| l.contains(needle)).map(str::to_owned).unwrap_or_default()
    };
    let start = std::time::Instant::now();
    while !row(&mut a, "nginx").contains("lb-7.example.test") {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "never named");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let named = screen(&mut a, 150, 12);
    assert!(named.contains("lb-7.example.test:51000"), "{named}");
    // Ports as services (443 is https in /etc/services and the built-in list).
    assert!(named.contains("10.0.0.5:https"), "{named}");
    typed(&mut a, "/host:lb-7");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.lines.len(), 4, "every TCP peer has the name here: {:?}", pids(&a));
    typed(&mut a, "/");
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('d'));
    let numbers = screen(&mut a, 150, 12);
    assert!(numbers.contains("203.0.113.7:51000") && !numbers.contains("lb-7"), "{numbers}");
    key(&mut a, KeyCode::Char('p'));
    assert!(screen(&mut a, 150, 12).contains("10.0.0.5:443"));
    key(&mut a, KeyCode::Char('d'));
    key(&mut a, KeyCode::Char('p'));
    assert!(screen(&mut a, 150, 12).contains("lb-7.example.test"));
}

/// The process and peer views: totals since nettop started, kept after a
/// connection has gone; Enter lists the process's connections.
#[test]
fn busiest_processes_and_peers() {
    let mut a = app();
    // curl's closed connection (id 5) leaves the table; its bytes stay.
    let later: Vec<Connection> = conns(3).into_iter().filter(|c| c.id != 5).collect();
    a.ingest(Snapshot { now_ns: T0 + S, conns: later, stats: stats() });
    key(&mut a, KeyCode::Char('2'));
    let text = screen(&mut a, 120, 12);
    insta::assert_snapshot!("processes_view", text);
    let curl = a.busy.iter().find(|r| r.label == "curl").unwrap();
    // All of connection 3's bytes (opened after nettop) and all of 5's.
    assert_eq!((curl.sent, curl.recv), (1500 + 77, 9_000_000 + 1234), "{curl:?}");
    assert_eq!((curl.open, curl.connections, curl.distinct), (1, 2, 2));
    // nginx's connection 2 is older than nettop: only what moved since.
    let nginx = a.busy.iter().find(|r| r.label == "nginx").unwrap();
    assert_eq!(nginx.sent, 27_000_000 + (6_000 - 2_000), "{nginx:?}");
    // Ranked by rate: nginx sends 8.6 MiB/s.
    assert_eq!(a.busy[0].label, "nginx");
    key(&mut a, KeyCode::Char('s')); // by total
    assert_eq!(a.busy[0].label, "nginx");
    for _ in 0..5 {
        key(&mut a, KeyCode::Char('s'));
    }
    assert_eq!(a.busy_sort, super::busiest::BusySort::Rate, "s cycles");
    key(&mut a, KeyCode::Char('3'));
    insta::assert_snapshot!("peers_view", screen(&mut a, 120, 12));
    assert_eq!(a.busy.len(), 4, "four remote addresses: {:?}", a.busy);
    // Enter on a process: its connections.
    key(&mut a, KeyCode::Char('2'));
    let at = a.busy.iter().position(|r| r.label == "curl").unwrap();
    key(&mut a, KeyCode::Home);
    for _ in 0..at {
        key(&mut a, KeyCode::Down);
    }
    key(&mut a, KeyCode::Enter);
    assert_eq!((a.view, a.filter_text.as_str()), (super::busiest::View::Connections, "pid:200"));
    assert_eq!(pids(&a), [3], "curl's open connection");
}

/// Pictures: the host graph (`G`) and the selected connection's
/// sparklines in the details pane, after a minute of changing rates.
#[test]
fn graph_and_sparklines() {
    let mut a = app();
    render(&mut a, 150, 40);
    let mut sent = [0u64; 6];
    for r in 0..12u64 {
        // Connection 3 (curl) receives in a ramp, then stops.
        let mut cs = conns(2);
        for c in &mut cs {
            sent[c.id as usize] += if r < 8 { (r + 1) * 100_000 } else { 0 };
            c.bytes_recv += sent[c.id as usize];
            if let Some(t) = &mut c.tcp {
                t.rtt_us = 1000 + 500 * r as u32;
            }
        }
        a.ingest(Snapshot { now_ns: T0 + (r + 1) * S, conns: cs, stats: stats() });
    }
    typed(&mut a, "/lport:39000");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Home);
    key(&mut a, KeyCode::Char('G'));
    key(&mut a, KeyCode::Enter);
    let text = screen(&mut a, 150, 52);
    insta::assert_snapshot!(text);
    assert!(text.contains("host rates, last 14s: ↑ send 0 B/s"), "{text}");
    let spark = |name: &str| {
        let label = format!("{name:<10}");
        text.lines().find(|l| l.contains(&label)).map(str::to_owned).unwrap_or_default()
    };
    // The first refresh's 2.9 MiB/s, the ramp, then the stop; the RTT
    // rising all along.
    assert!(spark("receive").contains("█▁▁▂▂▂▂▃▃▁▁▁▁  peak 2.9 MiB/s"), "{text}");
    assert!(spark("rtt").contains("▇█  peak 6.5ms"), "{text}");
    assert_eq!(a.trends.host.len(), 14);
}

#[test]
fn columns_are_chosen_by_name() {
    let cols = Column::parse_list("process, REMOTE,rtt,retrans,rtt").unwrap();
    assert_eq!(cols, [Column::Process, Column::Remote, Column::Rtt, Column::Retrans]);
    for c in Column::EVERY {
        assert_eq!(Column::parse_list(c.name()).unwrap(), [c], "{}", c.name());
    }
    let err = Column::parse_list("process,bogus").unwrap_err();
    assert!(err.contains("\"bogus\"") && err.contains("send-rate"), "{err}");
    assert!(Column::parse_list(" , ").is_err());
    let mut a = app();
    a.chosen_columns = cols;
    let header = screen(&mut a, 120, 12).lines().nth(2).unwrap().to_string();
    assert!(header.contains("RETRANS") && !header.contains("PID"), "{header}");
}

#[test]
fn grouped_snapshot() {
    let mut a = app();
    key(&mut a, KeyCode::Char('g'));
    key(&mut a, KeyCode::Home);
    key(&mut a, KeyCode::Enter); // expand the first process
    insta::assert_snapshot!(screen(&mut a, 150, 12));
}

#[test]
fn an_open_group_lists_its_connections_in_the_sort_order() {
    let mut a = app();
    key(&mut a, KeyCode::Char('g'));
    key(&mut a, KeyCode::Home);
    key(&mut a, KeyCode::Enter); // curl's group leads by receive rate
    assert_eq!(pids(&a), vec![1200, 3, 5, 1100, 1300]);
    key(&mut a, KeyCode::Char('S'));
    assert_eq!(pids(&a), vec![1300, 1100, 1200, 5, 3]);
}

#[test]
fn timelines_of_gone_connections_are_dropped() {
    let mut a = app();
    let (tuple, owner) = (a.rows[0].tuple.clone(), a.rows[0].owner.clone());
    let ev = |id| Event {
        event: EventKind::Connect,
        ts_ns: T0,
        conn: Some(EventConn {
            id: Some(id),
            tuple: tuple.clone(),
            owner: owner.clone(),
            direction: Direction::Outgoing,
        }),
        bytes_sent: None,
        bytes_recv: None,
        errno: None,
        lost: None,
        vanished: false,
        row: None,
    };
    a.push_events(vec![ev(3), ev(99)]);
    a.ingest(Snapshot { now_ns: T0 + 6 * S, conns: conns(3), stats: stats() });
    assert_eq!((a.history.timeline(3).len(), a.history.timeline(99).len()), (1, 1));
    // Pushed out of the ring by later events: kept only for a connection
    // the snapshot lists (3 is; 99 never was).
    let filler: Vec<Event> = (0..RECENT).map(|i| ev(1_000_000 + i as u64)).collect();
    a.push_events(filler);
    assert_eq!((a.history.timeline(3).len(), a.history.timeline(99).len()), (1, 0));
    assert_eq!(a.history.kept_apart(), 1);
    // Gone from the snapshot: forgotten.
    let mut later = conns(4);
    later.retain(|c| c.id != 3);
    a.ingest(Snapshot { now_ns: T0 + 12 * S, conns: later, stats: stats() });
    assert!(a.history.timeline(3).is_empty());
    assert_eq!(a.history.kept_apart(), 0);
}

#[test]
fn details_snapshot() {
    let mut a = app();
    let c = a.rows.conns.iter().find(|c| c.id == 3).unwrap().clone();
    let ev = |kind, ts| Event {
        event: kind,
        ts_ns: ts,
        conn: Some(EventConn {
            id: Some(3),
            tuple: c.tuple.clone(),
            owner: c.owner.clone(),
            direction: c.direction,
        }),
        bytes_sent: None,
        bytes_recv: None,
        errno: None,
        lost: None,
        vanished: false,
        row: None,
    };
    let events = vec![ev(EventKind::Connect, T0 - 75 * S), ev(EventKind::Retransmit, T0 - 2 * S)];
    a.push_events(events);
    let at =
        a.lines.iter().position(|l| matches!(l, super::view::Line::Conn(i) if a.rows[*i].id == 3));
    a.cursor = at.unwrap();
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Enter);
    assert!(a.details);
    key(&mut a, KeyCode::Char('e'));
    insta::assert_snapshot!(screen(&mut a, 150, 34));
}

#[test]
fn help_snapshot() {
    let mut a = app();
    key(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&mut a, 100, 26));
    key(&mut a, KeyCode::Char('x'));
    assert!(!a.help, "any key closes the help");
}

#[test]
fn header_highlights_loss() {
    let mut a = app();
    a.ingest(Snapshot {
        now_ns: T0 + S,
        conns: conns(3),
        stats: Stats {
            events_lost: 3,
            sock_map_full: 2,
            table_full: 5,
            kprobe_missed: Some(0),
            ..stats()
        },
    });
    let t = render(&mut a, 150, 12);
    insta::assert_snapshot!(t.backend().to_string());
    let buf = t.backend().buffer();
    let line: String = (0..150).map(|x| buf[(x, 1)].symbol().to_owned()).collect();
    let at = |word: &str| line.find(word).map(|b| line[..b].chars().count() as u16).unwrap();
    assert!(buf[(at("lost 3"), 1)].modifier.contains(Modifier::REVERSED), "lost is highlighted");
    // The kernel's refusals and the tracer's, together.
    assert!(buf[(at("evicted 7"), 1)].modifier.contains(Modifier::REVERSED), "so is evicted");
    assert!(!buf[(at("missed 0"), 1)].modifier.contains(Modifier::REVERSED), "zero is not");
}

#[test]
fn no_control_character_reaches_the_screen() {
    let mut a = app();
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "pid:300");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    let s = screen(&mut a, 150, 30);
    assert!(s.contains("evil\\u{1b}[2J\\u{7}"), "{s}");
    assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
}

#[test]
fn sorting_keys_and_clicks() {
    let mut a = app();
    render(&mut a, 150, 12);
    // Default: receive rate, largest first; closed (no rate) last.
    assert_eq!(pids(&a), [3, 1, 2, 4, 5]);
    key(&mut a, KeyCode::Char('s'));
    assert_eq!(a.sort, Column::Sent);
    assert_eq!(pids(&a), [1, 2, 3, 4, 5]);
    key(&mut a, KeyCode::Char('S'));
    assert_eq!(pids(&a), [5, 4, 3, 2, 1]);
    // Click on the PID title: ascending by pid; again: descending.
    let (x, _, _) = *a.column_x.iter().find(|c| c.2 == Column::Pid).unwrap();
    let click = |a: &mut App| {
        a.on_mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: x + 1,
            row: a.table_area.y,
            modifiers: KeyModifiers::NONE,
        })
    };
    click(&mut a);
    assert_eq!((a.sort, a.reverse), (Column::Pid, false));
    assert_eq!(pids(&a), [1, 2, 3, 5, 4]);
    click(&mut a);
    assert_eq!(pids(&a), [4, 5, 3, 2, 1], "reversed whole, ties too");
    for _ in 0..a.columns().len() {
        key(&mut a, KeyCode::Char('s'));
    }
    assert_eq!(a.sort, Column::Pid, "s cycles through every column");
}

#[test]
fn selection_follows_its_connection_when_rows_resort() {
    let mut a = app();
    render(&mut a, 150, 12);
    key(&mut a, KeyCode::Down); // id 1, second by receive rate
    assert_eq!(a.selected, Some(Key::Conn(1)), "{:?} {}", pids(&a), a.cursor);
    // Now connection 2 receives the most: it moves to the top, 1 moves down.
    let mut next = conns(3);
    next[1].bytes_recv += 100_000_000;
    a.ingest(Snapshot { now_ns: T0 + S, conns: next, stats: stats() });
    assert_eq!(pids(&a)[0], 2);
    assert_eq!(a.selected, Some(Key::Conn(1)));
    assert_eq!(pids(&a)[a.cursor], 1);
    // Connections in any order (not the tracer's): the same.
    let mut shuffled = conns(3);
    shuffled[1].bytes_recv += 200_000_000;
    shuffled.reverse();
    a.ingest(Snapshot { now_ns: T0 + S + S / 2, conns: shuffled, stats: stats() });
    assert_eq!(pids(&a)[a.cursor], 1);
    // When the selected connection goes, the cursor stays at its height.
    let gone: Vec<_> = conns(4).into_iter().filter(|c| c.id != 1).collect();
    let at = a.cursor;
    a.ingest(Snapshot { now_ns: T0 + 3 * S, conns: gone, stats: stats() });
    assert_eq!(a.cursor, at);
    assert_ne!(a.selected, Some(Key::Conn(1)));
}

#[test]
fn filter_line_is_live_and_keeps_the_last_good_filter() {
    let mut a = app();
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "port:44");
    assert_eq!(pids(&a), Vec::<u64>::new(), "applied while typing");
    typed(&mut a, "3");
    assert_eq!(pids(&a), [1, 2]);
    typed(&mut a, "x");
    let err = a.input.as_ref().unwrap().error.clone().unwrap();
    assert!(err.contains("port wants a port"), "{err}");
    assert_eq!(pids(&a), [1, 2], "the last good filter stays");
    let s = screen(&mut a, 150, 12);
    assert!(s.contains("port wants a port"), "the error shows inline: {s}");
    key(&mut a, KeyCode::Backspace);
    assert!(a.input.as_ref().unwrap().error.is_none());
    key(&mut a, KeyCode::Enter);
    assert!(a.input.is_none());
    assert_eq!(a.filter_text, "port:443");
    // Editing again starts from the kept filter; Esc clears it.
    key(&mut a, KeyCode::Char('/'));
    assert_eq!(a.input.as_ref().unwrap().text, "port:443");
    key(&mut a, KeyCode::Esc);
    assert_eq!(pids(&a).len(), 5);
    assert!(a.filter.is_empty());
    // Negation and bare words.
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "!nginx curl");
    key(&mut a, KeyCode::Enter);
    assert_eq!(pids(&a), [3, 5]);
}

#[test]
fn closed_pause_and_scroll() {
    let mut a = app();
    render(&mut a, 150, 12);
    key(&mut a, KeyCode::Char('c'));
    assert!(!pids(&a).contains(&5), "closed hidden");
    key(&mut a, KeyCode::Char('c'));
    assert!(pids(&a).contains(&5));
    key(&mut a, KeyCode::Char(' '));
    a.ingest(Snapshot { now_ns: T0 + S, conns: conns(1)[..2].to_vec(), stats: stats() });
    assert_eq!(pids(&a).len(), 5, "paused: the display holds still");
    key(&mut a, KeyCode::Char(' '));
    assert_eq!(pids(&a).len(), 2, "unpaused: the newest snapshot shows");
    a.ingest(Snapshot { now_ns: T0 + 2 * S, conns: conns(5), stats: stats() });
    let wheel = |a: &mut App, kind| {
        a.on_mouse(MouseEvent { kind, column: 5, row: 5, modifiers: KeyModifiers::NONE })
    };
    wheel(&mut a, MouseEventKind::ScrollDown);
    assert_eq!(a.cursor, 3);
    wheel(&mut a, MouseEventKind::ScrollUp);
    assert_eq!(a.cursor, 0);
    wheel(&mut a, MouseEventKind::ScrollUp);
    assert_eq!(a.cursor, 0, "stops at the top");
    key(&mut a, KeyCode::End);
    assert_eq!(a.cursor, 4);
    assert_eq!(
        a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        super::Action::Quit
    );
    assert_eq!(
        a.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)),
        super::Action::Quit
    );
}

#[test]
fn only_visible_rows_are_drawn_and_the_cursor_stays_on_screen() {
    let mut a = App::new(info(), Filter::default(), Theme::colored(), 1.0);
    let many: Vec<Connection> = (0..10_000u64)
        .map(|i| {
            let mut c = conns(1)[0].clone();
            c.id = i + 1;
            c.tuple.rport = (i % 60000) as u16;
            c.bytes_recv = i;
            c
        })
        .collect();
    a.ingest(Snapshot { now_ns: T0, conns: many, stats: stats() });
    render(&mut a, 150, 20);
    key(&mut a, KeyCode::PageDown);
    key(&mut a, KeyCode::PageDown);
    let page = usize::from(a.table_area.height - 1);
    assert_eq!(a.cursor, 2 * page);
    assert!(a.offset <= a.cursor && a.cursor < a.offset + page);
    key(&mut a, KeyCode::End);
    let s = screen(&mut a, 150, 20);
    assert_eq!(a.offset, 10_000 - page);
    assert!(s.contains(":0 "), "the last row (receive total 0) is on screen: {s}");
}

#[test]
fn no_color_means_no_colour() {
    use ratatui::style::Color;
    let on = |v: Option<&str>| {
        let mut a = App::new(
            info(),
            Filter::default(),
            Theme::for_no_color(v.map(std::ffi::OsStr::new)),
            1.0,
        );
        a.ingest(Snapshot { now_ns: T0 - S, conns: conns(1), stats: stats() });
        a.ingest(Snapshot {
            now_ns: T0,
            conns: conns(2),
            stats: Stats { events_lost: 1, ..stats() },
        });
        key(&mut a, KeyCode::Char('e'));
        let t = render(&mut a, 150, 20);
        t.backend().buffer().content.iter().any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
    };
    assert!(on(None) && on(Some("")), "colour by default");
    assert!(!on(Some("1")), "NO_COLOR=1: not one coloured cell");
}

#[test]
fn any_terminal_size_draws_without_panicking() {
    for (w, h) in [(1, 1), (10, 3), (40, 8), (80, 4), (300, 100)] {
        let mut a = app();
        for k in ['e', 'g'] {
            key(&mut a, KeyCode::Char(k));
        }
        key(&mut a, KeyCode::Enter);
        render(&mut a, w, h);
        key(&mut a, KeyCode::Char('?'));
        render(&mut a, w, h);
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::End);
        key(&mut a, KeyCode::PageDown);
        render(&mut a, w, h);
        a.on_mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: w.saturating_sub(1),
            row: h.saturating_sub(1),
            modifiers: KeyModifiers::NONE,
        });
    }
}
