//! The tracer: turns the probe's maps and events into a table of
//! connections with owners, and a stream of lifecycle events. It knows
//! nothing of any UI.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut tracer = nettop::Tracer::start(nettop::Config::default())?;
//! let mut events = tracer.events().expect("taken once");
//! while let Some(ev) = events.next().await {
//!     println!("{ev:?}");
//! }
//! # Ok(()) }
//! ```
pub mod attribution;
pub mod backfill;
pub mod conntrack;
pub mod model;
mod owners;
mod queue;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use nettop_shared::{ConnKey, Counter, DIR_INCOMING, DIR_OUTGOING, Event as RawEvent};
pub use queue::EventStream;

use crate::filter::{Filter, Subject};
use crate::probe::{Backend, BackendChoice, OffsetsMode, Probe, StartConfig, Verification};
use crate::worker::{StopFlag, Worker};
use conntrack::{Change, Entry, Table};
pub use model::{
    Connection, Direction, Event, EventConn, EventKind, Owner, Proto, State, Stats, Tuple,
};
use owners::Owners;

/// How the tracer runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub tcp: bool,
    pub udp: bool,
    pub ipv6: bool,
    pub backend: BackendChoice,
    pub offsets: OffsetsMode,
    pub btf_path: Option<std::path::PathBuf>,
    /// Capacity of the kernel's connection table; past it, new connections
    /// are counted in `Stats::conn_map_full`.
    pub max_connections: u32,
    /// A UDP flow with no traffic for this long ends.
    pub udp_timeout: Duration,
    /// A closed connection stays in `connections()` this long...
    pub linger: Duration,
    /// ...or until this many newer ones have closed. Under churn (tens of
    /// thousands of connections a second) a 5 s linger kept hundreds of
    /// thousands of closed rows, and listing them each second was most of
    /// the TUI's cost; the latest few thousand show the churn as well.
    pub max_closed: usize,
    /// Event ring buffer size in bytes (power of two).
    pub ring_bytes: u32,
    /// List connections that existed before the tracer started.
    pub backfill: bool,
    pub filter: Filter,
}

impl Default for Config {
    fn default() -> Self {
        let probe = StartConfig::default();
        Config {
            tcp: true,
            udp: true,
            ipv6: true,
            backend: probe.backend,
            offsets: probe.offsets,
            btf_path: None,
            max_connections: probe.max_connections,
            udp_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            max_closed: DEFAULT_MAX_CLOSED,
            ring_bytes: probe.ring_bytes,
            backfill: true,
            filter: Filter::default(),
        }
    }
}

/// `Config::max_closed` unless asked otherwise.
pub const DEFAULT_MAX_CLOSED: usize = 10_000;

/// Facts about the running tracer (for headers and `ready` lines).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Info {
    pub backend: Backend,
    /// "guessed", or "btf" when BTF was asked for or overruled a guess.
    pub offsets: &'static str,
    /// Every guessed field equals BTF; null while unchecked or uncheckable.
    pub verified: Option<bool>,
    pub guess_ms: Option<f64>,
    pub ipv6: bool,
    /// The kernel maps are preallocated for --max-connections (kernels
    /// before 6.1), rather than growing with use.
    pub maps_preallocated: bool,
    /// Why connections older than the tracer could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_error: Option<String>,
}

struct Shared {
    probe: Probe,
    table: Table,
    owners: Owners,
    config: Config,
    lost_seen: u64,
}

/// A running trace. Probes are detached on `stop`, on drop, and on every
/// error path (the probe detaches when dropped).
pub struct Tracer {
    shared: Arc<Mutex<Shared>>,
    reader: Worker,
    events: Option<EventStream>,
    dropped: Arc<AtomicU64>,
    info: Info,
}

