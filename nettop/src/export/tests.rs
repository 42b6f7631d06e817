use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use std::str::FromStr;

use super::*;
use crate::tracer::{EventConn, Owner, Proto, Tuple};

fn tuple(proto: Proto, lport: u16, rport: u16) -> Tuple {
    Tuple {
        proto,
        family: 4,
        laddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        lport,
        raddr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        rport,
        netns: 1,
    }
}

fn owner(comm: &str) -> Owner {
    Owner { pid: 42, comm: comm.into(), ..Owner::default() }
}

fn conn(id: u64, comm: &str, rport: u16, sent: u64, recv: u64) -> Connection {
    Connection {
        id,
        tuple: tuple(Proto::Tcp, 40000 + id as u16, rport),
        owner: owner(comm).into(),
        direction: Direction::Outgoing,
        state: State::Open,
        bytes_sent: sent,
        bytes_recv: recv,
        msgs_sent: 0,
        msgs_recv: 0,
        retransmits: 0,
        backfilled: false,
        counted_since_start: false,
        vanished: false,
        health: None,
        tcp: None,
        first_ns: 0,
        last_ns: 0,
    }
}

fn event(kind: EventKind, c: &Connection, bytes: Option<(u64, u64)>) -> Event {
    Event {
        event: kind,
        ts_ns: 0,
        conn: Some(EventConn {
            id: (kind != EventKind::ConnectFailed).then_some(c.id),
            tuple: c.tuple.clone(),
            owner: c.owner.clone(),
            direction: c.direction,
        }),
        bytes_sent: bytes.map(|b| b.0),
        bytes_recv: bytes.map(|b| b.1),
        errno: None,
        lost: None,
        vanished: false,
        row: None,
    }
}

impl Aggregator {
    /// The totals of the set with these label values.
    fn totals(&self, values: &[&str]) -> Option<Totals> {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        self.index.get(&key).map(|&i| self.totals[i])
    }

    fn sum(&self) -> Totals {
        self.totals.iter().fold(Totals::default(), |a, t| Totals {
            bytes_sent: a.bytes_sent + t.bytes_sent,
            bytes_recv: a.bytes_recv + t.bytes_recv,
            opened_out: a.opened_out + t.opened_out,
            opened_in: a.opened_in + t.opened_in,
            closed: a.closed + t.closed,
            connect_failed: a.connect_failed + t.connect_failed,
            retransmits: a.retransmits + t.retransmits,
            open: a.open + t.open,
        })
    }
}

fn agg() -> Aggregator {
    Aggregator::new(LabelSpec::default(), PortClass { ephemeral_from: 32768 }, 100)
}

const CURL: [&str; 3] = ["curl", "tcp", "443"];

#[test]
fn bytes_grow_by_deltas_and_survive_the_connection() {
    let mut a = agg();
    let t0 = Instant::now();
    let mut c = conn(1, "curl", 443, 100, 10);
    a.event(&event(EventKind::Connect, &c, None));
    a.refresh(std::slice::from_ref(&c), t0);
    c.bytes_sent = 250;
    c.bytes_recv = 30;
    a.refresh(std::slice::from_ref(&c), t0);
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.bytes_sent, t.bytes_recv, t.opened_out, t.open), (250, 30, 1, 1));
    // It closes, lingers, then leaves the table: the totals stay.
    a.event(&event(EventKind::Close, &c, Some((300, 40))));
    c.state = State::Closed;
    c.bytes_sent = 300;
    c.bytes_recv = 40;
    a.refresh(std::slice::from_ref(&c), t0);
    a.refresh(&[], t0);
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.bytes_sent, t.bytes_recv, t.closed, t.open), (300, 40, 1, 0));
    assert_eq!(a.tracked(), 0, "a closed connection gone from the table is forgotten");
}

#[test]
fn a_connection_between_two_refreshes_counts_once_from_its_events() {
    let mut a = agg();
    let c = conn(7, "curl", 443, 0, 0);
    a.event(&event(EventKind::Connect, &c, None));
    a.event(&event(EventKind::Close, &c, Some((1 << 20, 5))));
    a.refresh(&[], Instant::now());
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.bytes_sent, t.bytes_recv, t.opened_out, t.closed), (1 << 20, 5, 1, 1));
}

#[test]
fn a_close_that_trails_the_table_is_not_counted_twice() {
    // --linger 0: the table drops the connection before its close event
    // reaches the exporter.
    let mut a = agg();
    let t0 = Instant::now();
    let c = conn(3, "curl", 443, 500, 0);
    a.refresh(std::slice::from_ref(&c), t0);
    a.refresh(&[], t0 + Duration::from_secs(1));
    a.event(&event(EventKind::Close, &c, Some((800, 0))));
    a.refresh(&[], t0 + Duration::from_secs(2));
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.bytes_sent, t.opened_out, t.closed), (800, 1, 1));
    assert_eq!(a.tracked(), 0);
}

#[test]
fn counters_never_go_backwards() {
    let mut a = agg();
    let t0 = Instant::now();
    let mut c = conn(1, "curl", 443, 1000, 1000);
    a.refresh(std::slice::from_ref(&c), t0);
    c.bytes_sent = 10; // a source reporting less must not take bytes back
    a.refresh(std::slice::from_ref(&c), t0);
    a.event(&event(EventKind::Close, &c, Some((900, 900))));
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.bytes_sent, t.bytes_recv), (1000, 1000));
}

