//! The filter language, shared by `--filter`, the older per-field flags and
//! the TUI's `/` line: space-separated terms that must all match.
//!
//! `port:443` (either end, or a range `8000-8100`), `lport:`, `rport:`,
//! `pid:`, `proc:` (name or command-line substring), `proto:tcp|udp`,
//! `state:open|closed|in|out`, `addr:` (an IP or CIDR at either end),
//! `user:`, `cgroup:`, `container:`, `netns:`; a bare word matches the
//! process name, command line or an address; `!` negates a term; `"…"`
//! quotes a value with spaces. A keyed term's value may name several
//! alternatives, `port:80|443`: any of them matches.
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

use crate::names::Services;
use crate::tracer::health::Health;
use crate::tracer::model::{Direction, Owner, Proto, State, Tuple};

/// A parsed filter; the empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<Term>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    negated: bool,
    test: Test,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    Port(Ports),
    LPort(Ports),
    RPort(Ports),
    Pid(u32),
    /// Lower-cased needle, matched case-insensitively.
    Proc(String),
    Proto(Proto),
    State(StateTest),
    Health(HealthTest),
    Addr(IpNet),
    /// Lower-cased substring of the remote end's resolved name.
    Host(String),
    Container(String),
    /// Lower-cased substring of the owner's user name.
    User(String),
    /// Lower-cased substring of the owner's cgroup path.
    Cgroup(String),
    Netns(u32),
    Word(String),
    /// `key:a|b`: any of the alternatives, all of one key.
    Any(Vec<Test>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    lo: u16,
    hi: u16,
}

impl Ports {
    fn has(self, p: u16) -> bool {
        (self.lo..=self.hi).contains(&p)
    }
}

/// `health:`: what the last interval of a TCP connection showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HealthTest {
    /// Any of the conditions below: the rows the table marks `!`.
    Bad,
    Retrans,
    ZeroWindow,
    SendStalled,
    RecvStalled,
}

impl HealthTest {
    fn name(self) -> &'static str {
        match self {
            HealthTest::Bad => "bad",
            HealthTest::Retrans => "retrans",
            HealthTest::ZeroWindow => "zero-window",
            HealthTest::SendStalled => "send-stalled",
            HealthTest::RecvStalled => "recv-stalled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateTest {
    Open,
    Closed,
    In,
    Out,
}

/// What is wrong with a filter's text, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad filter: {0}")]
pub struct FilterError(String);

const KEYS: &str = "port, lport, rport, pid, proc, proto, state, health, addr, host, user, cgroup, container, netns";

/// What a filter looks at: one connection, or the connection of an event.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub tuple: &'a Tuple,
    pub owner: &'a Owner,
    pub state: State,
    pub direction: Direction,
    /// TCP: the last interval's health, where known (not for events).
    pub health: Option<Health>,
    /// The remote address's name, where the table has resolved it.
    pub remote_name: Option<&'a str>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let terms = tokens(text)?.into_iter().map(term).collect::<Result<_, _>>()?;
        Ok(Filter { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Both filters' terms (for the per-field flags beside `--filter`).
    pub fn and(mut self, other: Filter) -> Filter {
        self.terms.extend(other.terms);
        self
    }

    pub fn pid(pid: u32) -> Filter {
        Filter::one(Test::Pid(pid))
    }

    pub fn port(port: u16) -> Filter {
        Filter::one(Test::Port(Ports { lo: port, hi: port }))
    }

    pub fn proto(proto: Proto) -> Filter {
        Filter::one(Test::Proto(proto))
    }

    pub fn process(text: &str) -> Filter {
        Filter::one(Test::Proc(text.to_lowercase()))
    }

    fn one(test: Test) -> Filter {
        Filter { terms: vec![Term { negated: false, test }] }
    }

    pub fn matches(&self, s: &Subject) -> bool {
        self.terms.iter().all(|t| t.test.matches(s) != t.negated)
    }

    /// Whether a term looks at resolved names (`host:`), which only the
    /// interactive table has.
    pub fn reads_names(&self) -> bool {
        self.terms.iter().any(|t| t.test.reads_names())
    }

    /// A matcher for many rows at once (the TUI's table): it reads each
    /// process's name, command line and container once, not once per
    /// connection.
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher { filter: self, by_pid: FxHashMap::default() }
    }
}

/// `Filter::matches` over many subjects, remembering per process which
/// terms its texts satisfy. Processes share a pid's texts; pid 0 (owner
/// unknown) does not, so it is never remembered.
pub struct Matcher<'f> {
    filter: &'f Filter,
    /// Bit i: term i's test on the owner's texts passed.
    by_pid: FxHashMap<u32, u64>,
}

