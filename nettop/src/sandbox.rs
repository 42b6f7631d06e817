//! Least privilege once nettop runs. Start-up (load, attach, guess the
//! offsets, read the connections older than nettop) needs root's powers;
//! what follows reads data any local user writes (process names, command
//! lines, addresses) and, for `serve`, answers the network. So, once
//! start-up is done and while only one thread exists (capabilities and
//! Landlock rules are per thread, and threads made later inherit them):
//!
//! - every capability goes from every set, the bounding set included, but
//!   CAP_BPF where this kernel still wants it for map reads (measured: a
//!   map is read with it lowered);
//! - `no_new_privs`: no exec can give any back;
//! - Landlock, where the kernel has it: files may be read only under
//!   `/proc`, `/sys` and `/etc` (and what the run names), written only
//!   where the run must (the terminal, tracefs `kprobe_events` for the
//!   kprobes' removal at exit, the `--unix` socket's directory).
//!
//! What still needs privilege at run time (entering a network namespace,
//! another user's `/proc/PID/fd`) is asked of the helper (`helper.rs`).
//! docs/security.md has the threat model and the sets per kernel.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};
use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, set_capabilities};

/// What the running phase may still touch on the filesystem.
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    /// Read, beside `/proc`, `/sys` and `/etc`: `--btf FILE`.
    pub read: Vec<PathBuf>,
    /// Read and written (files): the terminal, tracefs `kprobe_events`.
    pub read_write: Vec<PathBuf>,
    /// Where a unix socket was made and is removed at exit.
    pub socket_dirs: Vec<PathBuf>,
    /// Test switch (NETTOP_TEST_WRITE, read at start): after confining,
    /// try to create this file and say what happened.
    pub test_write: Option<PathBuf>,
}

/// The protections in force, for `/status`, `offsets --json`, the ready
/// line and the TUI's help.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Protections {
    /// The capabilities nettop's threads keep (every set), by name.
    pub capabilities: Vec<&'static str>,
    pub no_new_privs: bool,
    /// "enforced (ABI N)", or "unavailable: why".
    pub landlock: String,
    /// The privileged helper, if one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper: Option<HelperInfo>,
    /// What could not be done, a line each (also said on stderr).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The outcome of the test write (NETTOP_TEST_WRITE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_write: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct HelperInfo {
    pub pid: u32,
    pub capabilities: Vec<&'static str>,
}

impl Protections {
    /// One line for the TUI's help: "capabilities none · no_new_privs ·
    /// Landlock enforced (ABI 6) · helper 1234".
    pub fn summary(&self) -> String {
        let caps = if self.capabilities.is_empty() {
            "none".to_owned()
        } else {
            self.capabilities.join(",")
        };
        let mut s = format!("capabilities {caps}");
        if self.no_new_privs {
            s.push_str(" · no_new_privs");
        }
        s.push_str(&format!(" · Landlock {}", self.landlock));
        if let Some(h) = &self.helper {
            s.push_str(&format!(" · helper {}", h.pid));
        }
        s
    }
}

const CAP_SETPCAP: u32 = 8;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The capability names, by number.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities in `set` (a bit per capability).
pub fn names(set: u64) -> Vec<&'static str> {
    (0..64)
        .filter(|c| set & (1 << c) != 0)
        .map(|c| NAMES.get(c).copied().unwrap_or("CAP_?"))
        .collect()
}

/// Whether this process can start the helper: it has CAP_SYS_ADMIN (root).
pub fn may_start_helper() -> bool {
    capabilities(None).is_ok_and(|c| c.effective.bits() & (1 << CAP_SYS_ADMIN) != 0)
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The names of this process's threads.
fn threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    tasks
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned()
        })
        .collect()
}

/// Keep only `keep` in every capability set of this thread, the bounding
/// set and the ambient one included (that one needs CAP_SETPCAP: false if
/// it was kept for want of it).
fn keep_only(keep: u64) -> Result<bool> {
    let now = capabilities(None).context("read the capabilities")?;
    let bounding = now.effective.bits() & (1 << CAP_SETPCAP) != 0;
    if bounding {
        for c in (0..=last_cap()).filter(|c| keep & (1 << c) == 0) {
            // SAFETY: prctl with plain integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) } != 0 {
                bail!(
                    "drop {} from the bounding set: {}",
                    names(1 << c)[0],
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let keep = CapabilitySet::from_bits_retain(keep) & now.permitted;
    set_capabilities(
        None,
        CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() },
    )
    .context("set the capabilities")?;
    Ok(bounding)
}

fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("set no_new_privs: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether map reads work without CAP_BPF (and CAP_SYS_ADMIN, which
/// stands in for it): tried with both lowered from the effective set.
fn maps_need_cap_bpf(read_maps: &mut dyn FnMut() -> bool) -> bool {
    let Ok(now) = capabilities(None) else { return true };
    let lowered = CapabilitySet::from_bits_retain(
        now.effective.bits() & !(1 << CAP_BPF | 1 << CAP_SYS_ADMIN),
    );
    if set_capabilities(None, CapabilitySets { effective: lowered, ..now }).is_err() {
        return true;
    }
    let ok = read_maps();
    let _ = set_capabilities(None, now);
    !ok
}

/// The kernel's Landlock ABI version; None where it has none, or has it
/// but not among the active LSMs.
pub fn landlock_abi() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only reports.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v)
}

fn landlock_missing() -> String {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !lsms.is_empty() && !lsms.split(',').any(|l| l.trim() == "landlock") {
        format!("unavailable: landlock is not among the active LSMs ({})", lsms.trim())
    } else {
        "unavailable: this kernel has no Landlock (5.13 and later, CONFIG_SECURITY_LANDLOCK)".into()
    }
}

/// The files nettop reads under `/etc`, and where their links lead
/// (`/etc/resolv.conf` is often systemd-resolved's, under `/run`).
fn etc_link_targets() -> Vec<PathBuf> {
    ["/etc/resolv.conf", "/etc/hosts", "/etc/services", "/etc/passwd"]
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|p| !p.starts_with("/etc"))
        .collect()
}

