//! The reader thread: drains the probe's ring buffer into the connection
//! table in batches, turns each change into an event for the consumer, and
//! twice a second reads the UDP flows' counters, ends idle flows and the
//! TCP connections the kernel no longer has, and reports kernel-side event
//! loss.
use crate::filter::Subject;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use nettop_shared::{Counter, DIR_OUTGOING, EV_ACCEPT, EV_CLOSE, EV_INCOMING, Event as RawEvent};

use super::accepts::Accepts;
use super::conntrack::{Change, Entry, Synced, Table};
use super::live::Live;
use super::owners::Owners;
use super::sock_diag::{Detail, rest_after_walk};
use super::{
    Config, Connection, Event, EventConn, EventKind, Shared, State, monotonic_ns, queue, wanted,
};
use crate::probe::Probe;
use crate::worker::StopFlag;

const POLL: Duration = Duration::from_millis(100);
/// Events wait at most this long in the ring buffer once one arrives: a
/// 4 MiB ring holds tens of thousands of events, far more than arrive in
/// this time at the highest connection rates two cores make.
const BATCH: Duration = Duration::from_millis(10);
/// How often the UDP flows' counters are read and idle flows ended.
const REFRESH_NS: u64 = 500_000_000;
/// Which TCP connections the kernel still has comes from the latest
/// listing's read of its table; when no listing read it for this long, the
/// reader reads it itself.
const OWN_READ_AFTER_NS: u64 = 1_500_000_000;

pub(super) fn read_loop(
    mut ring: RingBuf<MapData>,
    shared: &Mutex<Shared>,
    live: &Mutex<Live>,
    mut accepts: Accepts,
    stop: &StopFlag,
    tx: &queue::Sender,
) {
    let fd = ring.as_raw_fd();
    let mut last_refresh = 0;
    let mut last_drain = Instant::now();
    let mut last_batch = 0;
    let mut dropped_seen = 0;
    // Taken from the ring while another thread held the table.
    let mut pending = Vec::new();
    let (mut own_read_took, mut last_own_read) = (Duration::ZERO, Instant::now());
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
        // The kernel's TCP table is read before the ring is drained: a
        // connection it no longer lists then has its close event in hand,
        // unless that event was lost. The dump holds no lock of the table.
        let refresh_due = monotonic_ns().saturating_sub(last_refresh) >= REFRESH_NS;
        let plan = refresh_due
            .then(|| {
                let s = lock_draining(shared, &mut ring, &mut pending);
                let age = s.table.read_age_ns(monotonic_ns());
                // Slow reads (churn: TIME_WAIT) wait longer.
                let spaced = last_own_read.elapsed() >= rest_after_walk(own_read_took);
                (spaced && age.is_none_or(|a| a >= OWN_READ_AFTER_NS))
                    .then(|| super::live::plan(&s.table))
            })
            .flatten();
        let own_read = plan.map(|plan| {
            let started = Instant::now();
            let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
            let read = live.dump(plan, Detail::Presence, None, |batch| {
                batch.apply(&mut lock_draining(shared, &mut ring, &mut pending).table, 0)
            });
            (own_read_took, last_own_read) = (started.elapsed(), Instant::now());
            read
        });
        // Who accepted what (tracepoint backend), as the resolver found it,
        // applied before the events that follow (a close).
        let accepted = accepts.found();
        let mut s = lock_draining(shared, &mut ring, &mut pending);
        let now = monotonic_ns();
        // Sized like the last one: growing it by doubling moves every event
        // again.
        let mut batch = Vec::with_capacity(last_batch);
        let clock = Instant::now();
        // Told by the resolver (`true`), then the probe's in ring order.
        let mut accepted = accepted.into_iter().map(|e| (e, true));
        let mut waited = pending.drain(..).map(|e| (e, false));
        while let Some((raw, told_here)) = (accepted.next())
            .or_else(|| waited.next())
            .or_else(|| next_event(&mut ring).map(|e| (e, false)))
        {
            let Shared { table, probe, owners, config, .. } = &mut *s;
            if config.debug_events {
                eprintln!("{}", debug_line(&raw));
            }
            // The tracepoint backend's incoming connections wait for their
            // owner: listed once it is found.
            match raw.kind {
                EV_INCOMING => {
                    accepts.incoming(raw);
                    continue;
                }
                EV_ACCEPT if !told_here && accepts.repeated(raw.sk) => continue,
                EV_CLOSE => accepts.ended(raw.sk),
                _ => {}
            }
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
        drop(waited);
        accepts.flush();
        // A burst's worth is not kept.
        if pending.capacity() > 1 << 12 {
            pending = Vec::new();
        }
        if refresh_due {
            last_refresh = now;
            let mut ended = refresh(&mut s);
            if let Some(read) = own_read {
                s.table.read_applied(read);
            }
            ended.extend(s.table.end_vanished(now));
            let Shared { owners, config, .. } = &mut *s;
            batch.extend(ended.into_iter().filter_map(|c| to_event(c, now, owners, config, clock)));
            // Lost in the kernel (ring buffer full) or here (the consumer
            // fell behind), in one report, on its own, and counted as
            // reported only once queued: a report that finds the queue
            // full is made again next time.
            let lost = s.probe.counters().map(|c| c[Counter::EventsLost as usize]).unwrap_or(0);
            let dropped = tx.dropped();
            let new = lost.saturating_sub(s.lost_seen) + dropped.saturating_sub(dropped_seen);
            if new > 0
                && tx.try_send(vec![Event {
                    event: EventKind::Lost,
                    ts_ns: now,
                    conn: None,
                    bytes_sent: None,
                    bytes_recv: None,
                    errno: None,
                    lost: Some(new),
                    vanished: false,
                    row: None,
                }])
            {
                s.lost_seen = lost;
                dropped_seen = dropped;
            }
        }
        last_batch = batch.len();
        tx.send(batch);
    }
}

