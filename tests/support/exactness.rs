//! What "exact" means in the tests: the kernel's own view at rest, and the
//! one excuse for an inexact count (a skipped program run the kernel
//! reported).
use std::time::{Duration, Instant};

/// Wait (up to 60 s) until the kernel's tcp_info (through sock_diag) says
/// each (lport, rport) TCP socket has this many bytes acked — the active
/// opener's count includes its SYN. Under emulation an ACK can come far
/// later than any fixed sleep would allow for.
pub fn wait_acked(want: &[((u16, u16), u64)]) {
    let start = Instant::now();
    loop {
        let kernel = nettop::tracer::backfill::sockets().unwrap();
        let acked = |(l, r): (u16, u16)| {
            kernel.iter().find(|k| k.lport == l && k.rport == r).and_then(|k| k.bytes_acked)
        };
        let pending: Vec<_> =
            want.iter().filter(|(ports, n)| acked(*ports) != Some(*n)).take(3).collect();
        if pending.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never at rest: {pending:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Counts must be exact, except where the kernel skipped runs of nettop's
/// programs and said so (`kprobe_missed` + `prog_missed` = `missed`): on
/// PREEMPT_RT a program can be preempted mid-run, and the kernel then skips
/// the next tracing program on that CPU rather than nest it. Each skipped
/// run can spoil one count; `spoiled` tallies them across a test.
pub fn exact<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    missed: u64,
    spoiled: &mut u64,
    what: &str,
) {
    if got == want {
        return;
    }
    *spoiled += 1;
    assert!(
        *spoiled <= missed,
        "{what}: {got:?}, not {want:?}, and only {missed} skipped runs reported for {spoiled} inexact counts"
    );
    eprintln!("{what}: {got:?}, not {want:?}: covered by {missed} reported skipped runs");
}