fn apply_landlock(read: &[PathBuf], allowed: &Allowed) -> Result<String> {
    let Some(abi) = landlock_abi() else { return Ok(landlock_missing()) };
    // The newest ABI this crate knows; an older kernel enforces its part.
    let all = ABI::V5;
    let mut read_paths: Vec<&Path> = read.iter().map(PathBuf::as_path).collect();
    read_paths.extend(allowed.read.iter().map(PathBuf::as_path));
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(all))?
        .create()?
        // Read, never run: from_read would allow executing as well.
        .add_rules(path_beneath_rules(&read_paths, AccessFs::ReadFile | AccessFs::ReadDir))?
        .add_rules(path_beneath_rules(&allowed.read_write, AccessFs::from_file(all)))?
        .add_rules(path_beneath_rules(
            &allowed.socket_dirs,
            AccessFs::MakeSock | AccessFs::RemoveFile | AccessFs::ReadDir,
        ))?
        .restrict_self()
        .context("restrict the filesystem (Landlock)")?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => {
            format!("enforced (ABI {abi})")
        }
        RulesetStatus::NotEnforced => landlock_missing(),
    })
}

/// Drop what the running phase does not need. Call it once start-up is
/// done, from the only thread. `read_maps` reads one of the probe's maps.
pub fn confine(allowed: &Allowed, read_maps: &mut dyn FnMut() -> bool) -> Protections {
    let mut p = Protections::default();
    // A thread just joined can linger in /proc for a moment.
    let mut threads = threads();
    for _ in 0..100 {
        if threads.len() <= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        threads = self::threads();
    }
    if threads.len() > 1 {
        p.notes.push(format!(
            "not confined: threads {} were running (a bug: please report it)",
            crate::text::escape(&threads.join(", "))
        ));
        p.capabilities = capabilities(None).map(|c| names(c.effective.bits())).unwrap_or_default();
        p.landlock = "not applied".into();
        return p;
    }
    let keep = if maps_need_cap_bpf(read_maps) { 1u64 << CAP_BPF } else { 0 };
    match keep_only(keep) {
        Ok(true) => {}
        Ok(false) => p.notes.push(
            "the bounding set is kept: dropping from it needs CAP_SETPCAP (no_new_privs still stops any regain)"
                .into(),
        ),
        Err(e) => p.notes.push(format!("capabilities kept: {e:#}")),
    }
    p.capabilities = capabilities(None).map(|c| names(c.permitted.bits())).unwrap_or_default();
    match no_new_privs() {
        Ok(()) => p.no_new_privs = true,
        Err(e) => p.notes.push(format!("{e:#}")),
    }
    let mut read: Vec<PathBuf> = ["/proc", "/sys", "/etc"].iter().map(PathBuf::from).collect();
    read.extend(etc_link_targets());
    p.landlock = match apply_landlock(&read, allowed) {
        Ok(s) => s,
        Err(e) => format!("unavailable: {e:#}"),
    };
    if let Some(path) = &allowed.test_write {
        p.test_write = Some(match std::fs::File::create(path) {
            Ok(_) => "written".into(),
            Err(e) => format!("refused: {e}"),
        });
    }
    match crate::helper::get() {
        Some(h) => {
            // It confines itself as it starts: a moment, at most.
            let mut caps = crate::probe::privileges::effective_caps(&h.pid.to_string());
            for _ in 0..100 {
                if caps.is_some_and(|c| c == helper_caps()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                caps = crate::probe::privileges::effective_caps(&h.pid.to_string());
            }
            p.helper = Some(HelperInfo { pid: h.pid, capabilities: names(caps.unwrap_or(u64::MAX)) })
        }
        None => p.notes.push(
            "no privileged helper (it needs CAP_SYS_ADMIN at start): network namespaces seen later, and other users' sockets' owners, go unread"
                .into(),
        ),
    }
    p
}

fn helper_caps() -> u64 {
    crate::helper::KEPT.iter().fold(0, |set, c| set | 1 << c)
}

/// The helper's own confinement, at its start: its three capabilities and
/// no_new_privs. Not Landlock: a Landlock domain may not ptrace, even to
/// read, a process outside it, and reading another process's
/// `/proc/PID/fd` and `/proc/PID/ns` is exactly such a read.
pub fn confine_helper() -> Result<()> {
    keep_only(helper_caps())?;
    no_new_privs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_by_number() {
        assert_eq!(names(1 << CAP_BPF | 1 << CAP_SYS_ADMIN), ["CAP_SYS_ADMIN", "CAP_BPF"]);
        assert_eq!(
            names(helper_caps()),
            ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]
        );
        assert!(names(0).is_empty());
    }
}
