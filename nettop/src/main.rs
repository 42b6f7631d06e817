//! The command line: parse flags, run a subcommand, print any error as one
//! line and exit non-zero.
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use nettop::Filter;
use nettop::probe::guess::GuessSwitches;
use nettop::probe::privileges::{EXIT_PRIVILEGES, PrivilegeError};
use nettop::probe::{BackendChoice, OffsetsMode, StartConfig};
use nettop::tracer::Proto;

mod cli;

#[derive(Parser)]
#[command(
    name = "nettop",
    version = nettop::LONG_VERSION,
    about = "Every TCP and UDP connection on this host, per process, traced with eBPF"
)]
struct Args {
    /// Attach backend: kprobe where it attaches, else fentry, else tracepoint.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    backend: BackendChoice,
    /// Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only.
    #[arg(long, value_enum, default_value_t = OffsetsMode::Auto, global = true)]
    offsets: OffsetsMode,
    /// Read BTF from this file instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE", global = true)]
    btf: Option<PathBuf>,
    /// Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8"
    /// (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates).
    #[arg(long, short = 'f', value_name = "TERMS", global = true)]
    filter: Option<String>,
    /// Only this process (thread-group id).
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Only connections with this port at either end.
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Only this protocol.
    #[arg(long, value_enum, global = true)]
    proto: Option<Proto>,
    /// Only processes whose name or command line contains this text.
    #[arg(long, global = true)]
    comm: Option<String>,
    /// Seconds without traffic after which a UDP flow ends.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, global = true)]
    udp_timeout: f64,
    /// Seconds a closed connection stays listed.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, global = true)]
    linger: f64,
    /// At most this many closed connections stay listed (the latest); under churn they go before their linger is over.
    #[arg(long, value_name = "N", default_value_t = nettop::tracer::DEFAULT_MAX_CLOSED, global = true)]
    max_closed: usize,
    /// Open connections tracked at most, in the kernel's tables and in nettop's own; past it new ones are refused and counted as evicted.
    #[arg(long, value_name = "N", default_value_t = 65536, global = true)]
    max_connections: u32,
    /// Size of the kernel's event ring buffer in bytes: a power of two, at least 4096.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, global = true)]
    ring_bytes: u32,
    /// Leave out IPv6 connections.
    #[arg(long, global = true)]
    no_ipv6: bool,
    /// Seconds between refreshes of the interactive table.
    #[arg(short = 'd', long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    /// Columns of the interactive table, comma-separated, in order: pid, process, proto, local, remote, state, send-rate, recv-rate, sent, recv, age, rtt, retrans, send-q, recv-q, cwnd, delivery, limit [default: pid,process,proto,local,remote,state,rtt,send-rate,recv-rate,sent,recv,age].
    #[arg(long, value_name = "LIST")]
    columns: Option<String>,
    /// Show remote addresses as numbers: no reverse DNS lookups (the table; `d` toggles names otherwise).
    #[arg(long)]
    no_resolve: bool,
    /// Reverse DNS from this server only, not those of /etc/resolv.conf (/etc/hosts is read either way).
    #[arg(long, value_name = "IP:PORT", conflicts_with = "no_resolve")]
    dns_server: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print shell completions for nettop (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), made from these very flags.
    #[command(hide = true)]
    Manpage,
    /// Guess the kernel's struct sock offsets, print each field, and exit.
    Offsets {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stream connect, accept, close, failed-connect and retransmit events until interrupted.
    Trace {
        /// One JSON object per line; the first is {"event":"ready",…}.
        #[arg(long)]
        json: bool,
    },
    /// Print every current connection once (with exact TCP totals) and exit.
    List {
        /// A JSON array.
        #[arg(long)]
        json: bool,
        /// Read the kernel's table twice, this far apart, so that TCP connections also have their health over the interval (retransmits, stalls, send limit). At least 0.2.
        #[arg(long, value_name = "SECONDS")]
        interval: Option<f64>,
    },
    /// Serve Prometheus metrics (/metrics), the connections (/connections), the tracer's state (/status) and /healthz over HTTP until SIGTERM or Ctrl-C.
    Serve {
        /// IP address and port to listen on [default: 127.0.0.1:9633]. Anything but loopback must be asked for here.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// Serve on this unix socket too (mode 0600); without --listen, only on it.
        #[arg(long, value_name = "PATH")]
        unix: Option<PathBuf>,
        /// Labels of the per-process series, comma-separated: process, proto, port (remote port; ephemeral ones folded), container.
        #[arg(long, value_name = "LIST", default_value = "process,proto,port")]
        labels: nettop::export::LabelSpec,
        /// The most label sets kept apart; the rest are summed into one "_overflow" set.
        #[arg(long, value_name = "N", default_value_t = 1000,
              value_parser = clap::value_parser!(u32).range(1..))]
        max_series: u32,
        /// The most agents polling /connections?client_id=ID at once; a new id past it is refused (503).
        #[arg(long, value_name = "N", default_value_t = 64)]
        max_clients: usize,
        /// Closed connections kept for one agent between its polls; past it the oldest go, counted in its next reply.
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        client_buffer: usize,
        /// Seconds after which an agent that has not polled is forgotten.
        #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
        client_timeout: f64,
    },
}