#[test]
fn connections_older_than_the_tracer_are_not_counted_as_opened() {
    let mut a = agg();
    let mut c = conn(1, "sshd", 22, 5, 5);
    c.backfilled = true;
    c.direction = Direction::Incoming;
    a.refresh(std::slice::from_ref(&c), Instant::now());
    let t = a.totals(&["sshd", "tcp", "22"]).unwrap();
    assert_eq!((t.opened_in, t.opened_out, t.open, t.bytes_sent), (0, 0, 1, 5));
}

#[test]
fn failed_connects_and_retransmits_are_counted_per_label_set() {
    let mut a = agg();
    let c = conn(9, "curl", 443, 0, 0);
    a.event(&event(EventKind::ConnectFailed, &c, None));
    a.event(&event(EventKind::ConnectFailed, &c, None));
    a.event(&event(EventKind::Connect, &c, None));
    a.event(&event(EventKind::Retransmit, &c, None));
    let t = a.totals(&CURL).unwrap();
    assert_eq!((t.connect_failed, t.retransmits, t.opened_out), (2, 1, 1));
}

#[test]
fn label_sets_beyond_the_cap_fold_into_one_overflow_set() {
    let mut a = Aggregator::new(LabelSpec::default(), PortClass { ephemeral_from: 32768 }, 3);
    let conns: Vec<Connection> = (0..50).map(|i| conn(i, "scan", 1000 + i as u16, 10, 1)).collect();
    a.refresh(&conns, Instant::now());
    assert_eq!(a.label_sets(), 4, "three kept apart, one overflow");
    let over = a.totals(&[OVERFLOW; 3]).unwrap();
    assert_eq!((over.bytes_sent, over.opened_out), (470, 47));
    let all = a.sum();
    assert_eq!((all.bytes_sent, all.bytes_recv, all.opened_out, all.open), (500, 50, 50, 50));
}

#[test]
fn ephemeral_ports_fold_and_peerless_sockets_have_no_port() {
    let p = PortClass { ephemeral_from: 32768 };
    assert_eq!(p.class(&tuple(Proto::Tcp, 1, 443)), "443");
    assert_eq!(p.class(&tuple(Proto::Tcp, 1, 32767)), "32767");
    assert_eq!(p.class(&tuple(Proto::Tcp, 1, 32768)), "ephemeral");
    assert_eq!(p.class(&tuple(Proto::Tcp, 1, 65535)), "ephemeral");
    let mut t = tuple(Proto::Udp, 53, 0);
    t.raddr = None;
    assert_eq!(p.class(&t), "*");
    assert!(PortClass::from_host().ephemeral_from <= 32768);
}

#[test]
fn label_lists_parse_and_refuse_unknown_names() {
    assert_eq!("process,proto,port".parse::<LabelSpec>().unwrap(), LabelSpec::default());
    let spec: LabelSpec = " container , process ".parse().unwrap();
    assert_eq!(spec.labels(), &[Label::Container, Label::Process]);
    assert_eq!(spec.to_string(), "container,process");
    assert_eq!("".parse::<LabelSpec>().unwrap().labels(), &[]);
    assert_eq!(
        "process,pid".parse::<LabelSpec>().unwrap_err().to_string(),
        "unknown label `pid` (known: process, proto, port, container)"
    );
    assert_eq!("port,port".parse::<LabelSpec>().unwrap_err(), LabelError::Twice("port"));
    assert!("x\u{1b}[2J".parse::<LabelSpec>().unwrap_err().to_string().contains("\\u{1b}"));
}

#[derive(Debug)]
struct Scrape(std::sync::Mutex<Aggregator>);

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        self.0.lock().unwrap().encode(&mut e)
    }
}

#[test]
fn the_text_format_escapes_hostile_names_and_has_one_line_per_series() {
    let mut a = agg();
    let c = conn(1, "evil\"\n\u{1b}[31m", 443, 7, 3);
    a.refresh(std::slice::from_ref(&c), Instant::now());
    let mut registry = Registry::with_prefix("nettop");
    registry.register_collector(Box::new(Scrape(std::sync::Mutex::new(a))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            "nettop_sent_bytes_total{process=\"evil\\\"\\\\n\\\\u{1b}[31m\",proto=\"tcp\",port=\"443\"} 7\n"
        ),
        "{text}"
    );
    assert!(text.contains("nettop_open_connections{process="), "{text}");
    assert!(text.contains(",direction=\"outgoing\"} 1\n"), "{text}");
    assert!(!text.contains('\u{1b}'), "no raw escape reaches a scraper");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn no_labels_at_all_is_one_total_per_metric() {
    let mut a =
        Aggregator::new(LabelSpec::from_str("").unwrap(), PortClass { ephemeral_from: 32768 }, 10);
    a.refresh(&[conn(1, "a", 443, 5, 0), conn(2, "b", 80, 7, 0)], Instant::now());
    assert_eq!(a.label_sets(), 1);
    let mut registry = Registry::with_prefix("nettop");
    registry.register_collector(Box::new(Scrape(std::sync::Mutex::new(a))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("\nnettop_sent_bytes_total 12\n"), "{text}");
    assert!(
        text.contains("\nnettop_connections_opened_total{direction=\"outgoing\"} 2\n"),
        "{text}"
    );
}