/// Events waiting for the consumer before more are dropped: seconds of
/// the heaviest churn.
const EVENT_QUEUE: usize = 1 << 16;
const POLL: Duration = Duration::from_millis(100);
/// Events wait at most this long in the ring buffer once one arrives: a
/// 4 MiB ring holds tens of thousands of events, far more than arrive in
/// this time at the highest connection rates two cores make.
const BATCH: Duration = Duration::from_millis(10);

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tracer {
    pub fn start(config: Config) -> Result<Tracer> {
        let mut probe = Probe::start(&StartConfig {
            backend: config.backend,
            offsets: config.offsets,
            btf_path: config.btf_path.clone(),
            max_connections: config.max_connections,
            ring_bytes: config.ring_bytes,
        })?;
        let ring = probe.take_events()?;
        // With --offsets auto the cross-check joins a background thread; it
        // had the whole of guessing to run, and is cheap to wait for here.
        let verification = probe.verify();
        // Every guessed field equals BTF; None while uncheckable.
        let verified = match (&verification, &probe.guess) {
            (Verification::Checked(b), Some(g)) => Some(b.disagreements(&g.offsets).is_empty()),
            _ => None,
        };
        let info = Info {
            backend: probe.backend(),
            offsets: match (&probe.guess, verified) {
                (None, _) | (_, Some(false)) => "btf",
                _ => "guessed",
            },
            verified,
            guess_ms: probe.guess.as_ref().map(|g| g.elapsed_ms),
            ipv6: probe.offsets().ipv6 != 0,
            maps_preallocated: probe.maps_preallocated,
            backfill_error: None,
        };
        let mut shared = Shared {
            table: Table::new(config.linger, config.udp_timeout).max_closed(config.max_closed),
            owners: Owners::new(),
            probe,
            config,
            lost_seen: 0,
        };
        // Without sock_diag (inet_diag not loadable) tracing still works;
        // only connections older than the tracer go unlisted, and we say so.
        let mut info = info;
        if shared.config.backfill
            && let Err(e) = backfill(&mut shared)
        {
            info.backfill_error =
                Some(format!("connections older than nettop are not listed: {e:#}"));
        }
        let shared = Arc::new(Mutex::new(shared));
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = queue::queue(EVENT_QUEUE, dropped.clone());
        let reader = {
            let shared = shared.clone();
            Worker::spawn("nettop-tracer", move |stop| read_loop(ring, &shared, &stop, &tx))?
        };
        Ok(Tracer { shared, reader, events: Some(rx), dropped, info })
    }

    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The event stream (once; later calls return None).
    pub fn events(&mut self) -> Option<EventStream> {
        self.events.take()
    }

    /// Every connection now, open or lingering after close, filtered, in
    /// the order nettop first saw them (by `Connection::id`).
    pub fn connections(&self) -> Vec<Connection> {
        let mut all = Vec::new();
        each_connection(&mut lock(&self.shared), |c| all.push(c));
        all
    }

    /// `connections()` one at a time, in the same order, without the
    /// list; the tracer stays locked meanwhile, so `each` must be quick and
    /// must not call the tracer.
    pub fn for_each_connection(&self, mut each: impl FnMut(&Connection)) {
        each_connection(&mut lock(&self.shared), |c| each(&c));
    }

    pub fn stats(&self) -> Stats {
        let s = lock(&self.shared);
        let counters = s.probe.counters().unwrap_or_default();
        let (open, closed) = s.table.counts();
        Stats {
            events_lost: counters[Counter::EventsLost as usize],
            events_dropped: self.dropped.load(Ordering::Relaxed),
            conn_map_full: counters[Counter::ConnMapFull as usize],
            sock_map_full: counters[Counter::SockMapFull as usize],
            kprobe_missed: s.probe.kprobe_missed(),
            prog_missed: s.probe.prog_missed(),
            connections_open: open,
            connections_closed: closed,
            backfilled: s.table.entries().filter(|e| e.backfilled).count() as u64,
        }
    }

    /// Detach the probes and stop the reader (dropping does the same).
    pub fn stop(self) {
        self.reader.stop();
    }
}

