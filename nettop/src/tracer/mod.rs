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
mod accepts;
pub mod attribution;
pub mod backfill;
pub mod conntrack;
pub mod health;
mod live;
pub mod model;
mod owners;
mod queue;
mod reader;
pub mod sock_diag;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nettop_shared::Counter;
pub use queue::EventStream;

use crate::filter::{Filter, Subject};
use crate::probe::backend::UdpHooks;
use crate::probe::guess::GuessSwitches;
use crate::probe::{Backend, BackendChoice, OffsetsMode, Probe, StartConfig, Verification};
use crate::worker::Worker;
use conntrack::{Entry, Table};
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
    /// Capacity of the kernel's tables and of the tracer's own: past it,
    /// new connections are counted in `Stats::conn_map_full` and
    /// `sock_map_full` (the kernel's) or `table_full` (the tracer's).
    pub max_connections: u32,
    /// A UDP flow with no traffic for this long ends.
    pub udp_timeout: Duration,
    /// A closed connection stays in `connections()` this long...
    pub linger: Duration,
    /// ...or until this many newer ones have closed: under churn a time
    /// limit alone keeps far more rows than anyone reads, and listing them
    /// costs; the latest thousands show the churn as well.
    pub max_closed: usize,
    /// Event ring buffer size in bytes (power of two).
    pub ring_bytes: u32,
    /// Events the consumer of `events()` may fall behind by; past that they
    /// are dropped, counted, and reported with a `lost` event.
    pub event_queue: usize,
    /// List connections that existed before the tracer started.
    pub backfill: bool,
    pub filter: Filter,
    /// Test and debug switches for offset guessing.
    pub guess: GuessSwitches,
    /// Close events carry the connection's final row (`Event::row`), for
    /// consumers that keep closed connections longer than the linger.
    pub close_rows: bool,
    /// Log every raw probe event on stderr, one line each (the binary sets
    /// it from NETTOP_DEBUG_EVENTS, to diagnose the probe on a kernel).
    pub debug_events: bool,
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
            event_queue: EVENT_QUEUE,
            backfill: true,
            filter: Filter::default(),
            guess: probe.guess,
            close_rows: false,
            debug_events: false,
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
    /// The version, commit and probe object of this build.
    #[serde(flatten)]
    pub build: crate::Provenance,
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
    /// The sock_diag reads, apart: a dump holds no lock the reader of
    /// events needs.
    live: Arc<Mutex<live::Live>>,
    reader: Worker,
    events: Option<EventStream>,
    dropped: Arc<AtomicU64>,
    info: Info,
}

/// Events waiting for the consumer before more are dropped: seconds of
/// the heaviest churn.
pub const EVENT_QUEUE: usize = 1 << 16;

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A tracer attached, its offsets found and older connections read, before
/// any thread of its own runs: the moment to give up privileges
/// (`crate::sandbox`), which threads made later inherit.
pub struct Prepared {
    shared: Shared,
    live: live::Live,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    accepts: accepts::Accepts,
    info: Info,
}

impl Prepared {
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Whether the probe's maps can be read now (with the caller's
    /// capabilities).
    pub fn can_read_maps(&self) -> bool {
        self.shared.probe.counters().is_ok()
    }

    /// tracefs `kprobe_events`, if the probe made kprobes there: they are
    /// removed through it at exit.
    pub fn kprobe_events(&self) -> Option<std::path::PathBuf> {
        self.shared.probe.kprobe_events()
    }

    /// Start the reader thread.
    pub fn start(self) -> Result<Tracer> {
        let Prepared { shared, live, ring, accepts, info } = self;
        let event_queue = shared.config.event_queue;
        let shared = Arc::new(Mutex::new(shared));
        let live = Arc::new(Mutex::new(live));
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = queue::queue(event_queue, dropped.clone());
        let reader = {
            let (shared, live) = (shared.clone(), live.clone());
            Worker::spawn("nettop-tracer", move |stop| {
                reader::read_loop(ring, &shared, &live, accepts, &stop, &tx)
            })?
        };
        Ok(Tracer { shared, live, reader, events: Some(rx), dropped, info })
    }
}

