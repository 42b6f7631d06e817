//! Who owns a connection: maps a kernel tgid to process name, command line,
//! user, cgroup and container.
//!
//! Lookups are cached for a couple of seconds so the hot path touches /proc
//! at most once per process per window. When no owner can be found the
//! reason is returned instead of a bare "unknown", because "the process has
//! exited" and "we cannot see that pid namespace" call for different
//! reactions from whoever reads the output.

use rustc_hash::FxHashMap as HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a lookup is trusted: processes exec (and so change name), and
/// pids get reused.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2);

/// Past this many entries, stale ones are dropped on insert, so a caller
/// that never calls `expire` still cannot grow the cache without bound.
pub(crate) const MAX_ENTRIES: usize = 16_384;

/// The initial pid namespace has a fixed inode (PROC_PID_INIT_INO).
const INIT_PID_NS: &str = "pid:[4026531836]";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The thread-group leader's name (/proc/PID/comm), not a thread's.
    pub comm: String,
    /// argv joined with single spaces, unescaped; "" for kernel threads.
    pub cmdline: String,
    /// Effective uid, as `ps` shows it.
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// The cgroup v2 path (the "0::" line), else the first v1 line's path.
    pub cgroup: Option<String>,
    /// Container id shortened to 12 hex chars, if any cgroup path shows one.
    pub container: Option<String>,
}

/// Why a connection has no owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unattributed {
    /// The process is gone (no /proc/PID).
    Exited,
    /// Our /proc shows a pid namespace other than the kernel's root one, so
    /// kernel tgids mean nothing there.
    OtherPidNamespace,
    /// tgid 0: softirq / kernel context, no process.
    Kernel,
    /// The connection predates the tracer and no process holds it any more.
    /// Never produced by `lookup`, which only sees a tgid; the backfill uses it.
    BeforeStart,
    Unknown,
}

impl Unattributed {
    /// The same names serde uses, for printers that don't go through serde.
    pub fn as_str(self) -> &'static str {
        match self {
            Unattributed::Exited => "exited",
            Unattributed::OtherPidNamespace => "other_pid_namespace",
            Unattributed::Kernel => "kernel",
            Unattributed::BeforeStart => "before_start",
            Unattributed::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Unattributed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Entry = (Instant, Result<ProcessInfo, Unattributed>);

pub struct Attributor {
    ttl: Duration,
    root_pidns: bool,
    procs: HashMap<u32, Entry>,
    users: HashMap<u32, Option<String>>,
}

impl Default for Attributor {
    fn default() -> Self {
        Self::new()
    }
}

impl Attributor {
    pub fn new() -> Attributor {
        Self::with_ttl(DEFAULT_TTL)
    }

    /// Like `new`, with entries trusted for `ttl` instead of `DEFAULT_TTL`.
    pub fn with_ttl(ttl: Duration) -> Attributor {
        Attributor {
            ttl,
            root_pidns: proc_shows_initial_pidns(),
            procs: HashMap::default(),
            users: HashMap::default(),
        }
    }

    /// False when our /proc cannot resolve kernel tgids, so every lookup but
    /// tgid 0 fails with `OtherPidNamespace`; worth telling the user once.
    pub fn sees_kernel_pids(&self) -> bool {
        self.root_pidns
    }

    /// Info for tgid, from cache if fresh (then without touching /proc).
    pub fn lookup(&mut self, tgid: u32) -> Result<ProcessInfo, Unattributed> {
        if tgid == 0 {
            return Err(Unattributed::Kernel);
        }
        if !self.root_pidns {
            return Err(Unattributed::OtherPidNamespace);
        }
        if let Some((at, res)) = self.procs.get(&tgid)
            && at.elapsed() < self.ttl
        {
            return res.clone();
        }
        let res = read_process(tgid).map(|mut info| {
            info.user = info.uid.and_then(|uid| self.user_name(uid));
            info
        });
        if self.procs.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            self.procs.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        self.procs.insert(tgid, (Instant::now(), res.clone()));
        res
    }

    /// Forget cached entries older than `max_age` (processes come and go;
    /// pids get reused). `Duration::ZERO` forgets everything.
    pub fn expire(&mut self, max_age: Duration) {
        self.procs.retain(|_, (at, _)| at.elapsed() < max_age);
        // Names of existing uids don't change, but a uid may gain one.
        self.users.retain(|_, name| name.is_some());
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                std::fs::read("/etc/passwd").ok().and_then(|text| passwd_name(&text, uid))
            })
            .clone()
    }
}