/// Fresh counters, then each connection by id: oldest first, so that
/// whoever keeps only some (serve's label sets, past `--max-series`) keeps
/// the same ones every time. Ending idle flows stays with the reader, which
/// turns every end into an event.
fn each_connection(s: &mut Shared, mut each: impl FnMut(Connection)) {
    let now_ns = monotonic_ns();
    let Shared { probe, table, owners, config, .. } = s;
    // Streamed into the table, not copied first: with 100 000 connections
    // the copy was 15 MB of RSS.
    let _ = probe.for_each_conn(|k, st| table.sync_one(k, st, now_ns));
    table.expire_closed(now_ns);
    let now = Instant::now();
    let mut entries: Vec<&Entry> = table.entries().collect();
    // Stable sort: closed entries come nearly in id order, and it is
    // linear on such runs.
    entries.sort_by_key(|e| e.id);
    for e in entries {
        let c = Connection::from_entry(e, owners.of_entry(e, now));
        if wanted(config, &c.tuple, &c.owner, c.state, c.direction) {
            each(c);
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wanted(config: &Config, tuple: &Tuple, owner: &Owner, state: State, dir: Direction) -> bool {
    let on = match tuple.proto {
        Proto::Tcp => config.tcp,
        Proto::Udp => config.udp,
    };
    on && (config.ipv6 || tuple.family == 4)
        && config.filter.matches(&Subject { tuple, owner, state, direction: dir })
}

/// Pull the UDP flows' counters into the table, end idle ones, forget what
/// lingered long enough. Returns the ends it caused. TCP counters are read
/// only when the connections are asked for: with 100 000 open connections,
/// reading every socket's record here twice a second took a quarter of a core.
fn refresh(s: &mut Shared) -> Vec<Change> {
    let now = monotonic_ns();
    let Shared { probe, table, .. } = &mut *s;
    let _ = probe.for_each_udp_flow(|k, st| table.sync_one(k, st, now));
    let ended = s.table.expire_udp(now);
    for c in &ended {
        if let Change::Close(e) = c {
            s.probe.remove_conn(&e.key);
            if !s.table.open_entries().any(|o| o.stats.sk == e.stats.sk) {
                s.probe.remove_sock(e.stats.sk);
            }
        }
    }
    s.table.expire_closed(now);
    ended
}

fn backfill(s: &mut Shared) -> Result<()> {
    let sockets = backfill::sockets()?;
    // What the probe had counted by now, read once for every socket.
    let counted: rustc_hash::FxHashMap<ConnKey, nettop_shared::ConnStats> =
        s.probe.conns().unwrap_or_default().into_iter().collect();
    let listeners = backfill::Listeners::from_sockets(&sockets);
    for sock in &sockets {
        if sock.state == 10 || (sock.proto == backfill::Proto::Tcp && sock.state != 1) {
            continue; // listeners, and TCP sockets not established
        }
        if sock.proto == backfill::Proto::Udp
            && sock.raddr.is_unspecified()
            && sock.owners.is_empty()
        {
            continue;
        }
        let key = key_of(sock);
        let direction = if sock.proto == backfill::Proto::Udp {
            nettop_shared::DIR_UNKNOWN
        } else if listeners.is_incoming(sock) {
            DIR_INCOMING
        } else {
            DIR_OUTGOING
        };
        // tcp_info counts the active opener's SYN in bytes_acked (one
        // sequence number, not a byte of data).
        let syn = u64::from(direction == DIR_OUTGOING);
        let acked = sock.bytes_acked.unwrap_or(0).saturating_sub(syn);
        let now = (acked, sock.bytes_received.unwrap_or(0));
        s.table.backfill(key, direction, now, counted.get(&key).copied());
    }
    Ok(())
}

fn key_of(sock: &backfill::SocketEntry) -> ConnKey {
    let mut k = ConnKey {
        netns: sock.netns,
        tgid: sock.owners.first().copied().unwrap_or(0),
        proto: match sock.proto {
            backfill::Proto::Tcp => nettop_shared::IPPROTO_TCP,
            backfill::Proto::Udp => nettop_shared::IPPROTO_UDP,
        },
        family: if sock.family == 4 { nettop_shared::AF_INET } else { nettop_shared::AF_INET6 },
        lport: sock.lport,
        rport: sock.rport,
        ..Default::default()
    };
    let put = |dst: &mut [u8; 16], a: std::net::IpAddr| match a {
        std::net::IpAddr::V4(v4) => dst[..4].copy_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => *dst = v6.octets(),
    };
    put(&mut k.laddr, sock.laddr);
    put(&mut k.raddr, sock.raddr);
    k
}

fn debug_line(e: &RawEvent) -> String {
    let k = &e.key;
    format!(
        "nettop-debug: type {} cause {} state {} dir {} sk {:#x} tgid {} netns {} proto {} {}->{} \
         sent {} recv {} msgs {}/{} ts {}",
        e.kind,
        e.cause,
        e.sk_state,
        e.direction,
        e.sk,
        k.tgid,
        k.netns,
        k.proto,
        k.lport,
        k.rport,
        e.bytes_sent,
        e.bytes_recv,
        e.msgs_sent,
        e.msgs_recv,
        e.ts_ns
    )
}

fn read_loop(
    mut ring: RingBuf<MapData>,
    shared: &Mutex<Shared>,
    stop: &StopFlag,
    tx: &queue::Sender,
) {
    let fd = ring.as_raw_fd();
    let mut last_refresh = 0;
    let mut last_drain = Instant::now();
    let mut last_batch = 0;
    // Diagnosis of the probe on a kernel that misbehaves: every raw event,
    // one line each, on stderr (documented in README, "Tests").
    let debug = std::env::var_os("NETTOP_DEBUG_EVENTS").is_some();
    while !stop.is_set() {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd we own; a timeout keeps `stop` responsive.
        unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
        // Under load the kernel wakes us for nearly every event, and each
        // wake-up (ours, then the consumer's) costs more than handling the
        // event: take them in batches, at most every BATCH.
        let since = last_drain.elapsed();
        if pfd.revents != 0 && since < BATCH {
            std::thread::sleep(BATCH - since);
        }
        last_drain = Instant::now();
        let mut s = lock(shared);
        let now = monotonic_ns();
        // Sized like the last one: growing it by doubling moved every
        // event again (memmove was the top of the profile under churn).
        let mut batch = Vec::with_capacity(last_batch);
        let clock = Instant::now();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<RawEvent>() {
                continue;
            }
            // SAFETY: the probe writes whole `struct nettop_event`s (layout
            // checked by shared/tests/layout.rs); read_unaligned copes with
            // any alignment.
            let raw: RawEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if debug {
                eprintln!("{}", debug_line(&raw));
            }
            let Shared { table, probe, owners, config, .. } = &mut *s;
            table.apply_into(
                &raw,
                now,
                |k| {
                    let last = probe.conn(k);
                    probe.remove_conn(k);
                    last
                },
                |c| batch.extend(to_event(c, raw.ts_ns, owners, config, clock)),
            );
        }
        if now.saturating_sub(last_refresh) >= 500_000_000 {
            last_refresh = now;
            let ended = refresh(&mut s);
            let Shared { owners, config, .. } = &mut *s;
            batch.extend(ended.into_iter().filter_map(|c| to_event(c, now, owners, config, clock)));
            let lost = s.probe.counters().map(|c| c[Counter::EventsLost as usize]).unwrap_or(0);
            // On its own, and counted as reported only once queued: a
            // report that finds the queue full is made again next time.
            if lost > s.lost_seen
                && tx.try_send(vec![Event {
                    event: EventKind::Lost,
                    ts_ns: now,
                    conn: None,
                    bytes_sent: None,
                    bytes_recv: None,
                    errno: None,
                    lost: Some(lost - s.lost_seen),
                }])
            {
                s.lost_seen = lost;
            }
        }
        last_batch = batch.len();
        tx.send(batch);
    }
}

fn to_event(
    c: Change,
    ts_ns: u64,
    owners: &mut Owners,
    config: &Config,
    now: Instant,
) -> Option<Event> {
    let conn_event = |kind, e: &Entry, totals: bool, owners: &mut Owners| {
        let conn = EventConn::new(Some(e.id), &e.key, e.direction, owners.of_entry(e, now));
        let state = if kind == EventKind::Close { State::Closed } else { State::Open };
        wanted(config, &conn.tuple, &conn.owner, state, conn.direction).then(|| Event {
            event: kind,
            ts_ns,
            conn: Some(conn),
            bytes_sent: totals.then(|| e.bytes_sent()),
            bytes_recv: totals.then(|| e.bytes_recv()),
            errno: None,
            lost: None,
        })
    };
    match c {
        Change::Connect(e) => conn_event(EventKind::Connect, &e, false, owners),
        Change::Accept(e) => conn_event(EventKind::Accept, &e, false, owners),
        Change::Close(e) => conn_event(EventKind::Close, &e, true, owners),
        Change::Retransmit(e) => conn_event(EventKind::Retransmit, &e, false, owners),
        Change::ConnectFailed { key, errno, comm } => {
            let conn = EventConn::new(None, &key, DIR_OUTGOING, owners.get(key.tgid, &comm, now));
            wanted(config, &conn.tuple, &conn.owner, State::Closed, conn.direction).then_some(
                Event {
                    event: EventKind::ConnectFailed,
                    ts_ns,
                    conn: Some(conn),
                    bytes_sent: None,
                    bytes_recv: None,
                    errno,
                    lost: None,
                },
            )
        }
    }
}
