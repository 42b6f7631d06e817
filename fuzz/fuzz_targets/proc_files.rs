//! The `/proc/PID` parsers on arbitrary files: a process's owner writes its
//! name and command line, and shapes its cgroup path, so each may hold any
//! bytes. A process or "exited", never a panic; and what is shown of it,
//! once escaped, carries no control character.
#![no_main]

#[path = "../src/bounded_alloc.rs"]
mod bounded_alloc;

use libfuzzer_sys::fuzz_target;
use nettop::text::escape;
use nettop::tracer::attribution::{container_id, parse_process};

#[global_allocator]
static ALLOC: bounded_alloc::Bounded = bounded_alloc::Bounded::new();

fuzz_target!(|data: &[u8]| {
    // Four files, split at 0xff 0xfe: status, comm, cmdline, cgroup.
    let mut parts = data.split(|&b| b == 0xff).map(|p| p.strip_prefix(&[0xfe]).unwrap_or(p));
    let status = parts.next().unwrap_or_default();
    let comm = parts.next().unwrap_or_default();
    let cmdline = parts.next().unwrap_or_default();
    let cgroup = parts.next();
    let Ok(p) = parse_process(42, status, comm, cmdline, cgroup) else { return };
    assert!(!p.cmdline.contains('\0'), "{:?}", p.cmdline);
    // Lossy UTF-8 turns a byte into at most three.
    assert!(p.cmdline.len() <= 3 * cmdline.len() && p.comm.len() <= 3 * comm.len());
    if let Some(id) = &p.container {
        assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
    }
    for shown in [&p.comm, &p.cmdline, p.cgroup.as_deref().unwrap_or_default()] {
        let e = escape(shown);
        assert!(!e.chars().any(char::is_control), "{e:?} from {shown:?}");
    }
    if let Some(path) = cgroup.and_then(|c| std::str::from_utf8(c).ok()) {
        let _ = container_id(path);
    }
});
