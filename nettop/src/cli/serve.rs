//! `nettop serve`: a headless daemon for fleets. `/metrics` (Prometheus
//! text format, bounded labels), `/connections` (what `nettop list --json`
//! prints), `/status` (backend, offsets, loss counters) and `/healthz`, over
//! TCP and/or a unix socket, until SIGTERM or SIGINT.
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nettop::export::http::{self, Handler, Listings, Reply, Route, TEXT};
use nettop::export::{Aggregator, LabelSpec, PortClass, encode_health};
use nettop::sandbox::{Allowed, Protections};
use nettop::tracer::{Connection, Tracer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::clients::{ClientLimits, Clients, Refused};
use super::escape;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9633";

pub struct Options {
    /// None: the default address, unless only a unix socket was asked for.
    pub listen: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub labels: LabelSpec,
    pub max_series: usize,
    /// Bounds of the agents' /connections?client_id=ID.
    pub clients: ClientLimits,
}

/// How often the connection table is read between scrapes, so that counters
/// move on even when nobody scrapes (and `/status` stays current).
const REFRESH: Duration = Duration::from_secs(1);
/// How often the HTTP thread checks for stop.
const SERVE_TICK: Duration = Duration::from_millis(100);

pub fn run(mut config: nettop::Config, opts: Options, allowed: &Allowed) -> Result<ExitCode> {
    // Agents hear of every connection that closed between their polls.
    config.close_rows = true;
    // Listen first: a port in use or a bad socket path is a quick one-line
    // error, before any probe loads. The HTTP servers (and their threads)
    // start once the tracer has given up its privileges.
    let mut listeners: Vec<(String, Bound)> = Vec::new();
    if opts.listen.is_some() || opts.unix.is_none() {
        let addr = opts.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid"));
        let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push((format!("http://{addr}"), Bound::Tcp(l)));
    }
    let mut allowed = allowed.clone();
    let unix = match &opts.unix {
        Some(path) => {
            let l = bind_unix(path)?;
            listeners
                .push((format!("unix:{}", escape(&path.display().to_string())), Bound::Unix(l)));
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            allowed.socket_dirs.push(dir.to_owned());
            Some(UnixSocket(path.clone()))
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handlers")?;
    }

    let (mut tracer, protections) = super::start_tracer(config, &allowed)?;
    let mut events = tracer.events().expect("first call");
    if let Some(why) = &tracer.info().backfill_error {
        eprintln!("nettop: warning: {}", escape(why));
    }
    let shared = Arc::new(ServeState {
        agg: Mutex::new(Aggregator::new(opts.labels, PortClass::from_host(), opts.max_series)),
        clients: Mutex::new(Clients::new(opts.clients)),
        tracer,
        started: Instant::now(),
        longest_listing_us: AtomicU64::new(0),
        listings: Listings::new(http::MAX_LISTINGS, http::LISTING_WAIT),
        protections,
    });
    let mut registry = Registry::with_prefix("nettop");
    registry.register_collector(Box::new(Metrics(shared.clone())));
    let registry = Arc::new(registry);
    // The connections at start (older ones included) before any scrape.
    shared.refresh();

    let names: Vec<String> = listeners.iter().map(|(n, _)| n.clone()).collect();
    let handler: Handler = {
        let (shared, registry) = (shared.clone(), registry.clone());
        Arc::new(move |route| handle(route, &shared, &registry))
    };
    let http = spawn_http(listeners, handler, shared.listings.clone(), stop.clone())?;
    let info = shared.tracer.info();
    eprintln!(
        "nettop: serving {} on the {} backend (offsets {}); SIGTERM or Ctrl-C to stop",
        names.join(" and "),
        info.backend,
        info.offsets
    );

    // Events in, until asked to stop.
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut took = false;
        {
            let mut agg = shared.agg();
            let mut clients = shared.clients();
            while let Some(ev) = events.try_next() {
                agg.event(&ev);
                if let Some(row) = &ev.row {
                    clients.closed(row);
                }
                took = true;
            }
        }
        if last.elapsed() >= REFRESH {
            shared.refresh();
            shared.clients().expire(Instant::now());
            last = Instant::now();
        }
        if !took {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = http.join();
    drop(unix);
    // The HTTP threads are gone and the registry's collector goes now: this
    // is the last handle, and stopping it detaches the probes.
    drop(registry);
    match Arc::try_unwrap(shared) {
        Ok(s) => s.tracer.stop(),
        Err(_) => bail!("internal error: the tracer is still shared at exit"),
    }
    Ok(ExitCode::SUCCESS)
}

struct ServeState {
    tracer: Tracer,
    agg: Mutex<Aggregator>,
    clients: Mutex<Clients>,
    started: Instant,
    /// The longest a listing of the connections took, in µs: the tracer's
    /// lock is held all that time, and its reader waits.
    longest_listing_us: AtomicU64,
    /// The `/connections` answers being sent, bounded.
    listings: Arc<Listings>,
    protections: Protections,
}

impl ServeState {
    fn agg(&self) -> MutexGuard<'_, Aggregator> {
        self.agg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clients(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every connection now, timed.
    fn connections(&self) -> Vec<Connection> {
        let t = Instant::now();
        let conns = self.tracer.connections();
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.longest_listing_us.fetch_max(us, Ordering::Relaxed);
        conns
    }

    /// `/connections?client_id=ID`: what changed since that agent's last poll.
    fn poll(&self, id: &str) -> (u16, &'static str, String) {
        // Listed before the agents' lock: the main loop takes that lock for
        // every batch of events.
        let current = self.connections();
        // The agents' lock only for the poll, not while the reply is written.
        let polled = self.clients().poll(id, Instant::now(), current);
        match polled {
            Ok(reply) => (200, JSON, serde_json::to_string(&reply).unwrap_or_default()),
            Err(e @ Refused::BadId) => (400, TEXT, format!("{e}\n")),
            Err(e @ Refused::TooMany(_)) => (503, TEXT, format!("{e}\n")),
        }
    }

    fn refresh(&self) {
        // The aggregator's lock first, then the tracer's, as in `status`.
        let mut agg = self.agg();
        agg.refresh_with(Instant::now(), |take| self.tracer.for_each_connection(take));
    }

    fn status(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.tracer.info()).unwrap_or_default();
        let agg = self.agg();
        v["stats"] = serde_json::to_value(self.tracer.stats()).unwrap_or_default();
        v["kernel"] = super::kernel_release().into();
        v["version"] = env!("CARGO_PKG_VERSION").into();
        v["uptime_s"] = self.started.elapsed().as_secs_f64().into();
        v["labels"] = agg.spec().to_string().into();
        v["label_sets"] = agg.label_sets().into();
        v["label_sets_limit"] = agg.cap().into();
        let clients = self.clients();
        let limits = clients.limits();
        let mut c = serde_json::to_value(clients.totals()).unwrap_or_default();
        c["count"] = clients.count().into();
        c["max_clients"] = limits.max_clients.into();
        c["buffer"] = limits.buffer.into();
        c["timeout_s"] = limits.forget_after.as_secs_f64().into();
        v["clients"] = c;
        let longest = self.longest_listing_us.load(Ordering::Relaxed);
        v["longest_listing_ms"] = (longest as f64 / 1e3).into();
        v["listings"] = serde_json::json!({
            "sending": self.listings.sending(),
            "limit": self.listings.limit(),
            "refused": self.listings.refused(),
        });
        v["protections"] = serde_json::to_value(&self.protections).unwrap_or_default();
        v
    }
}

/// The scrape: per-label series, then nettop's own health.
struct Metrics(Arc<ServeState>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&*self.0.agg()).finish()
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = self.0.tracer.stats();
        let agg = self.0.agg();
        agg.encode(&mut encoder)?;
        encode_health(&mut encoder, self.0.tracer.info(), &stats, &agg)
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";

fn handle(route: Route, shared: &ServeState, registry: &Registry) -> Reply {
    let (code, kind, body) = match route {
        Route::Metrics => {
            // Counters exactly as of this scrape, not of the last tick.
            shared.refresh();
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (200, OPENMETRICS, text),
                Err(_) => (500, TEXT, "could not encode the metrics\n".into()),
            }
        }
        Route::Connections { client_id: Some(id) } => shared.poll(&id),
        Route::Connections { client_id: None } => {
            let conns = shared.connections();
            (200, JSON, serde_json::to_string(&conns).unwrap_or_default())
        }
        Route::Status => (200, JSON, shared.status().to_string()),
        Route::Healthz => (200, TEXT, "ok\n".into()),
        Route::NotFound => {
            (404, TEXT, "not found; try /metrics, /connections, /status or /healthz\n".into())
        }
        Route::MethodNotAllowed => (405, TEXT, "only GET\n".into()),
    };
    Reply { code, kind, body }
}

/// A listening socket, bound before the probes load.
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// At most this many connections are served at once; more are closed as
/// they come. Each holds at most a request head's buffer (`http::MAX_HEAD`).
const MAX_CONNECTIONS: usize = 4096;

/// The HTTP thread: one runtime for every listener, until `stop`.
fn spawn_http(
    listeners: Vec<(String, Bound)>,
    handler: Handler,
    listings: Arc<Listings>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    // Room for every listing being made and a scrape beside them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(http::MAX_LISTINGS + 2)
        .build()
        .context("start the HTTP runtime")?;
    std::thread::Builder::new()
        .name("nettop-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let open = Arc::new(AtomicUsize::new(0));
                for (name, bound) in listeners {
                    let (handler, listings, open) =
                        (handler.clone(), listings.clone(), open.clone());
                    match Listening::new(bound) {
                        Ok(l) => {
                            tokio::spawn(async move {
                                loop {
                                    if let Err(e) = l.accept_one(&handler, &listings, &open).await {
                                        accept_failed(&name, e).await;
                                    }
                                }
                            });
                        }
                        Err(e) => eprintln!("nettop: cannot serve: {}", escape(&e.to_string())),
                    }
                }
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(SERVE_TICK).await;
                }
            });
        })
        .context("spawn the HTTP thread")
}

