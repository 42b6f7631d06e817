use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn tuple(proto: Proto, l: &str, lport: u16, r: Option<&str>, rport: u16) -> Tuple {
    let laddr: IpAddr = l.parse().unwrap();
    Tuple {
        proto,
        family: if laddr.is_ipv4() { 4 } else { 6 },
        laddr,
        lport,
        raddr: r.map(|r| r.parse().unwrap()),
        rport,
        netns: 4026531840,
    }
}

fn owner(pid: u32, comm: &str, cmdline: &str, container: Option<&str>) -> Owner {
    Owner {
        pid,
        comm: comm.into(),
        cmdline: cmdline.into(),
        container: container.map(Into::into),
        ..Owner::default()
    }
}

#[derive(Debug)]
struct Case {
    tuple: Tuple,
    owner: Owner,
    state: State,
    direction: Direction,
    health: Option<Health>,
    remote_name: Option<String>,
}

impl Case {
    fn subject(&self) -> Subject<'_> {
        Subject {
            tuple: &self.tuple,
            owner: &self.owner,
            state: self.state,
            direction: self.direction,
            health: self.health,
            remote_name: self.remote_name.as_deref(),
        }
    }
}

fn curl() -> Case {
    Case {
        tuple: tuple(Proto::Tcp, "10.0.0.5", 40000, Some("93.184.216.34"), 443),
        owner: owner(7, "curl", "curl https://Example.com/x", None),
        state: State::Open,
        direction: Direction::Outgoing,
        health: None,
        remote_name: None,
    }
}

fn dns() -> Case {
    Case {
        tuple: tuple(Proto::Udp, "::1", 53, None, 0),
        owner: owner(90, "resolved", "/lib/systemd/systemd-resolved", Some("abc123def456")),
        state: State::Closed,
        direction: Direction::Unknown,
        health: None,
        remote_name: None,
    }
}

#[test]
fn health_terms_select_the_rows_the_table_marks() {
    let healthy = Case { health: Some(Health::default()), ..curl() };
    let retrans = Case { health: Some(Health { retransmits: 2, ..Health::default() }), ..curl() };
    let stalled =
        Case { health: Some(Health { recv_stalled: true, ..Health::default() }), ..curl() };
    for c in [&healthy, &retrans, &stalled, &curl(), &dns()] {
        let marked = c.health.is_some_and(|h| h.marked());
        assert_eq!(m("health:bad", c), marked, "{c:?}");
        assert_eq!(m("!health:bad", c), !marked, "{c:?}");
    }
    assert!(m("health:retrans", &retrans) && !m("health:retrans", &stalled));
    assert!(m("health:recv-stalled", &stalled) && !m("health:send-stalled", &stalled));
    assert!(m("health:zero-window|retrans", &retrans));
    assert!(!m("health:zero-window", &retrans));
    assert!(Filter::parse("health:slow").is_err());
    assert_eq!(Filter::parse("health:retrans|bad").unwrap().to_string(), "health:retrans|bad");
}

#[test]
fn ports_by_service_name_and_hosts_by_resolved_name() {
    // /etc/services, or the built-in list where there is none: https is 443.
    assert!(m("port:https", &curl()) && m("rport:HTTPS", &curl()) && !m("lport:https", &curl()));
    assert!(m("port:http|https", &curl()));
    assert_eq!(Filter::parse("port:https").unwrap().to_string(), "port:443");
    let err = Filter::parse("port:no-such-service").unwrap_err().to_string();
    assert!(err.contains("service name"), "{err}");
    let named = Case { remote_name: Some("lb-7.Example.com".into()), ..curl() };
    assert!(m("host:example", &named) && m("host:EXAMPLE.COM", &named));
    assert!(!m("host:github", &named) && !m("host:example", &curl()), "no name, no match");
    assert!(m("!host:github", &named));
    assert!(Filter::parse("host:x").unwrap().reads_names());
    assert!(Filter::parse("port:1 | host:x").is_ok());
    assert!(Filter::parse("proc:a|b host:github|gitlab").unwrap().reads_names());
    assert!(!Filter::parse("proc:host").unwrap().reads_names());
}

fn m(filter: &str, c: &Case) -> bool {
    Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}")).matches(&c.subject())
}

