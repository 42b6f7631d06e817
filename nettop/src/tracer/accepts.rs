//! Who accepted each incoming TCP connection, on the tracepoint backend,
//! which has no accept hook. (The accept syscall tracepoints would name
//! the owner, but enabling any syscall tracepoint slows every system call
//! on the host.) The probe reports each incoming connection when it is
//! established, in softirq, without an owner. A thread of its own, the
//! resolver, looks the waiting ones up twice a second with sock_diag: once
//! accept() has given one a file, it has an inode, and the process holding
//! that inode owns it. Only the processes holding a listener on its port
//! are searched (learned by one scan of `/proc` per new listener); every
//! process is, at most every few seconds, when none of them holds it (a
//! descriptor passed on). A connection accepted and closed before it is
//! found is named by the probe instead, at its owner's close.
//!
//! The search takes a second or more on a host with 100 000 connections:
//! on the reader's thread it left the ring buffer undrained meanwhile, and a
//! burst of connections overflowed it.
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use netlink_packet_sock_diag::constants::TCP_LISTEN;
use nettop_shared::{ConnKey, Event as RawEvent};
use rustc_hash::{FxHashMap, FxHashSet};

use super::backfill::{key_of, socket_inodes, socket_owners};
use super::conntrack::slot;
use super::sock_diag::{Detail, LOOKUPS_AT_MOST, Namespaces, SocketEntry, rest_after_walk};

/// A connection not accepted within this long (a full accept queue, a
/// server that stopped accepting) is no longer looked for here: its close
/// still comes, named by its owner if one took it.
const PATIENCE: Duration = Duration::from_secs(30);
/// At most this many wait (about 150 bytes each): a burst of this many
/// accepts between two refreshes is still named here; past it, at close.
const MAX_WAITING: usize = 1 << 18;
/// Every process is searched at most this often.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(2);
/// The states of an accepted connection still open.
const ACCEPTED_STATES: u32 = (1 << 1) // ESTABLISHED
    | (1 << 8); // CLOSE_WAIT

/// How often the resolver looks, at most.
const EVERY: Duration = Duration::from_millis(500);

/// The pause after a look that walked the kernel's table for `walked`:
/// EVERY, or longer where walks are slow (sock_diag::rest_after_walk).
fn pause_after(walked: Duration) -> Duration {
    EVERY.max(rest_after_walk(walked))
}

/// The reader's side: the waiting connections' events, and the way to the
/// resolver, which starts with the first incoming connection (only the
/// tracepoint backend reports them).
pub struct Accepts {
    waiting: FxHashMap<u64, RawEvent>,
    /// Sockets named here whose owner's close the probe will name again.
    told: FxHashSet<u64>,
    resolver: Option<Resolver>,
    channels: Option<(Sender<Vec<Ask>>, Receiver<Answer>)>,
    /// Asks of this drain of the ring, sent together by `flush`: one
    /// message per connection woke the resolver for each.
    outbox: Vec<Ask>,
}

enum Ask {
    /// Find who accepts this socket.
    Find { sk: u64, key: ConnKey },
    /// No longer: the probe named its owner, or it closed.
    Forget(u64),
}

enum Answer {
    Owner {
        sk: u64,
        pid: u32,
    },
    /// Gone before anyone accepted it, or not accepted in time.
    Gone(u64),
}

impl Accepts {
    pub fn new() -> anyhow::Result<Accepts> {
        let resolver = Resolver {
            waiting: FxHashMap::default(),
            holders: FxHashMap::default(),
            last_full_scan: None,
            namespaces: Namespaces::new()?,
            walked: Duration::ZERO,
            missed: FxHashSet::default(),
        };
        Ok(Accepts {
            waiting: FxHashMap::default(),
            told: FxHashSet::default(),
            resolver: Some(resolver),
            channels: None,
            outbox: Vec::new(),
        })
    }