/// A bound socket, handed to the runtime.
enum Listening {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listening {
    fn new(bound: Bound) -> std::io::Result<Listening> {
        Ok(match bound {
            Bound::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listening::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Bound::Unix(l) => {
                l.set_nonblocking(true)?;
                Listening::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }

    /// The next client, served in a task of its own.
    async fn accept_one(
        &self,
        handler: &Handler,
        listings: &Arc<Listings>,
        open: &Arc<AtomicUsize>,
    ) -> std::io::Result<()> {
        match self {
            Listening::Tcp(l) => serve(l.accept().await?.0, handler, listings, open),
            Listening::Unix(l) => serve(l.accept().await?.0, handler, listings, open),
        }
        Ok(())
    }
}

/// Out of descriptors, say: not a reason to stop serving.
async fn accept_failed(name: &str, e: std::io::Error) {
    eprintln!("nettop: {name}: {}", escape(&e.to_string()));
    tokio::time::sleep(SERVE_TICK).await;
}

/// One connection, unless MAX_CONNECTIONS are open: then it is closed.
fn serve<IO>(io: IO, handler: &Handler, listings: &Arc<Listings>, open: &Arc<AtomicUsize>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        open.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let (handler, listings, open) = (handler.clone(), listings.clone(), open.clone());
    tokio::spawn(async move {
        http::serve_connection(io, handler, listings).await;
        open.fetch_sub(1, Ordering::Relaxed);
    });
}

/// A unix socket only its owner (root) can use. A socket file left by a
/// nettop that died is replaced; anything else at the path is an error.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    let shown = escape(&path.display().to_string());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{shown} exists and is not a socket");
        }
        if UnixStream::connect(path).is_ok() {
            bail!("{shown} is in use by another server");
        }
        std::fs::remove_file(path).with_context(|| format!("remove the stale socket {shown}"))?;
    }
    // No moment with looser permissions: the umask covers the bind itself
    // (nothing else runs yet: the tracer starts after this).
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let l = bound.with_context(|| format!("cannot listen on {shown}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("make {shown} private"))?;
    Ok(l)
}

/// Removes the socket file on the way out.
struct UnixSocket(PathBuf);

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