#[test]
fn each_key_matches_its_field() {
    let (c, d) = (curl(), dns());
    for (f, on_curl, on_dns) in [
        ("", true, true),
        ("port:443", true, false),
        ("port:40000", true, false),
        ("port:53", false, true),
        ("port:0", false, false), // "*" has no port
        ("port:400-500", true, false),
        ("lport:443", false, false),
        ("lport:40000", true, false),
        ("rport:443", true, false),
        ("pid:7", true, false),
        ("proc:CURL", true, false),
        ("proc:example.com", true, false),
        ("proc:systemd", false, true),
        ("proto:tcp", true, false),
        ("proto:UDP", false, true),
        ("state:open", true, false),
        ("state:closed", false, true),
        ("state:out", true, false),
        ("state:in", false, false),
        ("addr:10.0.0.0/8", true, false),
        ("addr:93.184.216.34", true, false),
        ("addr:::1", false, true),
        ("addr:::/0", false, true),
        ("addr:0.0.0.0/0", true, false),
        ("container:ABC", false, true),
        ("container:x", false, false),
        ("netns:4026531840", true, true),
        ("netns:1", false, false),
        ("curl", true, false),
        ("resolved", false, true),
        ("93.184", true, false),
        ("::1", false, true),
        ("!curl", false, true),
        ("!port:443 !port:53", false, false),
        ("proto:tcp port:443", true, false),
        ("proto:tcp port:53", false, false),
        ("proc:\"curl https\"", true, false),
        ("  curl   pid:7 ", true, false),
    ] {
        assert_eq!((m(f, &c), m(f, &d)), (on_curl, on_dns), "{f:?}");
    }
}

#[test]
fn bad_text_says_what_is_wrong() {
    for (f, says) in [
        ("port:htp", "port wants a port, a range A-B or a service name"),
        ("port:70000", "port wants"),
        ("port:9-1", "port wants"),
        ("port:", "port: wants a value"),
        ("pid:x", "pid wants a process id"),
        ("proto:icmp", "tcp or udp"),
        ("state:listen", "open, closed, in or out"),
        ("addr:300.1.1.1", "an IP or a CIDR"),
        ("addr:10.0.0.0/40", "an IP or a CIDR"),
        ("colour:red", "unknown key 'colour'"),
        ("!", "negates nothing"),
        ("proc:\"x", "quote is not closed"),
        ("\u{1b}[2J:x", "unknown key '\\u{1b}[2J'"),
    ] {
        let e = Filter::parse(f).expect_err(f).to_string();
        assert!(e.starts_with("bad filter: ") && e.contains(says), "{f:?}: {e}");
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{f:?}: {e}");
    }
}

#[test]
fn flags_and_text_combine() {
    let c = curl();
    let f = Filter::parse("proto:tcp").unwrap().and(Filter::pid(7)).and(Filter::port(443));
    assert!(f.matches(&c.subject()));
    assert!(!f.and(Filter::process("wget")).matches(&c.subject()));
    assert_eq!(Filter::proto(Proto::Udp).to_string(), "proto:udp");
}

#[test]
fn either_of_and_user_and_cgroup() {
    let mut c = curl();
    c.owner.user = Some("Alice".into());
    c.owner.cgroup = Some("/system.slice/nginx.service".into());
    assert!(m("port:80|443", &c));
    assert!(!m("port:80|8080", &c));
    assert!(m("!port:80|8080", &c));
    assert!(m("proc:wget|curl", &c) && !m("proc:wget|nginx", &c));
    assert!(m("state:closed|out", &c) && !m("state:closed|in", &c));
    assert!(m("user:alice", &c) && !m("user:bob", &c));
    assert!(m("cgroup:nginx.service", &c) && m("cgroup:docker|system.slice", &c));
    // No user known: not a match, and its negation is.
    assert!(!m("user:alice", &dns()) && m("!user:alice", &dns()));
    let text = "port:80|443 !proc:\"a b\"|c user:x|y";
    assert_eq!(Filter::parse(text).unwrap().to_string(), text);
    assert!(Filter::parse("port:80|").is_err());
    let e = Filter::parse("port:80|htp").unwrap_err().to_string();
    assert!(e.contains("port:htp"), "{e}");
}

fn any_term() -> impl Strategy<Value = String> {
    let word = "[a-z0-9.]{1,8}";
    prop_oneof![
        (0u16..2000, 0u16..2000).prop_map(|(a, b)| format!("port:{a}|{b}")),
        (word, word).prop_map(|(a, b)| format!("proc:{a}|{b}")),
        word.prop_map(|w| format!("user:{w}")),
        (word, word).prop_map(|(a, b)| format!("cgroup:{a}|{b}")),
        (0u16..2000).prop_map(|p| format!("port:{p}")),
        (0u16..100, 0u16..100).prop_map(|(a, b)| format!("lport:{}-{}", a.min(b), a.max(b))),
        (0u16..2000).prop_map(|p| format!("rport:{p}")),
        (0u32..100).prop_map(|p| format!("pid:{p}")),
        word.prop_map(|w| format!("proc:{w}")),
        prop_oneof![Just("proto:tcp"), Just("proto:udp")].prop_map(String::from),
        prop_oneof![Just("state:open"), Just("state:closed"), Just("state:in"), Just("state:out")]
            .prop_map(String::from),
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, n)| format!("addr:{}/{n}", std::net::Ipv4Addr::from(a))),
        word.prop_map(|w| format!("container:{w}")),
        word.prop_map(String::from),
    ]
}

