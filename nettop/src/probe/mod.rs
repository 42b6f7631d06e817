//! Everything that touches BPF: loading the embedded object, choosing and
//! attaching a backend, guessing offsets and checking them against BTF.
//! Only this module knows which backend is attached.
pub mod backend;
pub mod btf;
pub mod fn_args;
pub mod guess;
pub mod kprobe_events;
pub mod map_flags;
pub mod privileges;
pub mod prog_info;
pub mod tracefs;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::path::PathBuf;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::{Ebpf, EbpfLoader};
use nettop_shared::{COUNTER_MAX, ConnKey, ConnStats, GuessStatus, Offsets, SockKey, SockState};

use backend::FentryPlan;
pub use backend::{Backend, BackendChoice};
use btf::BtfOffsets;
use guess::{Field, GuessSwitches};
use kprobe_events::KprobeEvents;

/// The probe object, built by probes/build.sh and committed.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../assets/nettop.bpf.o");

/// The `args` map's size as nettop.bpf.c declares it (a test checks).
const ARGS_ENTRIES: u32 = 16384;

/// Where the offsets come from (`--offsets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetsMode {
    /// Guess, and cross-check against BTF where the kernel has it.
    Auto,
    /// Guess only; never read BTF.
    Guess,
    /// Read BTF only.
    Btf,
}

#[derive(Clone, Debug)]
pub struct StartConfig {
    pub backend: BackendChoice,
    pub offsets: OffsetsMode,
    /// Read BTF from this file instead of /sys/kernel/btf/vmlinux.
    pub btf_path: Option<PathBuf>,
    /// Capacity of the kernel's connection and socket tables.
    pub max_connections: u32,
    /// Size of the event ring buffer in bytes (a power of two, ≥ 4096).
    pub ring_bytes: u32,
    /// Test and debug switches for guessing.
    pub guess: GuessSwitches,
    /// Attach the UDP send and receive hooks.
    pub udp: backend::UdpHooks,
}

impl Default for StartConfig {
    fn default() -> Self {
        StartConfig {
            backend: BackendChoice::Auto,
            offsets: OffsetsMode::Auto,
            btf_path: None,
            max_connections: 65536,
            ring_bytes: 4 << 20,
            udp: backend::UdpHooks::Attach,
            guess: GuessSwitches::default(),
        }
    }
}

/// A backend that was tried and why it was not used.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attempt {
    pub backend: Backend,
    pub error: String,
}

/// Loaded and attached probe. Dropping it detaches every program.
pub struct Probe {
    // Field order is drop order: perf events go before the programs.
    kprobes: Option<KprobeEvents>,
    ebpf: Ebpf,
    backend: Backend,
    pub attempts: Vec<Attempt>,
    /// Hooks of the chosen backend that could not attach, with the reason
    /// (IPv6 functions on kernels without IPv6).
    pub missing_hooks: Vec<String>,
    pub guess: Option<guess::GuessRun>,
    pub ipv6: Result<(), String>,
    offsets: Offsets,
    btf_job: Option<JoinHandle<Result<BtfOffsets>>>,
    verification: Option<Verification>,
    btf_path: PathBuf,
    mode: OffsetsMode,
    /// The connection and socket maps are preallocated for
    /// --max-connections (else their entries are allocated as they come).
    pub maps_preallocated: bool,
}

/// The outcome of the BTF cross-check.
#[derive(Clone, Debug)]
pub enum Verification {
    /// Guessing was not cross-checked (`--offsets guess`).
    NotRequested,
    /// BTF could not be read: why.
    Unavailable(String),
    Checked(BtfOffsets),
}