impl Matcher<'_> {
    pub fn matches(&mut self, s: &Subject) -> bool {
        let terms = &self.filter.terms;
        if terms.len() > 64 || s.owner.pid == 0 {
            return self.filter.matches(s);
        }
        let owner_bits = *self.by_pid.entry(s.owner.pid).or_insert_with(|| {
            terms
                .iter()
                .enumerate()
                .filter(|(_, t)| t.test.owner_text(s.owner) == Some(true))
                .fold(0, |bits, (i, _)| bits | 1 << i)
        });
        terms.iter().enumerate().all(|(i, t)| {
            let owner = owner_bits & (1 << i) != 0;
            let hit = match &t.test {
                Test::Word(w) => owner || s.tuple.addr_text_contains(w),
                test if test.reads_only_the_owner() => owner,
                test => test.matches(s),
            };
            hit != t.negated
        })
    }
}

impl Test {
    fn reads_names(&self) -> bool {
        match self {
            Test::Host(_) => true,
            Test::Any(tests) => tests.iter().any(Test::reads_names),
            _ => false,
        }
    }

    fn matches(&self, s: &Subject) -> bool {
        let t = s.tuple;
        match self {
            Test::Port(p) => p.has(t.lport) || (t.raddr.is_some() && p.has(t.rport)),
            Test::LPort(p) => p.has(t.lport),
            Test::RPort(p) => t.raddr.is_some() && p.has(t.rport),
            Test::Pid(p) => s.owner.pid == *p,
            Test::Proc(_) | Test::Container(_) | Test::User(_) | Test::Cgroup(_) => {
                self.owner_text(s.owner) == Some(true)
            }
            Test::Proto(p) => t.proto == *p,
            Test::State(st) => match st {
                StateTest::Open => s.state == State::Open,
                StateTest::Closed => s.state == State::Closed,
                StateTest::In => s.direction == Direction::Incoming,
                StateTest::Out => s.direction == Direction::Outgoing,
            },
            Test::Health(h) => s.health.is_some_and(|x| match h {
                HealthTest::Bad => x.marked(),
                HealthTest::Retrans => x.retransmits > 0,
                HealthTest::ZeroWindow => x.zero_window,
                HealthTest::SendStalled => x.send_stalled,
                HealthTest::RecvStalled => x.recv_stalled,
            }),
            Test::Host(h) => s.remote_name.is_some_and(|n| contains_ci(n, h)),
            Test::Addr(net) => net.contains(&t.laddr) || t.raddr.is_some_and(|r| net.contains(&r)),
            Test::Netns(n) => t.netns == *n,
            Test::Word(w) => self.owner_text(s.owner) == Some(true) || t.addr_text_contains(w),
            Test::Any(tests) => tests.iter().any(|test| test.matches(s)),
        }
    }

    /// Decided by the owner's texts alone, the same for every connection
    /// of a process.
    fn reads_only_the_owner(&self) -> bool {
        match self {
            Test::Proc(_) | Test::Container(_) | Test::User(_) | Test::Cgroup(_) => true,
            Test::Any(tests) => tests.iter().all(Test::reads_only_the_owner),
            _ => false,
        }
    }

    /// The part of a test that reads only the owner's texts (the same for
    /// every connection of a process); None for tests without one.
    fn owner_text(&self, owner: &Owner) -> Option<bool> {
        match self {
            Test::Proc(n) | Test::Word(n) => {
                Some(contains_ci(&owner.comm, n) || contains_ci(&owner.cmdline, n))
            }
            Test::Container(n) => {
                Some(owner.container.as_deref().is_some_and(|c| contains_ci(c, n)))
            }
            Test::User(n) => Some(owner.user.as_deref().is_some_and(|u| contains_ci(u, n))),
            Test::Cgroup(n) => Some(owner.cgroup.as_deref().is_some_and(|c| contains_ci(c, n))),
            Test::Any(tests) if self.reads_only_the_owner() => {
                Some(tests.iter().any(|t| t.owner_text(owner) == Some(true)))
            }
            _ => None,
        }
    }
}

impl Tuple {
    /// A bare word's test on the addresses.
    fn addr_text_contains(&self, w: &str) -> bool {
        addr_contains(self.laddr, w) || self.raddr.is_some_and(|r| addr_contains(r, w))
    }
}

/// Case-insensitive (ASCII) substring test without allocating: this runs
/// for every row on every keystroke.
fn contains_ci(hay: &str, lower_needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), lower_needle.as_bytes());
    n.is_empty()
        || h.windows(n.len()).any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

fn addr_contains(a: IpAddr, w: &str) -> bool {
    // Only words that could be part of an address pay for formatting one.
    w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
        && contains_ci(&a.to_string(), w)
}

/// Split on spaces, keeping `"…"` together; quotes are removed.
fn tokens(text: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(FilterError("a quote is not closed".into()));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

fn term(tok: String) -> Result<Term, FilterError> {
    let (negated, body) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok.as_str()),
    };
    if body.is_empty() {
        return Err(FilterError(format!("'{}' negates nothing", show(&tok))));
    }
    let test = match body.split_once(':') {
        Some((key, value)) if is_key(key) && value.contains('|') => {
            Test::Any(value.split('|').map(|v| keyed(key, v)).collect::<Result<_, _>>()?)
        }
        Some((key, value)) if is_key(key) => keyed(key, value)?,
        // A bare IPv6 address or CIDR has colons too.
        Some(_) if body.parse::<IpAddr>().is_ok() || body.parse::<IpNet>().is_ok() => {
            Test::Word(body.to_lowercase())
        }
        Some((key, _)) => {
            return Err(FilterError(format!("unknown key '{}' (keys: {KEYS})", show(key))));
        }
        None => Test::Word(body.to_lowercase()),
    };
    Ok(Term { negated, test })
}