fn any_case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<[u8; 4]>(),
        0u16..2000,
        proptest::option::of(any::<[u8; 4]>()),
        0u16..2000,
        0u32..100,
        "[a-z0-9.]{0,10}",
        proptest::option::of("[a-z0-9]{0,12}"),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(tcp, l, lport, r, rport, pid, comm, container, open, out)| {
            let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_string();
            let r = r.map(ip);
            Case {
                tuple: tuple(
                    if tcp { Proto::Tcp } else { Proto::Udp },
                    &ip(l),
                    lport,
                    r.as_deref(),
                    rport,
                ),
                owner: Owner {
                    user: Some(format!("u{}", pid % 7)),
                    cgroup: Some(format!("/system.slice/{comm}.service")),
                    ..owner(pid, &comm, &format!("/usr/bin/{comm} --flag"), container.as_deref())
                },
                state: if open { State::Open } else { State::Closed },
                direction: if out { Direction::Outgoing } else { Direction::Incoming },
                health: None,
                remote_name: None,
            }
        })
}

proptest! {
    /// Whatever is typed, parsing returns (never panics), and an error is one line.
    #[test]
    fn parse_never_panics(text in "\\PC{0,40}") {
        if let Err(e) = Filter::parse(&text) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    /// A filter printed and parsed again is the same filter.
    #[test]
    fn display_round_trips(terms in proptest::collection::vec(any_term(), 0..5), neg in any::<u8>()) {
        let text = terms
            .iter()
            .enumerate()
            .map(|(i, t)| if neg >> (i % 8) & 1 == 1 { format!("!{t}") } else { t.clone() })
            .collect::<Vec<_>>()
            .join(" ");
        let f = Filter::parse(&text).unwrap();
        prop_assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
    }

    /// Terms combine by "and", and `!` is exactly "not".
    #[test]
    fn conjunction_and_negation(a in any_term(), b in any_term(), c in any_case()) {
        let s = c.subject();
        let one = |t: &str| Filter::parse(t).unwrap().matches(&s);
        prop_assert_eq!(one(&format!("{a} {b}")), one(&a) && one(&b));
        prop_assert_eq!(one(&format!("!{a}")), !one(&a));
        prop_assert_eq!(one(&format!("!{a} !{b}")), !one(&a) && !one(&b));
    }

    /// The table's matcher, which reads each process's texts once, agrees
    /// with matching row by row (rows of one pid share its texts, as the
    /// tracer's owners do; pid 0, an unknown owner, does not).
    #[test]
    fn matcher_agrees_with_matches(
        terms in proptest::collection::vec(any_term(), 0..4),
        neg in any::<u8>(),
        cases in proptest::collection::vec(any_case(), 1..12),
        pids in proptest::collection::vec(0u32..4, 12),
    ) {
        let text = terms
            .iter()
            .enumerate()
            .map(|(i, t)| if neg >> i & 1 == 1 { format!("!{t}") } else { t.clone() })
            .collect::<Vec<_>>()
            .join(" ");
        let f = Filter::parse(&text).unwrap();
        let mut cases = cases;
        let mut first: std::collections::HashMap<u32, Owner> = Default::default();
        for (c, &pid) in cases.iter_mut().zip(&pids) {
            c.owner.pid = pid;
            if pid != 0 {
                c.owner = first.entry(pid).or_insert_with(|| c.owner.clone()).clone();
            }
        }
        let mut m = f.matcher();
        for c in &cases {
            prop_assert_eq!(m.matches(&c.subject()), f.matches(&c.subject()), "{} on {:?}", text, c);
        }
    }

    /// `port:P` is `lport:P` or `rport:P`, and a range is any of its ports.
    #[test]
    fn port_semantics(p in 0u16..2000, w in 0u16..5, c in any_case()) {
        let s = c.subject();
        let one = |t: String| Filter::parse(&t).unwrap().matches(&s);
        prop_assert_eq!(one(format!("port:{p}")), one(format!("lport:{p}")) || one(format!("rport:{p}")));
        let range = one(format!("port:{p}-{}", p + w));
        prop_assert_eq!(range, (p..=p + w).any(|q| one(format!("port:{q}"))));
    }
}
