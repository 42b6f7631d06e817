//! A tracer in this process and everything its event stream said: how the
//! end-to-end tests watch the traffic they make.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nettop::probe::BackendChoice;
use nettop::tracer::{Connection, Event, EventKind};
use nettop::{Config, Tracer};

/// The backend the tests ask for (NETTOP_BACKEND), as the library takes it.
pub fn backend_choice() -> BackendChoice {
    <BackendChoice as clap::ValueEnum>::from_str(&super::common::backend(), false)
        .unwrap_or(BackendChoice::Auto)
}

pub struct Watch {
    pub tracer: Tracer,
    events: Arc<Mutex<Vec<Event>>>,
    collector: std::thread::JoinHandle<()>,
}

impl Watch {
    pub fn start() -> Watch {
        Watch::with(Config::default())
    }

    pub fn with(config: Config) -> Watch {
        let mut tracer = Tracer::start(Config {
            backend: backend_choice(),
            // Closed connections stay visible for the assertions.
            linger: Duration::from_secs(600),
            // The raw events of a failing test, in its log (tests/vm/run
            // passes NETTOP_DEBUG_EVENTS into the VMs).
            debug_events: super::common::debug_events(),
            ..config
        })
        .expect("start the tracer");
        let mut stream = tracer.events().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let collector = std::thread::spawn(move || {
            while let Some(ev) = stream.blocking_next() {
                sink.lock().unwrap().push(ev);
            }
        });
        Watch { tracer, events, collector }
    }

    /// The events so far.
    pub fn events(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap()
    }

    /// Wait until `pred` holds for the events so far (or fail after 60 s:
    /// emulated VMs are slow).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let start = Instant::now();
        while !pred(&self.events()) {
            if start.elapsed() > Duration::from_secs(60) {
                let mut kinds = std::collections::BTreeMap::new();
                for e in self.events().iter() {
                    *kinds.entry(format!("{:?}", e.event)).or_insert(0) += 1;
                }
                panic!(
                    "timed out waiting for {what}: events {kinds:?}, {:?}, {} connections listed",
                    self.tracer.stats(),
                    self.tracer.connections().len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until each (server port, client port) has been accepted: on
    /// the tracepoint backend that is told up to a refresh later.
    pub fn wait_accepted(&self, ends: &[(u16, u16)]) {
        self.wait_for("the accepts", |e| {
            ends.iter().all(|&end| {
                e.iter().any(|e| {
                    e.event == EventKind::Accept
                        && e.conn.as_ref().is_some_and(|c| (c.tuple.lport, c.tuple.rport) == end)
                })
            })
        });
    }

    pub fn finish(self) -> (Vec<Connection>, Vec<Event>, nettop::Stats) {
        let conns = self.tracer.connections();
        let stats = self.tracer.stats();
        self.tracer.stop();
        self.collector.join().unwrap();
        let events = Arc::try_unwrap(self.events).unwrap().into_inner().unwrap();
        (conns, events, stats)
    }
}

/// The close events of the end `lport` → `rport`.
pub fn closes(evs: &[Event], lport: u16, rport: u16) -> Vec<&Event> {
    evs.iter()
        .filter(|e| e.event == EventKind::Close)
        .filter(|e| {
            e.conn.as_ref().is_some_and(|c| c.tuple.lport == lport && c.tuple.rport == rport)
        })
        .collect()
}