fn is_key(k: &str) -> bool {
    KEYS.split(", ").any(|key| key == k)
}

fn keyed(key: &str, value: &str) -> Result<Test, FilterError> {
    let bad = |what: &str| FilterError(format!("{key}:{} — {key} wants {what}", show(value)));
    if value.is_empty() {
        return Err(FilterError(format!("{key}: wants a value")));
    }
    Ok(match key {
        "port" => Test::Port(ports(value).ok_or_else(|| bad(PORTS))?),
        "lport" => Test::LPort(ports(value).ok_or_else(|| bad(PORTS))?),
        "rport" => Test::RPort(ports(value).ok_or_else(|| bad(PORTS))?),
        "host" => Test::Host(value.to_lowercase()),
        "pid" => Test::Pid(value.parse().map_err(|_| bad("a process id"))?),
        "netns" => Test::Netns(value.parse().map_err(|_| bad("a namespace inode number"))?),
        "proc" => Test::Proc(value.to_lowercase()),
        "container" => Test::Container(value.to_lowercase()),
        "user" => Test::User(value.to_lowercase()),
        "cgroup" => Test::Cgroup(value.to_lowercase()),
        "proto" => Test::Proto(match value.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(bad("tcp or udp")),
        }),
        "state" => Test::State(match value.to_ascii_lowercase().as_str() {
            "open" | "established" | "estab" => StateTest::Open,
            "closed" | "close" => StateTest::Closed,
            "in" | "incoming" => StateTest::In,
            "out" | "outgoing" => StateTest::Out,
            _ => return Err(bad("open, closed, in or out")),
        }),
        "health" => Test::Health(match value.to_ascii_lowercase().as_str() {
            "bad" | "unhealthy" => HealthTest::Bad,
            "retrans" => HealthTest::Retrans,
            "zero-window" => HealthTest::ZeroWindow,
            "send-stalled" => HealthTest::SendStalled,
            "recv-stalled" => HealthTest::RecvStalled,
            _ => return Err(bad("bad, retrans, zero-window, send-stalled or recv-stalled")),
        }),
        "addr" => Test::Addr(match value.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => IpNet::from(value.parse::<IpAddr>().map_err(|_| bad("an IP or a CIDR"))?),
        }),
        _ => unreachable!("is_key admitted {key}"),
    })
}

const PORTS: &str = "a port, a range A-B or a service name from /etc/services";

fn ports(v: &str) -> Option<Ports> {
    let (lo, hi) = match v.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = v.parse().ok().or_else(|| Services::system().port(v))?;
            (p, p)
        }
    };
    (lo <= hi).then_some(Ports { lo, hi })
}

/// The user's own text in an error message, with control characters made
/// harmless and long text cut.
fn show(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    let mut out = crate::text::escape(&cut);
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

impl Test {
    /// The term's key (None for a bare word) and its value, as typed.
    fn key_value(&self) -> (Option<&'static str>, String) {
        let ports = |p: &Ports| {
            if p.lo == p.hi { p.lo.to_string() } else { format!("{}-{}", p.lo, p.hi) }
        };
        let quoted = |v: &str| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                format!("\"{v}\"")
            } else {
                v.to_owned()
            }
        };
        match self {
            Test::Port(p) => (Some("port"), ports(p)),
            Test::LPort(p) => (Some("lport"), ports(p)),
            Test::RPort(p) => (Some("rport"), ports(p)),
            Test::Pid(p) => (Some("pid"), p.to_string()),
            Test::Proc(v) => (Some("proc"), quoted(v)),
            Test::Proto(Proto::Tcp) => (Some("proto"), "tcp".into()),
            Test::Proto(Proto::Udp) => (Some("proto"), "udp".into()),
            Test::State(s) => (Some("state"), format!("{s:?}").to_lowercase()),
            Test::Health(h) => (Some("health"), h.name().into()),
            Test::Addr(n) => (Some("addr"), n.to_string()),
            Test::Host(v) => (Some("host"), quoted(v)),
            Test::Container(v) => (Some("container"), quoted(v)),
            Test::User(v) => (Some("user"), quoted(v)),
            Test::Cgroup(v) => (Some("cgroup"), quoted(v)),
            Test::Netns(n) => (Some("netns"), n.to_string()),
            Test::Word(w) => (None, quoted(w)),
            Test::Any(tests) => {
                let key = tests.first().and_then(|t| t.key_value().0);
                let values: Vec<String> = tests.iter().map(|t| t.key_value().1).collect();
                (key, values.join("|"))
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if t.negated {
                f.write_str("!")?;
            }
            match t.test.key_value() {
                (Some(key), value) => write!(f, "{key}:{value}")?,
                (None, value) => f.write_str(&value)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