/// Test and debug switches, read from the environment once, here, and
/// carried in the configuration.
struct Switches {
    /// NETTOP_DEBUG_EVENTS: log every raw probe event on stderr.
    debug_events: bool,
    /// NETTOP_TEST_SKEW=FIELD[,FIELD…], NETTOP_GUESS_DUMP=DIR.
    guess: GuessSwitches,
    /// NETTOP_TEST_PANIC: the TUI panics after its first frame.
    test_panic: bool,
    /// NETTOP_TEST_WRITE=PATH: once confined, try to create PATH and
    /// report the outcome with the protections.
    test_write: Option<PathBuf>,
}

impl Switches {
    fn from_env() -> Switches {
        Switches {
            debug_events: std::env::var_os("NETTOP_DEBUG_EVENTS").is_some(),
            guess: GuessSwitches {
                skew: std::env::var("NETTOP_TEST_SKEW").ok(),
                dump_dir: std::env::var_os("NETTOP_GUESS_DUMP").map(PathBuf::from),
            },
            test_panic: std::env::var_os("NETTOP_TEST_PANIC").is_some(),
            test_write: std::env::var_os("NETTOP_TEST_WRITE").map(PathBuf::from),
        }
    }
}

impl Args {
    /// The tracer's configuration for a command without the table, which
    /// resolves no names: a `host:` term could never match there.
    fn headless_config(&self, switches: &Switches) -> anyhow::Result<nettop::Config> {
        let c = self.tracer_config(switches)?;
        if c.filter.reads_names() {
            return Err(usage(
                "host: matches names that only the interactive table resolves; use addr: here"
                    .into(),
            ));
        }
        Ok(c)
    }

    fn tracer_config(&self, switches: &Switches) -> anyhow::Result<nettop::Config> {
        let secs = secs_arg;
        if self.max_connections == 0 {
            return Err(usage("--max-connections must be at least 1".into()));
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            return Err(usage(format!(
                "--ring-bytes must be a power of two of at least 4096, not {}",
                self.ring_bytes
            )));
        }
        Ok(nettop::Config {
            // `--proto tcp` attaches no UDP hook at all, not just a filter.
            tcp: self.proto != Some(Proto::Udp),
            udp: self.proto != Some(Proto::Tcp),
            ipv6: !self.no_ipv6,
            backend: self.backend,
            offsets: self.offsets,
            btf_path: self.btf.clone(),
            max_connections: self.max_connections,
            ring_bytes: self.ring_bytes,
            udp_timeout: secs("udp-timeout", self.udp_timeout)?,
            linger: secs("linger", self.linger)?,
            max_closed: self.max_closed,
            filter: self.filter()?,
            guess: switches.guess.clone(),
            debug_events: switches.debug_events,
            ..nettop::Config::default()
        })
    }
}