/// At most this many events wait here for the table (128 bytes each).
const MAX_PENDING: usize = 1 << 18;

/// The table's lock, draining the ring buffer into `pending` while another
/// thread holds it: a listing of 100 000 connections holds it for a few
/// hundred milliseconds, and a burst of connections meanwhile filled the
/// ring.
fn lock_draining<'a>(
    shared: &'a Mutex<Shared>,
    ring: &mut RingBuf<MapData>,
    pending: &mut Vec<RawEvent>,
) -> MutexGuard<'a, Shared> {
    loop {
        match shared.try_lock() {
            Ok(s) => return s,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                while pending.len() < MAX_PENDING
                    && let Some(ev) = next_event(ring)
                {
                    pending.push(ev);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn next_event(ring: &mut RingBuf<MapData>) -> Option<RawEvent> {
    loop {
        let item = ring.next()?;
        if item.len() >= size_of::<RawEvent>() {
            // SAFETY: the probe writes whole `struct nettop_event`s (layout
            // checked by shared/tests/layout.rs); read_unaligned copes with
            // any alignment.
            return Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
        }
    }
}

/// Pull the kernel's UDP flows' counters into the table. A flow the table
/// refuses (full) leaves the kernel's table too: untracked, it would stay
/// there for good, as the table's idle expiry never sees it.
pub(super) fn sync_udp_flows(probe: &mut Probe, table: &mut Table, now_ns: u64) {
    let mut refused = Vec::new();
    let _ = probe.for_each_udp_flow(|k, st| {
        if table.sync_one(k, st, now_ns) == Synced::Refused {
            refused.push(*k);
        }
    });
    for k in &refused {
        probe.remove_conn(k);
    }
}

/// Pull the UDP flows' counters into the table, end idle ones, forget what
/// lingered long enough. Returns the ends it caused.
fn refresh(s: &mut Shared) -> Vec<Change> {
    let now = monotonic_ns();
    sync_udp_flows(&mut s.probe, &mut s.table, now);
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

/// One raw probe event, one line (NETTOP_DEBUG_EVENTS, for diagnosing the
/// probe on a kernel that misbehaves).
fn debug_line(e: &RawEvent) -> String {
    let k = &e.key;
    format!(
        "nettop-debug: type {} cause {} flags {} state {} dir {} sk {:#x} tgid {} netns {} proto {} \
         {}->{} sent {} recv {} msgs {}/{} ts {}",
        e.kind,
        e.cause,
        e.close_flags,
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
        let subject = Subject {
            tuple: &conn.tuple,
            owner: &conn.owner,
            state,
            direction: conn.direction,
            health: None,
            remote_name: None,
        };
        if !wanted(config, &subject) {
            return None;
        }
        // Only for the events that go out, and only where asked for.
        let row = (config.close_rows && kind == EventKind::Close).then(|| {
            let row = Connection::from_entry(e, conn.owner.clone());
            Arc::new(Connection { state: State::Closed, ..row })
        });
        Some(Event {
            event: kind,
            ts_ns,
            conn: Some(conn),
            bytes_sent: totals.then(|| e.bytes_sent()),
            bytes_recv: totals.then(|| e.bytes_recv()),
            errno: None,
            lost: None,
            vanished: kind == EventKind::Close && e.vanished,
            row,
        })
    };
    match c {
        Change::Connect(e) => conn_event(EventKind::Connect, &e, false, owners),
        Change::Accept(e) => conn_event(EventKind::Accept, &e, false, owners),
        Change::Close(e) => conn_event(EventKind::Close, &e, true, owners),
        Change::Retransmit(e) => conn_event(EventKind::Retransmit, &e, false, owners),
        Change::ConnectFailed { key, errno, comm } => {
            let conn = EventConn::new(None, &key, DIR_OUTGOING, owners.get(key.tgid, &comm, now));
            wanted(
                config,
                &Subject {
                    tuple: &conn.tuple,
                    owner: &conn.owner,
                    state: State::Closed,
                    direction: conn.direction,
                    health: None,
                    remote_name: None,
                },
            )
            .then_some(Event {
                event: EventKind::ConnectFailed,
                ts_ns,
                conn: Some(conn),
                bytes_sent: None,
                bytes_recv: None,
                errno,
                lost: None,
                vanished: false,
                row: None,
            })
        }
    }
}