    /// The resolver's thread, started on first use; it ends when this is
    /// dropped. None if it could not start: the probe still names each
    /// connection at its owner's close.
    fn started(&mut self) -> bool {
        if let Some(resolver) = self.resolver.take() {
            let (asks, asked) = channel();
            let (answer, answers) = channel();
            let started = std::thread::Builder::new()
                .name("nettop-accepts".into())
                .spawn(move || resolver.run(&asked, &answer));
            if started.is_ok() {
                self.channels = Some((asks, answers));
            }
        }
        self.channels.is_some()
    }

    /// Send this drain's asks to the resolver, in one message.
    pub fn flush(&mut self) {
        if let Some((asks, _)) = &self.channels
            && !self.outbox.is_empty()
        {
            let _ = asks.send(std::mem::take(&mut self.outbox));
        }
    }

    /// The probe reported an incoming connection (`key.tgid` 0).
    pub fn incoming(&mut self, ev: RawEvent) {
        // A new connection on the memory of one that ended unseen.
        self.ended(ev.sk);
        if self.waiting.len() >= MAX_WAITING {
            return;
        }
        if self.started() {
            self.outbox.push(Ask::Find { sk: ev.sk, key: ev.key });
            self.waiting.insert(ev.sk, ev);
        }
    }

    /// Socket `sk` is no longer waiting: the probe named its owner, or it
    /// closed (an answer after that is stale).
    pub fn ended(&mut self, sk: u64) {
        self.told.remove(&sk);
        if self.waiting.remove(&sk).is_some() && self.channels.is_some() {
            self.outbox.push(Ask::Forget(sk));
        }
    }

    /// The probe named the owner of `sk` at its close: true if this told
    /// it already (the probe cannot know), and then it is not news.
    pub fn repeated(&mut self, sk: u64) -> bool {
        if self.told.remove(&sk) {
            return true;
        }
        self.ended(sk);
        false
    }

    /// The connections the resolver has found owners for since last time,
    /// each as the probe's incoming event with the owner's pid in it, in
    /// the order they were established. Never waits.
    pub fn found(&mut self) -> Vec<RawEvent> {
        let mut out = Vec::new();
        let Some((_, answers)) = &self.channels else { return out };
        while let Ok(answer) = answers.try_recv() {
            match answer {
                Answer::Owner { sk, pid } => {
                    // The owner's name comes with its attribution
                    // (tracer/owners).
                    if let Some(ev) = self.waiting.remove(&sk) {
                        if self.told.len() < MAX_WAITING {
                            self.told.insert(sk);
                        }
                        out.push(RawEvent {
                            kind: nettop_shared::EV_ACCEPT,
                            key: ConnKey { tgid: pid, ..ev.key },
                            ..ev
                        });
                    }
                }
                Answer::Gone(sk) => {
                    self.waiting.remove(&sk);
                }
            }
        }
        // A burst of accepts leaves tables sized for it: give them back.
        if self.waiting.capacity() > 4096 && self.waiting.len() < self.waiting.capacity() / 8 {
            self.waiting.shrink_to(2 * self.waiting.len());
        }
        if self.told.capacity() > 4096 && self.told.len() < self.told.capacity() / 8 {
            self.told.shrink_to(2 * self.told.len());
        }
        out.sort_by_key(|e| e.ts_ns);
        out
    }
}

struct Resolver {
    /// Socket → its tuple, and since when it waits.
    waiting: FxHashMap<u64, (ConnKey, Instant)>,
    /// A listening socket's inode → the processes holding it.
    holders: FxHashMap<u64, Vec<u32>>,
    last_full_scan: Option<Instant>,
    /// Its own sock_diag sockets, opened when a namespace is first seen.
    namespaces: Namespaces,
    /// Time the last look spent walking the kernel's whole table: what
    /// the pause after it is measured by. (Not the `/proc` scans: those
    /// have their own bound, FULL_SCAN_EVERY, and a burst of accepts
    /// waited half a minute behind a 1.5 s scan.)
    walked: Duration,
    /// Waiting connections the last look's exact lookups did not find. A
    /// lookup names no interface, so it misses a socket bound to one (VRF,
    /// IPv6 link-local, SO_BINDTODEVICE) as surely as a closed one; a
    /// closed one's close comes by the next look, and what is missed again
    /// is looked for in a dump of its namespace.
    missed: FxHashSet<u64>,
}