fn secs_arg(name: &str, v: f64) -> anyhow::Result<Duration> {
    if v.is_finite() && (0.0..=1e9).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(usage(format!("--{name} wants a number of seconds ≥ 0, not {v}")))
    }
}

/// A flag's value is wrong: exit 2, like clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

impl Args {
    /// `--filter` and the per-field flags, all of which must match.
    fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::parse(self.filter.as_deref().unwrap_or(""))
            .map_err(|e| usage(e.to_string()))?;
        f = [
            self.pid.map(Filter::pid),
            self.port.map(Filter::port),
            self.proto.map(Filter::proto),
            self.comm.as_deref().map(Filter::process),
        ]
        .into_iter()
        .flatten()
        .fold(f, Filter::and);
        Ok(f)
    }
}

/// Large allocations (4 MiB and up) from their own mappings, returned to
/// the system when freed: with glibc's rising default threshold, a freed
/// large block (a hash table's old buckets) stayed in RSS by chance. Not
/// lower, or the TUI's per-second lists would be mapped afresh each time
/// (docs/performance.md has the figures). Smaller frees do not shrink the
/// heaps at once: each second's lists were given back and faulted in again
/// every second; `trim_free_memory` returns free pages every few seconds.
fn return_large_frees() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// The man page, with the plain version (the commit would change it with
/// every commit; `--version` has it). assets/nettop.1 is this, committed.
fn manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Args::command().version(env!("CARGO_PKG_VERSION"))).render(out)
}

