//! Per-label totals for Prometheus, from the tracer's connections and
//! events. Counters only ever grow: a connection's bytes are added as
//! deltas while it lives and its final totals on close, so nothing is taken
//! back when it leaves the tracer's table. The number of label sets is
//! capped; sets beyond the cap are summed into one overflow set.
pub mod http;
pub mod labels;

use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rustc_hash::FxHashMap;

pub use labels::{Label, LabelError, LabelSpec, PortClass};

use crate::tracer::{Connection, Direction, Event, EventKind, Info, Owner, State, Stats, Tuple};

/// The value every label takes in the overflow set.
pub const OVERFLOW: &str = "_overflow";

/// An open connection missing from the table this long (no close seen) is
/// forgotten; its close, if it ever comes, counts it again from zero.
const FORGET_ABSENT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub opened_out: u64,
    pub opened_in: u64,
    pub closed: u64,
    pub connect_failed: u64,
    pub retransmits: u64,
    /// A gauge: open now (as of the last refresh).
    pub open: u64,
}

/// What was already counted of one connection.
struct Seen {
    set: usize,
    sent: u64,
    recv: u64,
    closed: bool,
    absent_since: Option<Instant>,
}

pub struct Aggregator {
    spec: LabelSpec,
    ports: PortClass,
    cap: usize,
    /// Label values per set; the index is the set's id.
    sets: Vec<Vec<String>>,
    index: FxHashMap<Vec<String>, usize>,
    overflow: Option<usize>,
    totals: Vec<Totals>,
    conns: FxHashMap<u64, Seen>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("labels", &self.spec.to_string())
            .field("label_sets", &self.label_sets())
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl Aggregator {
    /// `cap`: the most label sets kept apart (at least 1); the overflow set
    /// comes on top.
    pub fn new(spec: LabelSpec, ports: PortClass, cap: usize) -> Aggregator {
        Aggregator {
            spec,
            ports,
            cap: cap.max(1),
            sets: Vec::new(),
            index: FxHashMap::default(),
            overflow: None,
            totals: Vec::new(),
            conns: FxHashMap::default(),
        }
    }

    pub fn spec(&self) -> &LabelSpec {
        &self.spec
    }

    /// Label sets in use, the overflow set included.
    pub fn label_sets(&self) -> usize {
        self.sets.len()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Tracked connections (open, or closed and still in the table).
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    fn set_for(&mut self, values: Vec<String>) -> usize {
        if let Some(&i) = self.index.get(&values) {
            return i;
        }
        let kept = self.sets.len() - usize::from(self.overflow.is_some());
        if kept < self.cap {
            return self.push_set(values);
        }
        match self.overflow {
            Some(i) => i,
            None => {
                let i = self.push_set(vec![OVERFLOW.to_owned(); self.spec.labels().len()]);
                self.overflow = Some(i);
                i
            }
        }
    }

    fn push_set(&mut self, values: Vec<String>) -> usize {
        let i = self.sets.len();
        self.index.insert(values.clone(), i);
        self.sets.push(values);
        self.totals.push(Totals::default());
        i
    }

    /// The label set of a connection (or failed attempt) like this one.
    fn set_of(&mut self, tuple: &Tuple, owner: &Owner) -> usize {
        let values = self.spec.values(&self.ports, tuple, owner);
        self.set_for(values)
    }

    /// Track a connection from its first sight on, counting its opening
    /// unless it is older than the tracer; later sightings change nothing.
    fn see(&mut self, id: u64, tuple: &Tuple, owner: &Owner, dir: Direction, opened_here: bool) {
        if self.conns.contains_key(&id) {
            return;
        }
        let set = self.set_of(tuple, owner);
        if opened_here {
            let t = &mut self.totals[set];
            match dir {
                Direction::Incoming => t.opened_in += 1,
                // A flow nettop could not place counts as one we opened.
                Direction::Outgoing | Direction::Unknown => t.opened_out += 1,
            }
        }
        self.conns.insert(id, Seen { set, sent: 0, recv: 0, closed: false, absent_since: None });
    }

    /// Add what a connection carried since it was last counted.
    fn count_bytes(&mut self, id: u64, sent: u64, recv: u64) {
        let Some(s) = self.conns.get_mut(&id) else { return };
        if s.closed {
            return;
        }
        let t = &mut self.totals[s.set];
        // Totals only grow, even if a source ever reported less.
        t.bytes_sent += sent.saturating_sub(s.sent);
        t.bytes_recv += recv.saturating_sub(s.recv);
        s.sent = s.sent.max(sent);
        s.recv = s.recv.max(recv);
    }

    fn count_close(&mut self, id: u64) {
        if let Some(s) = self.conns.get_mut(&id)
            && !s.closed
        {
            s.closed = true;
            self.totals[s.set].closed += 1;
        }
    }

    /// One lifecycle event from `Tracer::events`.
    pub fn event(&mut self, ev: &Event) {
        let Some(c) = &ev.conn else { return };
        match (ev.event, c.id) {
            (EventKind::ConnectFailed, _) => {
                let set = self.set_of(&c.tuple, &c.owner);
                self.totals[set].connect_failed += 1;
            }
            (EventKind::Connect | EventKind::Accept, Some(id)) => {
                self.see(id, &c.tuple, &c.owner, c.direction, true);
            }
            (EventKind::Close, Some(id)) => {
                // Seen first here if it opened and closed between two
                // refreshes, its opening event lost: still one opened.
                self.see(id, &c.tuple, &c.owner, c.direction, true);
                if let (Some(sent), Some(recv)) = (ev.bytes_sent, ev.bytes_recv) {
                    self.count_bytes(id, sent, recv);
                }
                self.count_close(id);
            }
            (EventKind::Retransmit, Some(id)) => {
                let set = match self.conns.get(&id) {
                    Some(s) => s.set,
                    None => self.set_of(&c.tuple, &c.owner),
                };
                self.totals[set].retransmits += 1;
            }
            _ => {}
        }
    }

    /// Every connection in the tracer's table now (`Tracer::connections`):
    /// byte deltas, closes, and the open gauge.
    pub fn refresh(&mut self, conns: &[Connection], now: Instant) {
        self.refresh_with(now, |take| conns.iter().for_each(take));
    }

    /// `refresh`, with the connections handed over one at a time by
    /// `visit` (`Tracer::for_each_connection`), never all in one list, which
    /// would cost memory in proportion to the connections every second.
    pub fn refresh_with(&mut self, now: Instant, visit: impl FnOnce(&mut dyn FnMut(&Connection))) {
        for t in &mut self.totals {
            t.open = 0;
        }
        for s in self.conns.values_mut() {
            s.absent_since.get_or_insert(now);
        }
        visit(&mut |c| {
            self.see(c.id, &c.tuple, &c.owner, c.direction, !c.backfilled);
            self.count_bytes(c.id, c.bytes_sent, c.bytes_recv);
            if c.state == State::Closed {
                self.count_close(c.id);
            }
            let s = self.conns.get_mut(&c.id).expect("inserted above");
            s.absent_since = None;
            if !s.closed {
                self.totals[s.set].open += 1;
            }
        });
        // Gone from the table: closed ones are done; open ones wait a while
        // for their close event (it may trail the table by a moment).
        self.conns.retain(|_, s| match s.absent_since {
            None => true,
            Some(_) if s.closed => false,
            Some(t) => now.duration_since(t) < FORGET_ABSENT,
        });
    }

    fn labels_of(&self, set: usize) -> Vec<(&'static str, String)> {
        self.spec.labels().iter().map(|l| l.name()).zip(self.sets[set].iter().cloned()).collect()
    }

    /// The per-label metrics, into a scrape.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&Totals) -> u64;
        let counters: [(&str, &str, Pick); 5] = [
            ("sent_bytes", "Bytes sent (TCP: payload, exact; UDP: datagram payload).", |t| {
                t.bytes_sent
            }),
            ("received_bytes", "Bytes received.", |t| t.bytes_recv),
            ("connections_closed", "Connections (and UDP flows) that ended.", |t| t.closed),
            (
                "connect_failures",
                "Connection attempts that failed (refused, timed out, reset).",
                |t| t.connect_failed,
            ),
            ("retransmits", "TCP segments retransmitted.", |t| t.retransmits),
        ];
        for (name, help, pick) in counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, t) in self.totals.iter().enumerate() {
                ConstCounter::new(pick(t)).encode(m.encode_family(&self.labels_of(i))?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "open_connections",
            "Connections open now.",
            None,
            MetricType::Gauge,
        )?;
        for (i, t) in self.totals.iter().enumerate() {
            ConstGauge::new(t.open as i64).encode(m.encode_family(&self.labels_of(i))?)?;
        }
        let mut m = encoder.encode_descriptor(
            "connections_opened",
            "Connections (and UDP flows) that began while nettop ran, by direction.",
            None,
            MetricType::Counter,
        )?;
        for (i, t) in self.totals.iter().enumerate() {
            for (dir, v) in [("outgoing", t.opened_out), ("incoming", t.opened_in)] {
                let mut labels = self.labels_of(i);
                labels.push(("direction", dir.to_owned()));
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// nettop's own health, into a scrape.
pub fn encode_health(
    encoder: &mut DescriptorEncoder,
    info: &Info,
    stats: &Stats,
    agg: &Aggregator,
) -> std::fmt::Result {
    let counter =
        |e: &mut DescriptorEncoder, name: &str, help: &str, labels: &[(&str, &str, u64)]| {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (k, v, n) in labels {
                ConstCounter::new(*n).encode(m.encode_family(&[(*k, *v)])?)?;
            }
            Ok::<_, std::fmt::Error>(())
        };
    counter(
        encoder,
        "lost_events",
        "Events lost: the kernel's ring buffer was full, or nettop did not read them in time.",
        &[("stage", "kernel", stats.events_lost), ("stage", "consumer", stats.events_dropped)],
    )?;
    counter(
        encoder,
        "evictions",
        "Connections or sockets the kernel's tables, or the tracer's own, had no room for (--max-connections).",
        &[
            ("table", "connections", stats.conn_map_full),
            ("table", "sockets", stats.sock_map_full),
            ("table", "tracer", stats.table_full),
        ],
    )?;
    let single = |e: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
        ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
    };
    let gauge = |e: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
        ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
    };
    if let Some(n) = stats.kprobe_missed {
        single(encoder, "kprobe_missed", "Kprobe and kretprobe hits the kernel missed.", n)?;
    }
    if let Some(n) = stats.prog_missed {
        single(
            encoder,
            "skipped_program_runs",
            "Runs of nettop's programs the kernel skipped (already running on that CPU).",
            n,
        )?;
    }
    if let Some(ms) = info.guess_ms {
        gauge(
            encoder,
            "guess_duration_seconds",
            "Time spent guessing struct sock offsets.",
            ms / 1e3,
        )?;
    }
    let verified = match info.verified {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    };
    let mut m = encoder.encode_descriptor(
        "tracer",
        "Always 1; the labels say how nettop traces: backend, where offsets come from, whether BTF confirmed them.",
        None,
        MetricType::Gauge,
    )?;
    let backend = info.backend.to_string();
    ConstGauge::new(1i64).encode(m.encode_family(&[
        ("backend", backend.as_str()),
        ("offsets", info.offsets),
        ("verified", verified),
        ("version", env!("CARGO_PKG_VERSION")),
    ])?)?;
    gauge(
        encoder,
        "label_sets",
        "Label sets in use (each is one series per metric), the overflow set included.",
        agg.label_sets() as f64,
    )?;
    gauge(
        encoder,
        "label_sets_limit",
        "The most label sets kept apart (--max-series); the rest are summed under \"_overflow\".",
        agg.cap() as f64,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
