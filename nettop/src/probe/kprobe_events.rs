//! Kprobes and kretprobes made through tracefs `kprobe_events` rather than
//! the perf kprobe PMU, for two things the PMU cannot give: a kretprobe
//! `maxactive` high enough that concurrent callers (threads blocked in
//! `recvmsg`) are not missed, and the kernel's per-probe miss count, read
//! from `kprobe_profile`.
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The kernel's ceiling for a kretprobe's `maxactive` (KRETPROBE_MAXACTIVE_MAX).
pub const MAXACTIVE: u32 = 4096;

/// Where in the function a kprobe fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// At its entry (a kprobe).
    Entry,
    /// At its return (a kretprobe).
    Return,
}

pub struct KprobeEvents {
    tracefs: PathBuf,
    group: String,
    /// (event name, perf event fd): closing the fd detaches the program.
    events: Vec<(String, OwnedFd)>,
}

impl KprobeEvents {
    /// The control file, written to make and remove the probes.
    pub fn control(&self) -> PathBuf {
        self.tracefs.join("kprobe_events")
    }

    pub fn new(tracefs: &Path) -> Result<Self> {
        let control = tracefs.join("kprobe_events");
        if !control.exists() {
            bail!(
                "kprobes are not available: {} does not exist (kernel built without CONFIG_KPROBE_EVENTS)",
                control.display()
            );
        }
        let group = format!("nettop_{}", std::process::id());
        remove_stale_groups(tracefs);
        Ok(KprobeEvents { tracefs: tracefs.to_owned(), group, events: Vec::new() })
    }

    /// Create the event for `function` (a kretprobe at `At::Return`) and attach
    /// the loaded kprobe program `prog` to it.
    pub fn attach(&mut self, name: &str, function: &str, at: At, prog: impl AsFd) -> Result<()> {
        let def = match at {
            At::Return => format!("r{MAXACTIVE}:{}/{name} {function}", self.group),
            At::Entry => format!("p:{}/{name} {function}", self.group),
        };
        write_control(&self.tracefs, &def).with_context(|| {
            let kind = if at == At::Return { "kretprobe" } else { "kprobe" };
            format!("cannot create {kind} on {function}")
        })?;
        let id_path = self.tracefs.join("events").join(&self.group).join(name).join("id");
        let id: u64 = fs::read_to_string(&id_path)
            .with_context(|| format!("read {}", id_path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("parse {}", id_path.display()))?;
        let fd = match perf_event_open_tracepoint(id) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = write_control(&self.tracefs, &format!("-:{}/{name}", self.group));
                return Err(e).with_context(|| {
                    format!(
                        "perf_event_open on {function} (kernel.perf_event_paranoid = {})",
                        paranoid()
                    )
                });
            }
        };
        self.events.push((name.to_owned(), fd));
        let fd = &self.events.last().expect("just pushed").1;
        // SAFETY: plain ioctls on a perf event fd we own, with an fd argument.
        unsafe {
            if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_fd().as_raw_fd()) < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("attach program to {function}"));
            }
            if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("enable probe on {function}"));
            }
        }
        Ok(())
    }

    /// Sum of the kernel's miss counts for our probes (kretprobes that found
    /// no free instance, and probes skipped on recursion).
    pub fn missed(&self) -> u64 {
        let Ok(profile) = fs::read_to_string(self.tracefs.join("kprobe_profile")) else {
            return 0;
        };
        let prefix = format!("{}/", self.group);
        profile
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?;
                let _hits = it.next()?;
                let missed: u64 = it.next()?.parse().ok()?;
                name.starts_with(&prefix).then_some(missed)
            })
            .sum()
    }
}

impl Drop for KprobeEvents {
    fn drop(&mut self) {
        let names: Vec<String> = self
            .events
            .drain(..)
            .map(|(n, fd)| {
                drop(fd);
                n
            })
            .collect();
        for name in names {
            let _ = write_control(&self.tracefs, &format!("-:{}/{name}", self.group));
        }
    }
}

fn write_control(tracefs: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(tracefs.join("kprobe_events"))?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// Events left behind by a nettop that was killed before it could clean up.
fn remove_stale_groups(tracefs: &Path) {
    let Ok(list) = fs::read_to_string(tracefs.join("kprobe_events")) else {
        return;
    };
    for line in list.lines() {
        // "r4096:nettop_1234/krp_tcp_v4_connect tcp_v4_connect"
        let Some(event) =
            line.split_whitespace().next().and_then(|d| d.split_once(':')).map(|(_, e)| e)
        else {
            continue;
        };
        let Some(pid) = event.strip_prefix("nettop_").and_then(|r| r.split('/').next()) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = write_control(tracefs, &format!("-:{event}"));
    }
}

fn paranoid() -> String {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// The leading part of `struct perf_event_attr` (PERF_ATTR_SIZE_VER0 is
/// 64 bytes; the kernel accepts that size and zero-extends the rest).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

fn perf_event_open_tracepoint(id: u64) -> std::io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: perf_event_open with a valid attr; pid -1 / cpu 0 as for any
    // BPF-attached tracepoint (the program runs on every CPU).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