impl Probe {
    /// Attach a backend (in order kprobe, fentry, tracepoint for `auto`,
    /// falling through on any failure) and resolve the offsets it reads.
    pub fn start(config: &StartConfig) -> Result<Probe> {
        privileges::check()?;
        let tracefs = tracefs::root()?;
        let btf_path = config.btf_path.clone().unwrap_or_else(|| btf::VMLINUX.into());
        // The cross-check reads BTF in the background while guessing runs.
        let mut btf_job = (config.offsets != OffsetsMode::Guess).then(|| {
            let path = btf_path.clone();
            std::thread::spawn(move || btf::read_offsets(&path))
        });
        let ipv6 = guess::driver::ipv6_status();
        let grow = map_flags::can_grow(parse_release(&kernel_release()));
        let object = probe_object(grow)?;
        // Read from the kernel's BTF only if the fentry backend is tried;
        // declared before the loader, which borrows the indices it sets.
        let fentry_plan = OnceCell::new();
        // One loader for every backend tried: making one parses the
        // kernel's whole BTF (tens of milliseconds), which the object does
        // not even need (no CO-RE relocations: that is what guessing is for).
        let mut loader = EbpfLoader::new();
        loader
            .btf(None)
            .map_max_entries("conns", config.max_connections)
            .map_max_entries("socks", config.max_connections)
            .map_max_entries("events", config.ring_bytes);
        let mut attempts = Vec::new();
        for backend in config.backend.order() {
            let started = match start_backend(
                backend,
                &mut loader,
                &object,
                &fentry_plan,
                &tracefs,
                config,
                ipv6.is_ok(),
            ) {
                Ok(started) => started,
                Err(e) => {
                    attempts.push(Attempt { backend, error: format!("{e:#}") });
                    continue;
                }
            };
            let mut probe = Probe {
                kprobes: started.kprobes,
                ebpf: started.ebpf,
                backend,
                attempts,
                missing_hooks: started.missing_hooks,
                guess: started.guess,
                ipv6,
                offsets: started.offsets,
                btf_job: btf_job.take(),
                verification: None,
                btf_path,
                mode: config.offsets,
                maps_preallocated: !grow,
            };
            if config.offsets == OffsetsMode::Btf {
                match probe.verify() {
                    Verification::Checked(_) => {}
                    Verification::Unavailable(why) => return Err(anyhow!("--offsets btf: {why}")),
                    Verification::NotRequested => unreachable!("btf mode always reads BTF"),
                }
            }
            return Ok(probe);
        }
        let tried: Vec<String> =
            attempts.iter().map(|a| format!("{}: {}", a.backend, a.error)).collect();
        Err(anyhow!("no backend could start ({})", tried.join("; ")))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn offsets(&self) -> Offsets {
        self.offsets
    }

    /// Wait for the BTF cross-check. With `--offsets auto`, a field on which
    /// BTF disagrees with the guess is switched to BTF's value (the caller
    /// warns with the field's name); with `--offsets btf`, BTF is all there is.
    pub fn verify(&mut self) -> Verification {
        if let Some(done) = &self.verification {
            return done.clone();
        }
        let v = self.verify_once();
        self.verification = Some(v.clone());
        v
    }

    fn verify_once(&mut self) -> Verification {
        let Some(job) = self.btf_job.take() else {
            return Verification::NotRequested;
        };
        let btf = match job.join() {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Verification::Unavailable(format!(
                    "could not verify offsets against BTF: {e:#}"
                ));
            }
            Err(_) => return Verification::Unavailable("the BTF reader panicked".into()),
        };
        let guessed = self.guess.as_ref().map(|g| g.offsets);
        let mut fixed = self.offsets;
        // With a guess, only the fields BTF contradicts change (unguessed
        // ones, IPv6 when it is off, stay unused); without, BTF is all.
        let fields = match guessed {
            Some(g) => btf.disagreements(&g),
            None => Field::ALL.to_vec(),
        };
        for field in fields {
            if let Some(off) = btf.get(field) {
                *(field.def().slot)(&mut fixed) = off;
            }
        }
        if self.mode == OffsetsMode::Btf {
            fixed.ipv6 = u32::from(btf.get(Field::SaddrV6).is_some() && self.ipv6.is_ok());
        }
        if fixed != self.offsets {
            self.offsets = fixed;
            if let Err(e) = self.write_offsets() {
                return Verification::Unavailable(format!("could not apply BTF offsets: {e:#}"));
            }
        }
        Verification::Checked(btf)
    }

    pub fn btf_path(&self) -> &std::path::Path {
        &self.btf_path
    }

    fn write_offsets(&mut self) -> Result<()> {
        self.offsets = write_offsets(&mut self.ebpf, self.offsets)?;
        Ok(())
    }