impl Resolver {
    /// Asleep between looks. The reader's asks wait in the channel (a send
    /// to a thread that is not waiting on it wakes nothing: under churn a
    /// wake-up per drain of the ring was a tenth of nettop's CPU), and are
    /// taken at each look.
    fn run(mut self, asked: &Receiver<Vec<Ask>>, answer: &Sender<Answer>) {
        let mut pause = EVERY;
        loop {
            std::thread::sleep(pause);
            let now = Instant::now();
            loop {
                match asked.try_recv() {
                    Ok(asks) => {
                        for ask in asks {
                            match ask {
                                Ask::Find { sk, key } => {
                                    self.waiting.insert(sk, (key, now));
                                }
                                Ask::Forget(sk) => {
                                    self.waiting.remove(&sk);
                                }
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            for a in self.resolve() {
                if answer.send(a).is_err() {
                    return;
                }
            }
            pause = pause_after(std::mem::take(&mut self.walked));
        }
    }

    /// Each waiting connection that a process has accepted by now, and
    /// those that will not be.
    fn resolve(&mut self) -> Vec<Answer> {
        let mut out = Vec::new();
        self.waiting.retain(|&sk, (_, since)| {
            let keep = since.elapsed() < PATIENCE;
            if !keep {
                out.push(Answer::Gone(sk));
            }
            keep
        });
        if self.waiting.capacity() > 4096 && self.waiting.len() < self.waiting.capacity() / 8 {
            self.waiting.shrink_to(2 * self.waiting.len());
        }
        let mut netns: Vec<u32> = self.waiting.values().map(|(k, _)| k.netns).collect();
        netns.sort_unstable();
        netns.dedup();
        // A socket holds its namespace alive: keep only those still needed.
        self.namespaces.retain(|ns| netns.binary_search(&ns).is_ok());
        if self.waiting.is_empty() {
            return out;
        }
        if netns.iter().any(|ns| self.namespaces.get(*ns).is_none()) {
            self.namespaces.open_every_process_namespace();
        }
        // What the kernel has now: each waiting connection's inode (0 until
        // accepted), looked up one by one where few wait (a dump walks
        // every socket on the host, TIME_WAIT ones included), then the
        // listeners on the accepted ones' ports.
        let mut inodes: FxHashMap<u64, u64> = FxHashMap::default();
        let mut answered = Vec::new();
        // Answered by lookups alone: a miss there may be a bound socket.
        let mut looked_up_only = Vec::new();
        for &ns in &netns {
            let Some(sock) = self.namespaces.get(ns) else { continue };
            let (sks, keys): (Vec<u64>, Vec<ConnKey>) = (self.waiting.iter())
                .filter(|(_, (k, _))| k.netns == ns)
                .map(|(&sk, (k, _))| (sk, *k))
                .unzip();
            let by_key: FxHashMap<ConnKey, u64> =
                keys.iter().zip(&sks).map(|(k, &sk)| (slot(k), sk)).collect();
            let take = |inodes: &mut FxHashMap<u64, u64>, batch: &[SocketEntry]| {
                for e in batch {
                    if let Some(&sk) = by_key.get(&slot(&key_of(e))) {
                        inodes.insert(sk, e.inode);
                    }
                }
            };
            let mut dump = keys.len() > LOOKUPS_AT_MOST;
            if !dump {
                let looked = sock
                    .lookup_tcp(&keys, ACCEPTED_STATES, Detail::Presence, |b| take(&mut inodes, b));
                let missed_again =
                    sks.iter().any(|sk| !inodes.contains_key(sk) && self.missed.contains(sk));
                match looked {
                    Ok(()) if missed_again => dump = true,
                    Ok(()) => {
                        answered.push(ns);
                        looked_up_only.push(ns);
                    }
                    Err(_) => {}
                }
            }
            if dump {
                let walk = Instant::now();
                let dumped =
                    sock.stream_tcp(ACCEPTED_STATES, Detail::Presence, |b| take(&mut inodes, b));
                self.walked += walk.elapsed();
                if dumped.is_ok() {
                    answered.push(ns);
                }
            }
        }
        // Gone before anyone accepted it (or its namespace with it): its
        // close comes from the probe. A first miss by a lookup waits for
        // the next look.
        let mut missed = FxHashSet::default();
        self.waiting.retain(|sk, (k, _)| {
            if !answered.contains(&k.netns) || inodes.contains_key(sk) {
                return true;
            }
            if looked_up_only.contains(&k.netns) && !self.missed.contains(sk) {
                missed.insert(*sk);
                return true;
            }
            out.push(Answer::Gone(*sk));
            false
        });
        self.missed = missed;
        let mut accepted: Vec<(u64, u64, Vec<u64>)> = (self.waiting.iter())
            .filter_map(|(&sk, _)| {
                let inode = *inodes.get(&sk).filter(|&&n| n != 0)?;
                Some((sk, inode, Vec::new()))
            })
            .collect();
        if accepted.is_empty() {
            return out;
        }
        // Listeners only: the kernel walks its small listening table, not
        // the connections'.
        let mut listeners: FxHashMap<(u32, u16), Vec<u64>> = FxHashMap::default();
        let mut listed: Vec<u32> = accepted.iter().map(|a| self.waiting[&a.0].0.netns).collect();
        listed.sort_unstable();
        listed.dedup();
        for ns in listed {
            let Some(sock) = self.namespaces.get(ns) else { continue };
            let _ = sock.stream_tcp(1 << TCP_LISTEN, Detail::Presence, |batch| {
                for e in batch.iter().filter(|e| e.state == TCP_LISTEN) {
                    listeners.entry((ns, e.lport)).or_default().push(e.inode);
                }
            });
        }
        for (sk, _, on_port) in &mut accepted {
            let k = &self.waiting[sk].0;
            *on_port = listeners.get(&(k.netns, k.lport)).cloned().unwrap_or_default();
        }
        let wanted: FxHashSet<u64> = accepted.iter().map(|a| a.1).collect();
        let mut owners: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        if accepted.iter().any(|a| a.2.iter().any(|l| !self.holders.contains_key(l))) {
            self.full_scan(&mut owners, &listeners);
        } else {
            let mut pids: Vec<u32> = accepted
                .iter()
                .flat_map(|a| &a.2)
                .flat_map(|l| &self.holders[l])
                .copied()
                .collect();
            pids.sort_unstable();
            pids.dedup();
            sockets_of(&pids, &wanted, &mut owners);
            if wanted.iter().any(|i| !owners.contains_key(i))
                && self.last_full_scan.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY)
            {
                self.full_scan(&mut owners, &listeners);
            }
        }
        for (sk, inode, on_port) in &accepted {
            let Some(pids) = owners.get(inode) else { continue };
            // Several hold it after a fork: the one that holds the listener
            // accepted it, as an accept hook would say.
            let listening = |p: &u32| {
                on_port.iter().any(|l| self.holders.get(l).is_some_and(|h| h.contains(p)))
            };
            let pid = pids.iter().copied().find(listening).unwrap_or(pids[0]);
            self.waiting.remove(sk);
            out.push(Answer::Owner { sk: *sk, pid });
        }
        out
    }

    /// Every process's sockets: who holds each listener, and each wanted
    /// inode (into `owners`).
    fn full_scan(
        &mut self,
        owners: &mut FxHashMap<u64, Vec<u32>>,
        listeners: &FxHashMap<(u32, u16), Vec<u64>>,
    ) {
        let all = socket_owners();
        self.last_full_scan = Some(Instant::now());
        self.holders.clear();
        for l in listeners.values().flatten() {
            self.holders.insert(*l, all.get(l).cloned().unwrap_or_default());
        }
        owners.extend(all);
    }
}

/// Which of `wanted` the processes `pids` hold.
fn sockets_of(pids: &[u32], wanted: &FxHashSet<u64>, owners: &mut FxHashMap<u64, Vec<u32>>) {
    for (inode, pid) in socket_inodes(Some(pids)) {
        if wanted.contains(&inode) {
            owners.entry(inode).or_default().push(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_looks_wait_longer() {
        assert_eq!(pause_after(Duration::from_millis(5)), EVERY);
        assert_eq!(pause_after(Duration::from_millis(200)), Duration::from_millis(3800));
    }
    use nettop_shared::{EV_ACCEPT, EV_INCOMING, IPPROTO_TCP};

    /// The reader's side, with the test as its resolver.
    fn accepts() -> (Accepts, Sender<Answer>, Receiver<Vec<Ask>>) {
        let (asks, asked) = channel();
        let (answer, answers) = channel();
        let told = FxHashSet::default();
        let a = Accepts {
            waiting: FxHashMap::default(),
            told,
            resolver: None,
            channels: Some((asks, answers)),
            outbox: Vec::new(),
        };
        (a, answer, asked)
    }

    fn incoming(sk: u64) -> RawEvent {
        let key = ConnKey { proto: IPPROTO_TCP, lport: 80, rport: 4000, ..ConnKey::default() };
        RawEvent { kind: EV_INCOMING, sk, key, ts_ns: 5, ..RawEvent::default() }
    }

    #[test]
    fn an_accept_named_here_and_again_by_the_probe_is_told_once() {
        let (mut a, answer, asked) = accepts();
        a.incoming(incoming(7));
        assert!(asked.try_recv().is_err(), "asks wait for the end of the drain");
        a.flush();
        assert!(matches!(asked.try_recv().as_deref(), Ok([Ask::Find { sk: 7, .. }])));
        answer.send(Answer::Owner { sk: 7, pid: 42 }).unwrap();
        let found = a.found();
        let [e] = &found[..] else { panic!("{found:?}") };
        assert_eq!((e.kind, e.sk, e.key.tgid, e.ts_ns), (EV_ACCEPT, 7, 42, 5));
        // The probe names it again at its owner's close: not news, once.
        assert!(a.repeated(7));
        assert!(!a.repeated(7));
        // The probe named it first: the resolver's answer is stale.
        a.incoming(incoming(7));
        assert!(!a.repeated(7));
        a.flush();
        assert!(matches!(asked.try_iter().flatten().last(), Some(Ask::Forget(7))));
        answer.send(Answer::Owner { sk: 7, pid: 42 }).unwrap();
        assert!(a.found().is_empty());
        // Named here, its close lost, its memory a new connection's: the
        // probe naming that one is news.
        a.incoming(incoming(7));
        answer.send(Answer::Owner { sk: 7, pid: 42 }).unwrap();
        assert_eq!(a.found().len(), 1);
        a.incoming(incoming(7));
        assert!(!a.repeated(7));
        // Waiting, its close lost, its memory a new connection's: that one
        // is looked for.
        a.incoming(incoming(7));
        a.incoming(RawEvent { ts_ns: 6, ..incoming(7) });
        answer.send(Answer::Owner { sk: 7, pid: 42 }).unwrap();
        assert!(matches!(a.found()[..], [RawEvent { ts_ns: 6, .. }]));
        // Gone before anyone accepted it.
        a.incoming(incoming(8));
        answer.send(Answer::Gone(8)).unwrap();
        answer.send(Answer::Owner { sk: 8, pid: 42 }).unwrap();
        assert!(a.found().is_empty());
    }
}