/// As many descriptors as the hard limit allows: `serve` holds one per
/// client (a thousand idle ones must not starve a scrape), and the soft
/// limit is often 1024.
fn raise_descriptor_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() -> ExitCode {
    return_large_frees();
    raise_descriptor_limit();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Bad flags: one line, like every other error.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("nettop: {} (see nettop --help)", cli::escape(first));
            return ExitCode::from(2);
        }
    };
    let switches = Switches::from_env();
    let traces = matches!(
        args.command,
        None | Some(
            Command::Offsets { .. }
                | Command::Trace { .. }
                | Command::List { .. }
                | Command::Serve { .. }
        )
    );
    // Forked now, while this is the only thread; it keeps what the running
    // phase still needs once nettop drops everything (nettop::sandbox).
    if traces
        && nettop::sandbox::may_start_helper()
        && let Err(e) = nettop::helper::start()
    {
        eprintln!("nettop: note: no privileged helper: {}", cli::escape(&format!("{e:#}")));
    }
    let allowed = nettop::sandbox::Allowed {
        read: args.btf.iter().cloned().collect(),
        test_write: switches.test_write.clone(),
        ..Default::default()
    };
    let result = match &args.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Args::command(), "nettop", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Manpage) => manpage(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Some(Command::Offsets { json }) => {
            let config = StartConfig {
                backend: args.backend,
                offsets: args.offsets,
                btf_path: args.btf.clone(),
                guess: switches.guess.clone(),
                ..StartConfig::default()
            };
            cli::offsets::run(&config, *json, &allowed)
        }
        Some(Command::Trace { json }) => {
            args.headless_config(&switches).and_then(|c| cli::trace::run(c, *json, &allowed))
        }
        Some(Command::List { json, interval }) => args.headless_config(&switches).and_then(|c| {
            let interval = match interval {
                Some(s) => match secs_arg("interval", *s)? {
                    d if d.as_nanos() < u128::from(nettop::tracer::health::MIN_INTERVAL_NS) => {
                        return Err(usage("list --interval must be at least 0.2 seconds".into()));
                    }
                    d => Some(d),
                },
                None => None,
            };
            cli::list::run(c, cli::list::Options { json: *json, interval }, &allowed)
        }),
        Some(Command::Serve {
            listen,
            unix,
            labels,
            max_series,
            max_clients,
            client_buffer,
            client_timeout,
        }) => args.headless_config(&switches).and_then(|c| {
            let opts = cli::serve::Options {
                listen: *listen,
                unix: unix.clone(),
                labels: labels.clone(),
                max_series: *max_series as usize,
                clients: cli::clients::ClientLimits {
                    max_clients: *max_clients,
                    buffer: *client_buffer,
                    forget_after: match secs_arg("client-timeout", *client_timeout)? {
                        d if d.is_zero() => {
                            return Err(usage("--client-timeout must be more than 0 seconds".into()));
                        }
                        d => d,
                    },
                },
            };
            cli::serve::run(c, opts, &allowed)
        }),
        None => args.tracer_config(&switches).and_then(|c| {
            let interval = secs_arg("interval", args.interval)?;
            if interval.is_zero() {
                return Err(usage("--interval must be more than 0 seconds".into()));
            }
            let columns = match &args.columns {
                Some(list) => nettop::ui::view::Column::parse_list(list).map_err(usage)?,
                None => Vec::new(),
            };
            if !std::io::stdout().is_terminal() {
                return Err(usage(
                    "the interactive table needs a terminal; for pipes and files use `nettop trace` or `nettop list`".into(),
                ));
            }
            // Start (and fail, with a plain one-line error) before the
            // terminal changes.
            let filter = c.filter.clone();
            let mut allowed = allowed.clone();
            allowed.read_write.push("/dev/tty".into());
            let (tracer, protections) =
                cli::start_tracer(nettop::Config { filter: Filter::default(), ..c }, &allowed)?;
            let resolve = match (args.no_resolve, args.dns_server) {
                (true, _) => nettop::ui::Resolve::Off,
                (false, Some(addr)) => nettop::ui::Resolve::Server(addr),
                (false, None) => nettop::ui::Resolve::System,
            };
            let opts = nettop::ui::Options {
                interval,
                filter,
                columns,
                resolve,
                panic_after_draw: switches.test_panic,
                protections: protections.summary(),
            };
            nettop::ui::run(tracer, opts)?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nettop: {}", cli::escape(&format!("{e:#}")));
            let privileges = e.chain().any(|c| c.downcast_ref::<PrivilegeError>().is_some());
            let bad_flag = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some());
            ExitCode::from(if privileges {
                EXIT_PRIVILEGES as u8
            } else if bad_flag {
                2
            } else {
                1
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets").join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// assets/nettop.1 is what the CLI makes now: regenerate it with
    /// `nettop manpage > assets/nettop.1` when a flag changes.
    #[test]
    fn the_committed_man_page_is_the_current_cli() {
        let mut page = Vec::new();
        manpage(&mut page).unwrap();
        assert!(
            String::from_utf8(page).unwrap() == asset("nettop.1"),
            "assets/nettop.1 is stale: nettop manpage > assets/nettop.1"
        );
    }

    /// assets/completions/nettop.SHELL are what `nettop completions SHELL`
    /// makes now, and they offer every subcommand and every long flag.
    #[test]
    fn the_committed_completions_are_the_current_cli() {
        let cmd = Args::command();
        let mut words: Vec<String> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().into())
            .collect();
        let flags = |c: &clap::Command| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                .collect::<Vec<_>>()
        };
        words.extend(flags(&cmd));
        for sub in cmd.get_subcommands() {
            words.extend(flags(sub));
        }
        assert!(words.iter().any(|w| w == "--max-series") && words.iter().any(|w| w == "serve"));
        for shell in
            [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish]
        {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "nettop", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text == asset(&format!("completions/nettop.{shell}")),
                "assets/completions/nettop.{shell} is stale: nettop completions {shell} > assets/completions/nettop.{shell}"
            );
            // fish names long flags without their dashes.
            for w in &words {
                let w =
                    if shell == clap_complete::Shell::Fish { w.trim_start_matches('-') } else { w };
                assert!(text.contains(w), "{shell} completions lack {w}");
            }
        }
    }
}