/// The name of `uid` in an /etc/passwd text (`name:pw:uid:…` lines), read
/// directly rather than through glibc's NSS, which a static binary must not
/// load: users only a directory service knows show as their uid.
fn passwd_name(text: &[u8], uid: u32) -> Option<String> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let mut f = line.split(|&b| b == b':');
        let (name, _, id) = (f.next()?, f.next()?, f.next()?);
        let id: u32 = std::str::from_utf8(id).ok()?.parse().ok()?;
        (id == uid && !name.is_empty() && !name.starts_with(b"+") && !name.starts_with(b"-"))
            .then(|| String::from_utf8_lossy(name).into_owned())
    })
}

/// Whether pids in our /proc are the kernel's root-namespace tgids.
fn proc_shows_initial_pidns() -> bool {
    // /proc/1 is the init of whatever namespace /proc was mounted for, but
    // reading its ns link takes ptrace rights even root may lack in a sandbox.
    if let Ok(link) = std::fs::read_link("/proc/1/ns/pid") {
        return link.as_os_str() == INIT_PID_NS;
    }
    match std::fs::read_link("/proc/self/ns/pid") {
        // Kernel built without pid namespaces.
        Err(_) => true,
        // /proc/self only resolves if /proc's namespace is ours or an
        // ancestor; if ours is the initial one, so is /proc's.
        Ok(link) if link.as_os_str() == INIT_PID_NS => true,
        // NSpid lists our pid from /proc's namespace down to our own: one
        // number means /proc is our own nested namespace (the usual
        // container); several mean an ancestor's /proc, most likely the host's.
        Ok(_) => nspid_levels().is_none_or(|n| n > 1),
    }
}

fn nspid_levels() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field(&status, "NSpid:").map(|v| v.split_whitespace().count())
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key))
}

fn read(dir: &str, file: &str) -> Result<Vec<u8>, Unattributed> {
    std::fs::read(format!("{dir}/{file}")).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => Unattributed::Exited,
        _ => Unattributed::Unknown,
    })
}

fn read_process(pid: u32) -> Result<ProcessInfo, Unattributed> {
    let dir = format!("/proc/{pid}");
    let status = read(&dir, "status")?;
    let comm = read(&dir, "comm")?;
    let cmdline = read_at_most(&format!("{dir}/cmdline"), MAX_CMDLINE + 1)?;
    let cgroup = read(&dir, "cgroup").ok();
    parse_process(pid, &status, &comm, &cmdline, cgroup.as_deref())
}

/// A process from the texts of its `/proc/PID` files, which the process's
/// owner writes (its name, its command line) or shapes (its cgroup path):
/// any bytes at all. Public for the fuzz target.
pub fn parse_process(
    pid: u32,
    status: &[u8],
    comm: &[u8],
    cmdline: &[u8],
    cgroup: Option<&[u8]>,
) -> Result<ProcessInfo, Unattributed> {
    let status = String::from_utf8_lossy(status);
    // /proc/PID also resolves thread ids: if the tgid has been recycled as
    // another process's thread, the process we were asked about is gone.
    let tgid = status_field(&status, "Tgid:").and_then(|v| v.trim().parse::<u32>().ok());
    if tgid.is_some_and(|t| t != pid) {
        return Err(Unattributed::Exited);
    }
    let uid = status_field(&status, "Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok());
    let comm = String::from_utf8_lossy(comm);
    let (cgroup, container) = match cgroup {
        Some(text) => parse_cgroup(&String::from_utf8_lossy(text)),
        None => (None, None),
    };
    Ok(ProcessInfo {
        pid,
        comm: comm.strip_suffix('\n').unwrap_or(&comm).to_owned(),
        cmdline: join_cmdline(cmdline),
        uid,
        user: None,
        cgroup,
        container,
    })
}

/// The most of a command line kept: a process chooses its own, up to
/// megabytes, and a flood of them must not grow nettop without bound.
pub const MAX_CMDLINE: usize = 4096;

fn read_at_most(path: &str, limit: usize) -> Result<Vec<u8>, Unattributed> {
    use std::io::Read;
    let mut out = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(limit as u64).read_to_end(&mut out));
    read.map(|_| out).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => Unattributed::Exited,
        _ => Unattributed::Unknown,
    })
}

