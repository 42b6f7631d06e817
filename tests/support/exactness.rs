//! What "exact" means in the tests: the kernel's own view at rest. TCP
//! totals have no excuse to differ from it (they are the kernel's own
//! counters, PREEMPT_RT included).
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
