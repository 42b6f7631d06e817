//! Owners shared by every connection and event of a process: resolved once
//! per attribution lifetime, then handed out by reference count. Under
//! churn, copying a process's strings (command line, user, cgroup,
//! container) into every event and every listed connection was a large
//! part of nettop's own CPU.
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::attribution::{self, Attributor, Unattributed};
use super::conntrack::Entry;
use super::model::Owner;

pub struct Owners {
    attribution: Attributor,
    cache: FxHashMap<u32, (Instant, Arc<Owner>)>,
}

impl Owners {
    pub fn new() -> Owners {
        Owners { attribution: Attributor::new(), cache: FxHashMap::default() }
    }

    /// The owner of `tgid` at `now` (one clock read per batch of lookups,
    /// not one per lookup); `comm` (the kernel's thread name) stands in
    /// when the process cannot be read.
    pub fn get(&mut self, tgid: u32, comm: &[u8; 16], now: Instant) -> Arc<Owner> {
        if let Some((at, owner)) = self.cache.get(&tgid)
            && now.saturating_duration_since(*at) < attribution::DEFAULT_TTL
        {
            return owner.clone();
        }
        match self.attribution.lookup(tgid) {
            Ok(info) => {
                let owner = Arc::new(Owner::resolve(tgid, comm, Ok(info)));
                // As many processes as the attribution cache remembers.
                if self.cache.len() >= attribution::MAX_ENTRIES {
                    self.cache.retain(|_, (at, _)| {
                        now.saturating_duration_since(*at) < attribution::DEFAULT_TTL
                    });
                }
                self.cache.insert(tgid, (now, owner.clone()));
                owner
            }
            // Thin owners carry the event's own thread name: not shared.
            Err(why) => Arc::new(Owner::resolve(tgid, comm, Err(why))),
        }
    }

    /// A backfilled socket that no process holds any more predates us.
    pub fn of_entry(&mut self, e: &Entry, now: Instant) -> Arc<Owner> {
        if e.backfilled && e.key.tgid == 0 {
            return Arc::new(Owner::resolve(0, &e.comm, Err(Unattributed::BeforeStart)));
        }
        self.get(e.key.tgid, &e.comm, now)
    }
}