impl Tracer {
    /// Attach, find the offsets and read the connections older than the
    /// tracer, in the calling thread (threads it needs meanwhile end).
    pub fn prepare(config: Config) -> Result<Prepared> {
        let mut probe = Probe::start(&StartConfig {
            backend: config.backend,
            offsets: config.offsets,
            btf_path: config.btf_path.clone(),
            max_connections: config.max_connections,
            ring_bytes: config.ring_bytes,
            guess: config.guess.clone(),
            udp: if config.udp { UdpHooks::Attach } else { UdpHooks::Skip },
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
            build: crate::PROVENANCE,
        };
        let mut live = live::Live::new().context("open a sock_diag socket")?;
        if config.backfill {
            live.namespaces.open_every_process_namespace();
        }
        let mut shared = Shared {
            table: Table::new(config.linger, config.udp_timeout)
                .max_closed(config.max_closed)
                .max_open(config.max_connections as usize),
            owners: Owners::new(),
            probe,
            config,
            lost_seen: 0,
        };
        // Without sock_diag (inet_diag not loadable) tracing still works;
        // only connections older than the tracer go unlisted, and we say so.
        let mut info = info;
        if shared.config.backfill
            && let Err(e) = {
                let Shared { probe, table, .. } = &mut shared;
                // What the probe had counted, read once for every flow.
                backfill::fill(table, &live.namespaces, monotonic_ns(), || {
                    let mut flows = rustc_hash::FxHashMap::default();
                    let _ = probe.for_each_udp_flow(|k, v| {
                        flows.insert(*k, *v);
                    });
                    flows
                })
            }
        {
            info.backfill_error =
                Some(format!("connections older than nettop are not listed: {e:#}"));
        }
        let accepts = accepts::Accepts::new().context("open a sock_diag socket")?;
        Ok(Prepared { shared, live, ring, accepts, info })
    }

    /// Start tracing: `prepare`, then `Prepared::start`.
    pub fn start(config: Config) -> Result<Tracer> {
        Tracer::prepare(config)?.start()
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
        each_connection(&self.shared, &self.live, |c| all.push(c));
        all
    }

    /// `connections()` one at a time, in the same order, without the
    /// list; the tracer stays locked meanwhile, so `each` must be quick and
    /// must not call the tracer.
    pub fn for_each_connection(&self, mut each: impl FnMut(&Connection)) {
        each_connection(&self.shared, &self.live, |c| each(&c));
    }

    pub fn stats(&self) -> Stats {
        let s = lock(&self.shared);
        let counters = s.probe.counters().unwrap_or_default();
        let (open, closed) = s.table.counts();
        Stats {
            events_lost: counters[Counter::EventsLost as usize],
            events_dropped: self.dropped.load(Ordering::Relaxed),
            incoming_late: counters[Counter::IncomingLate as usize],
            conn_map_full: counters[Counter::ConnMapFull as usize],
            sock_map_full: counters[Counter::SockMapFull as usize],
            table_full: s.table.refused(),
            kprobe_missed: s.probe.kprobe_missed(),
            prog_missed: s.probe.prog_missed(),
            connections_open: open,
            connections_closed: closed,
            backfilled: s.table.entries().filter(|e| e.backfilled).count() as u64,
        }
    }

    /// Detach the probes and stop the reader (dropping does the same).
    /// Each of the probe's loaded programs, by name, and how many times the
    /// kernel ran it: counted only while the kernel's BPF run-time
    /// statistics are on. What proves that nothing runs per TCP packet.
    pub fn program_runs(&self) -> Vec<(String, u64)> {
        lock(&self.shared).probe.program_runs()
    }

    pub fn stop(self) {
        self.reader.stop();
    }
}

/// Fresh counters, then each connection by id: oldest first, so that
/// whoever keeps only some (serve's label sets, past `--max-series`) keeps
/// the same ones every time. Ending idle flows stays with the reader, which
/// turns every end into an event.
fn each_connection(
    shared: &Mutex<Shared>,
    live: &Mutex<live::Live>,
    mut each: impl FnMut(Connection),
) {
    let plan = live::plan(&lock(shared).table);
    // Streamed into the table, not copied first: a copy costs RSS in
    // proportion to the connections.
    let still_open = |k: &nettop_shared::ConnKey| lock(shared).table.is_open(k);
    let read =
        lock_live(live).dump(plan, sock_diag::Detail::Counters, Some(&still_open), |batch| {
            batch.apply(&mut lock(shared).table, monotonic_ns())
        });
    let mut s = lock(shared);
    let now_ns = monotonic_ns();
    let Shared { probe, table, owners, config, .. } = &mut *s;
    reader::sync_udp_flows(probe, table, now_ns);
    table.read_applied(read);
    table.expire_closed(now_ns);
    let now = Instant::now();
    let mut entries: Vec<&Entry> = table.entries().collect();
    // Stable sort: closed entries come nearly in id order, and it is
    // linear on such runs.
    entries.sort_by_key(|e| e.id);
    for e in entries {
        let c = Connection::from_entry(e, owners.of_entry(e, now));
        let subject = Subject {
            tuple: &c.tuple,
            owner: &c.owner,
            state: c.state,
            direction: c.direction,
            health: c.health,
            remote_name: None,
        };
        if wanted(config, &subject) {
            each(c);
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_live(m: &Mutex<live::Live>) -> MutexGuard<'_, live::Live> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wanted(config: &Config, s: &Subject) -> bool {
    let on = match s.tuple.proto {
        Proto::Tcp => config.tcp,
        Proto::Udp => config.udp,
    };
    on && (config.ipv6 || s.tuple.family == 4) && config.filter.matches(s)
}