    /// The kernel's count of missed kprobe/kretprobe hits (kprobe backend).
    pub fn kprobe_missed(&self) -> Option<u64> {
        self.kprobes.as_ref().map(KprobeEvents::missed)
    }

    /// Runs of our programs the kernel skipped (`recursion_misses`, summed);
    /// None where the kernel does not count them (before 5.12).
    pub fn prog_missed(&self) -> Option<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let mut total = None;
        for (_, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            if let Some(n) = prog_info::recursion_misses(fd.as_fd().as_raw_fd()) {
                *total.get_or_insert(0) += n;
            }
        }
        total
    }

    /// Each of our programs the kernel has loaded, by name, and how many
    /// times it ran. The kernel counts only while its run-time statistics
    /// are on (`kernel.bpf_stats_enabled`, or `aya::sys::enable_stats`).
    pub fn program_runs(&self) -> Vec<(String, u64)> {
        self.ebpf
            .programs()
            .filter_map(|(name, prog)| Some((name.to_owned(), prog.info().ok()?.run_count())))
            .collect()
    }

    /// Each UDP flow's counters (TCP connections' are the kernel's own,
    /// read through sock_diag).
    pub fn for_each_udp_flow(&self, mut each: impl FnMut(&ConnKey, &ConnStats)) -> Result<()> {
        self.read_each("conns", |k: &ConnKey, v: &ConnStats| each(k, v))
    }

    /// Each entry of a hash map, key by key. Not in batches
    /// (`BPF_MAP_LOOKUP_BATCH`): the kernel walks a run of empty hash
    /// buckets with the CPU's `bpf_prog_active` mark held, and on PREEMPT_RT
    /// a task preempted there makes the kernel skip nettop's programs on
    /// that CPU (the matrix lost counts on 5.10-rt and 6.12-rt with batches).
    fn read_each<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &str,
        mut each: impl FnMut(&K, &V),
    ) -> Result<()> {
        let map = self.ebpf.map(name).with_context(|| format!("map {name}"))?;
        let map: HashMap<&MapData, K, V> = HashMap::try_from(map)?;
        for r in map.iter() {
            let (k, v) = r?;
            each(&k, &v);
        }
        Ok(())
    }

    /// A UDP flow's counters.
    pub fn conn(&self, key: &ConnKey) -> Option<ConnStats> {
        let map: HashMap<&MapData, ConnKey, ConnStats> =
            HashMap::try_from(self.ebpf.map("conns")?).ok()?;
        map.get(key, 0).ok()
    }

    /// Remove a connection userspace has ended (UDP expiry, socket closed).
    pub fn remove_conn(&mut self, key: &ConnKey) {
        if let Some(m) = self.ebpf.map_mut("conns")
            && let Ok(mut map) = HashMap::<&mut MapData, ConnKey, ConnStats>::try_from(m)
        {
            let _ = map.remove(key);
        }
    }

    /// Forget a socket (a UDP socket idle past its timeout).
    pub fn remove_sock(&mut self, sk: u64) {
        if let Some(m) = self.ebpf.map_mut("socks")
            && let Ok(mut map) = HashMap::<&mut MapData, SockKey, SockState>::try_from(m)
        {
            let _ = map.remove(&SockKey { sk });
        }
    }

    /// The event ring buffer, for the tracer's reader (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("events").context("event ring buffer already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// tracefs `kprobe_events`, where the kprobes were made, if they were.
    pub fn kprobe_events(&self) -> Option<std::path::PathBuf> {
        self.kprobes.as_ref().map(KprobeEvents::control)
    }

    /// The probe's counters, summed over CPUs, indexed by `nettop_shared::Counter`.
    pub fn counters(&self) -> Result<[u64; COUNTER_MAX as usize]> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("counters").context("map counters")?)?;
        let mut out = [0u64; COUNTER_MAX as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = map.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

/// A backend loaded and attached, and its offsets guessed unless BTF is
/// all there is (`--offsets btf`). Field order is drop order.
struct Started {
    kprobes: Option<KprobeEvents>,
    ebpf: Ebpf,
    missing_hooks: Vec<String>,
    guess: Option<guess::GuessRun>,
    offsets: Offsets,
}

/// One backend's attempt: load the object with its settings, attach its
/// hooks, guess the offsets through them.
fn start_backend<'a>(
    backend: Backend,
    loader: &mut EbpfLoader<'a>,
    object: &[u8],
    fentry_plan: &'a OnceCell<Result<FentryPlan, String>>,
    tracefs: &std::path::Path,
    config: &StartConfig,
    ipv6: bool,
) -> Result<Started> {
    // Only kprobes pass arguments to their return probes through the `args`
    // map: elsewhere its preallocated 1.7 MB would sit unused.
    loader.map_max_entries("args", if backend == Backend::Kprobe { ARGS_ENTRIES } else { 1 });
    let plan = if backend == Backend::Fentry {
        let plan = fentry_plan
            .get_or_init(|| FentryPlan::from_kernel().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?;
        for (hook, args) in backend::FENTRIES.iter().zip(&plan.0) {
            if let Ok(args) = args {
                loader.override_global(hook.global, args, true);
            }
        }
        Some(plan)
    } else {
        None
    };
    // Settings are `const volatile` globals: the verifier sees their
    // values, and no program looks them up per event.
    static OFF: u32 = 0;
    static ON: u32 = 1;
    static FLAGS_ARG_4: u32 = 4;
    static FLAGS_ARG_5: u32 = 5;
    loader.override_global(
        "tp_connect",
        if backend == Backend::Tracepoint { &ON } else { &OFF },
        true,
    );
    loader.override_global(
        "recv_flags_arg",
        if kernel_at_least(5, 19) { &FLAGS_ARG_4 } else { &FLAGS_ARG_5 },
        true,
    );
    let mut ebpf = loader.load(object).context("load the probe object")?;
    let attached = backend::attach(backend, &mut ebpf, tracefs, plan, config.udp)?;
    let (guess, offsets) = if config.offsets == OffsetsMode::Btf {
        (None, Offsets::default())
    } else {
        let mut status: Array<_, GuessStatus> =
            Array::try_from(ebpf.map_mut("guess_status").context("map guess_status")?)?;
        let run = guess::driver::run(&mut status, ipv6, config.udp, &config.guess)
            .with_context(|| format!("guessing offsets on the {backend} backend"))?;
        let offsets = write_offsets(&mut ebpf, run.offsets.to_offsets())?;
        (Some(run), offsets)
    };
    Ok(Started { kprobes: attached.kprobes, ebpf, missing_hooks: attached.missing, guess, offsets })
}

/// The embedded object, its growing maps marked so where the kernel allows.
fn probe_object(grow: bool) -> Result<Cow<'static, [u8]>> {
    if !grow {
        return Ok(Cow::Borrowed(OBJECT));
    }
    let flags = map_flags::BPF_F_NO_PREALLOC;
    let object = map_flags::with_map_flags(OBJECT, &map_flags::GROWING_MAPS, flags)
        .context("fit the probe object's map flags")?;
    Ok(Cow::Owned(object))
}