fn join_cmdline(raw: &[u8]) -> String {
    let cut = raw.len() > MAX_CMDLINE;
    let raw = &raw[..raw.len().min(MAX_CMDLINE)];
    // All trailing NULs go, not just the terminator: setproctitle-style
    // renames pad the old argv area with them.
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut s = String::from_utf8_lossy(&raw[..end]).replace('\0', " ");
    if cut {
        s.push('…');
    }
    s
}

/// (cgroup path, container id) from the text of /proc/PID/cgroup.
fn parse_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let lines: Vec<(&str, &str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            Some((it.next()?, it.next()?, it.next()?))
        })
        .collect();
    let chosen = lines
        .iter()
        .find(|(h, ctrl, _)| *h == "0" && ctrl.is_empty())
        .or(lines.first())
        .map(|l| l.2);
    // On hybrid hosts the v2 path is often "/" while a v1 line names the container.
    let container = chosen.into_iter().chain(lines.iter().map(|l| l.2)).find_map(container_id);
    (chosen.map(str::to_owned), container)
}

/// Container id from a cgroup path: docker (`/docker/<id>`,
/// `docker-<id>.scope`), containerd/CRI (`cri-containerd-<id>.scope`),
/// podman (`libpod-<id>.scope`, but not `libpod-conmon-<id>.scope`), CRI-O
/// (`crio-<id>.scope`) and Kubernetes (`/kubepods/…/pod<uid>/<id>`, or the
/// systemd-driver slices ending in one of the scopes above).
/// Returns the first 12 hex chars of the 64-hex id.
pub fn container_id(cgroup_path: &str) -> Option<String> {
    let path = cgroup_path.strip_suffix(" (deleted)").unwrap_or(cgroup_path);
    // Innermost first: with nesting (docker in docker, podman's
    // `libpod-<id>.scope/container`) the last id is the process's own.
    path.rsplit('/').find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = ["docker-", "cri-containerd-", "libpod-", "crio-"]
            .iter()
            .find_map(|prefix| part.strip_prefix(prefix))
            .unwrap_or(part);
        let is_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        is_id.then(|| id[..12].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    /// The hand-written reader gives what glibc's getpwuid_r (through
    /// uzers) gives, for every uid this host's /etc/passwd lists, and for
    /// one it does not.
    #[test]
    fn passwd_names_equal_the_system_lookup() {
        let text = std::fs::read("/etc/passwd").unwrap();
        let uids: Vec<u32> = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect();
        assert!(uids.contains(&0), "root is listed");
        for uid in uids.iter().copied().chain([4_000_000_123]) {
            let system =
                uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned());
            assert_eq!(passwd_name(&text, uid), system, "uid {uid}");
        }
    }

    #[test]
    fn passwd_lines_that_are_not_users_are_skipped() {
        let text = b"# comment\n+::::::\nbad line\n:x:5:5::/:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\nbob:x:1000:1:dup";
        assert_eq!(passwd_name(text, 1000).as_deref(), Some("alice"), "the first wins");
        assert_eq!(passwd_name(text, 5), None, "no name");
        assert_eq!(passwd_name(text, 0), None);
        assert_eq!(passwd_name(b"x:y:\xff", 0), None);
    }

    const ID: &str = "3f2a9c0d1e7b4a5f8c6d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";

    fn leader_comm() -> String {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        comm.trim_end_matches('\n').to_owned()
    }

    fn wait_for_comm(pid: u32, want: &str) {
        for _ in 0..1000 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end_matches('\n') == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("pid {pid} never became {want}");
    }

    #[test]
    fn container_ids() {
        let short = Some(ID[..12].to_owned());
        let yes = [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/system.slice/cri-containerd-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            ),
            format!("/machine.slice/crio-{ID}.scope"),
            format!("/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a.slice/crio-{ID}.scope (deleted)"
            ),
        ];
        for path in &yes {
            assert_eq!(container_id(path), short, "{path}");
        }
        let no = [
            "/".to_owned(),
            "".to_owned(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-6c0b9f4e-2d31-4a8b-9e57-1f0c3a2b4d5e.scope".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/machine.slice/crio-conmon-{ID}.scope"),
            format!("/docker/{}", &ID[..63]),
        ];
        for path in &no {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    #[test]
    fn cgroup_and_cmdline_parsing() {
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(parse_cgroup(&v2).1, Some(ID[..12].to_owned()));
        let hybrid = format!("2:pids:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        let (path, container) = parse_cgroup(&hybrid);
        assert_eq!(path.as_deref(), Some("/"));
        assert_eq!(container, Some(ID[..12].to_owned()));
        let v1 = "4:memory:/a\n3:cpu:/b\n";
        assert_eq!(parse_cgroup(v1), (Some("/a".to_owned()), None));
        assert_eq!(parse_cgroup("garbage\n"), (None, None));
        assert_eq!(join_cmdline(b"ls\0-l\0\xff\0"), "ls -l \u{fffd}");
        assert_eq!(join_cmdline(b"nginx: worker\0\0\0"), "nginx: worker");
        assert_eq!(join_cmdline(b""), "");
        // A command line past the bound is cut, and says so.
        let long = join_cmdline(&vec![b'a'; MAX_CMDLINE + 1]);
        assert_eq!((long.chars().count(), long.ends_with('…')), (MAX_CMDLINE + 1, true));
        assert_eq!(join_cmdline(&vec![b'a'; MAX_CMDLINE]).len(), MAX_CMDLINE);
    }

    #[test]
    fn lookup_self() {
        let info = Attributor::new().lookup(std::process::id()).unwrap();
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.comm, leader_comm());
        assert!(!info.cmdline.is_empty());
        assert_eq!(info.uid, Some(0));
        assert_eq!(info.user.as_deref(), Some("root"));
        assert!(info.cgroup.is_some());
    }

    #[test]
    fn lookup_exited_child() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(Attributor::new().lookup(pid), Err(Unattributed::Exited));
    }

    #[test]
    fn lookup_kernel() {
        assert_eq!(Attributor::new().lookup(0), Err(Unattributed::Kernel));
    }

    #[test]
    fn cached_until_expired() {
        // The kernel lets only a thread group write its own /proc/PID/comm,
        // even for root, so the child renames itself the usual way: exec.
        let mut child = Command::new("sh")
            .args(["-c", "read _ && exec sleep 5"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // spawn() may return a moment before the new image's name is set.
        wait_for_comm(pid, "sh");
        let mut attr = Attributor::new();
        let first = attr.lookup(pid).map(|i| i.comm);
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        wait_for_comm(pid, "sleep");
        let cached = attr.lookup(pid).map(|i| i.comm);
        attr.expire(Duration::ZERO);
        let fresh = attr.lookup(pid).map(|i| i.comm);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(first.as_deref(), Ok("sh"));
        assert_eq!(cached.as_deref(), Ok("sh"));
        assert_eq!(fresh.as_deref(), Ok("sleep"));
    }

    #[test]
    fn leader_name_not_thread_name() {
        let (named_tx, named_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string that outlives the call.
            let rc = unsafe { libc::prctl(libc::PR_SET_NAME, c"worker-xyz".as_ptr()) };
            named_tx.send(rc).unwrap();
            let _ = done_rx.recv();
        });
        assert_eq!(named_rx.recv().unwrap(), 0);
        let info = Attributor::new().lookup(std::process::id());
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        let comm = info.unwrap().comm;
        assert_ne!(comm, "worker-xyz");
        assert_eq!(comm, leader_comm());
    }
}
