//! Addresses as names: `/etc/hosts` first, then reverse DNS in the
//! background (one thread with its own runtime, a bounded number of lookups
//! at once, answers kept for their TTL). Asking never waits. No glibc NSS:
//! hickory reads `/etc/resolv.conf` itself, so a static binary loads no NSS
//! modules.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{Resolver, TokioResolver};

use super::hosts::Hosts;

/// Lookups in flight at once.
const CONCURRENT: usize = 8;
/// Addresses waiting for a lookup; more are dropped and asked again later.
const QUEUE: usize = 1024;
/// A server that does not answer in this time leaves the address as it is.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a name, or its absence, is kept at least and at most.
const MIN_TTL: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(3600);
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Addresses remembered; past it, forgotten answers are asked again.
const MAX_KNOWN: usize = 65_536;

#[derive(Clone, Debug)]
enum Known {
    Asked,
    Name { name: Arc<str>, until: Instant },
    Nameless { until: Instant },
}

/// Reverse-DNS names, looked up in the background.
#[derive(Clone)]
pub struct Dns {
    hosts: Arc<Hosts>,
    known: Arc<Mutex<HashMap<IpAddr, Known>>>,
    queue: tokio::sync::mpsc::Sender<IpAddr>,
}

impl Dns {
    /// The resolver of `/etc/resolv.conf` (or only `server`) and
    /// `/etc/hosts`, on a thread of its own.
    pub fn start(server: Option<SocketAddr>) -> Result<Dns> {
        let (config, mut opts) = match server {
            Some(s) => (
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true),
                ),
                ResolverOpts::default(),
            ),
            // No resolv.conf: /etc/hosts alone still names addresses.
            None => hickory_resolver::system_conf::read_system_conf()
                .unwrap_or_else(|_| (ResolverConfig::new(), ResolverOpts::default())),
        };
        // Read here, in file order: hickory's own picks any of several names.
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = TIMEOUT;
        opts.attempts = 1;
        // Answers are kept here, per address; hickory's own cache would
        // only hold them twice.
        opts.cache_size = 0;
        let known: Arc<Mutex<HashMap<IpAddr, Known>>> = Arc::default();
        let (queue, mut asked) = tokio::sync::mpsc::channel::<IpAddr>(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the name resolver's runtime")?;
        let store = known.clone();
        std::thread::Builder::new()
            .name("nettop-names".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let resolver: TokioResolver =
                        Resolver::builder_with_config(config, TokioConnectionProvider::default())
                            .with_options(opts)
                            .build();
                    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
                    while let Some(ip) = asked.recv().await {
                        let Ok(slot) = slots.clone().acquire_owned().await else { break };
                        let (resolver, store) = (resolver.clone(), store.clone());
                        tokio::spawn(async move {
                            let answer =
                                tokio::time::timeout(TIMEOUT, resolver.reverse_lookup(ip)).await;
                            let now = Instant::now();
                            let known = match answer {
                                Ok(Ok(lookup)) => match lookup.iter().next() {
                                    Some(ptr) => Known::Name {
                                        name: ptr.0.to_utf8().trim_end_matches('.').into(),
                                        until: now
                                            + lookup
                                                .valid_until()
                                                .saturating_duration_since(now)
                                                .clamp(MIN_TTL, MAX_TTL),
                                    },
                                    None => Known::Nameless { until: now + NEGATIVE_TTL },
                                },
                                _ => Known::Nameless { until: now + NEGATIVE_TTL },
                            };
                            lock(&store).insert(ip, known);
                            drop(slot);
                        });
                    }
                });
            })
            .context("start the name resolver's thread")?;
        Ok(Dns { hosts: Arc::new(Hosts::system()), known, queue })
    }

    /// `ip`'s name if one is known; otherwise asks for it in the
    /// background and says None at once. An expired name still shows while
    /// it is asked again.
    pub fn name(&self, ip: IpAddr) -> Option<Arc<str>> {
        if let Some(name) = self.hosts.name(ip) {
            return Some(name);
        }
        let now = Instant::now();
        let mut known = lock(&self.known);
        let (name, ask) = match known.get(&ip) {
            Some(Known::Asked) => (None, false),
            Some(Known::Name { name, until }) => (Some(name.clone()), *until <= now),
            Some(Known::Nameless { until }) => (None, *until <= now),
            None => (None, true),
        };
        if ask {
            if known.len() >= MAX_KNOWN {
                known.retain(|_, k| matches!(k, Known::Asked));
            }
            // A full queue: asked again on a later frame.
            if self.queue.try_send(ip).is_ok() {
                let old = known.insert(ip, Known::Asked);
                // Keep showing the old name until the new answer.
                if let Some(Known::Name { name, .. }) = old {
                    known.insert(ip, Known::Name { name, until: now + TIMEOUT });
                }
            }
        }
        name
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A DNS server on loopback for tests.
#[cfg(test)]
pub(crate) mod test_server {
    use super::*;
    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::rdata::PTR;
    use hickory_resolver::proto::rr::{Name, RData, Record};
    use std::net::UdpSocket;

    /// A DNS server on loopback that answers every PTR query with `name`,
    /// or never answers (None); it counts the queries.
    pub fn server(name: Option<&'static str>) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (Some(name), Ok(q)) = (name, Message::from_vec(&buf[..n])) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(q.op_code())
                    .set_recursion_available(true)
                    .add_queries(q.queries().to_vec());
                let ptr = PTR(Name::from_ascii(name).unwrap());
                r.add_answer(Record::from_rdata(
                    q.queries()[0].name().clone(),
                    300,
                    RData::PTR(ptr),
                ));
                let _ = sock.send_to(&r.to_vec().unwrap(), from);
            }
        });
        (addr, queries)
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::server;
    use super::*;

    fn wait_for(dns: &Dns, ip: IpAddr) -> Option<Arc<str>> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(n) = dns.name(ip) {
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[test]
    fn a_server_s_answer_names_the_address_and_is_kept() {
        let (addr, queries) = server(Some("db.example.test."));
        let dns = Dns::start(Some(addr)).unwrap();
        let ip: IpAddr = "192.0.2.44".parse().unwrap();
        assert_eq!(wait_for(&dns, ip).as_deref(), Some("db.example.test"));
        let asked = queries.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..100 {
            assert_eq!(dns.name(ip).as_deref(), Some("db.example.test"));
        }
        assert_eq!(
            queries.load(std::sync::atomic::Ordering::Relaxed),
            asked,
            "kept, not asked again"
        );
    }

    /// A server that never answers: asking never waits, the address keeps
    /// no name, and the lookups in flight stay bounded.
    #[test]
    fn a_silent_server_never_makes_anyone_wait() {
        let (addr, queries) = server(None);
        let dns = Dns::start(Some(addr)).unwrap();
        let start = Instant::now();
        for i in 0..2000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xc000_0200 + i));
            assert_eq!(dns.name(ip), None);
        }
        assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(500));
        let asked = queries.load(std::sync::atomic::Ordering::Relaxed);
        assert!((1..=CONCURRENT).contains(&asked), "{asked} queries in flight at once");
        let ip: IpAddr = "192.0.2.0".parse().unwrap();
        std::thread::sleep(TIMEOUT + Duration::from_millis(500));
        assert_eq!(dns.name(ip), None, "timed out: no name");
    }

    /// /etc/hosts answers before any server is asked.
    #[test]
    fn etc_hosts_answers_first() {
        let hosts = Hosts::system();
        let Some(name) = hosts.name("127.0.0.1".parse().unwrap()) else {
            return; // this machine's /etc/hosts does not name it
        };
        let (addr, queries) = server(Some("wrong.example.test."));
        let dns = Dns::start(Some(addr)).unwrap();
        assert_eq!(dns.name("127.0.0.1".parse().unwrap()), Some(name));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(queries.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