/// Arm the probe with `offsets`; returns them as written (ready).
fn write_offsets(ebpf: &mut Ebpf, mut offsets: Offsets) -> Result<Offsets> {
    let mut map: Array<_, Offsets> =
        Array::try_from(ebpf.map_mut("offsets").context("map offsets")?)?;
    offsets.ready = 1;
    map.set(0, offsets, 0).context("write the offsets map")?;
    Ok(offsets)
}

/// `uname -r`, or "unknown" where /proc cannot tell.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    parse_release(&kernel_release()) >= (major, minor)
}

fn parse_release(release: &str) -> (u32, u32) {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn args_entries_is_what_the_object_declares() {
        let obj = aya_obj::Object::parse(super::OBJECT).unwrap();
        assert_eq!(obj.maps["args"].max_entries(), super::ARGS_ENTRIES);
    }

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(super::parse_release("6.18.44-fc-v782\n"), (6, 18));
        assert_eq!(super::parse_release("5.10.0-32-amd64"), (5, 10));
        assert_eq!(super::parse_release("6.12.117+deb12-amd64"), (6, 12));
        assert_eq!(super::parse_release("unknown"), (0, 0));
        assert!(
            super::parse_release("5.19.0") >= (5, 19) && super::parse_release("5.4.0") < (5, 19)
        );
    }
}
