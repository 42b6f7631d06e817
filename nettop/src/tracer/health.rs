//! Whether a TCP connection is slow or stuck, judged from what changed in
//! its `tcp_info` between two reads of the kernel's table.
use serde::Serialize;

use super::sock_diag::TcpInfo;

/// Reads closer together than this are not judged: the kernel's busy
/// times move in jiffies (4 ms on Debian), too coarse to split a shorter
/// interval.
pub const MIN_INTERVAL_NS: u64 = 200_000_000;

/// What held a sending connection back over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLimit {
    /// The peer's receive window was full.
    Receiver,
    /// Its own send buffer was full.
    SendBuffer,
    /// Busy, but held by neither of the above: the congestion window or
    /// the path. Inferred, as the kernel counts it as plain busy time.
    Network,
    /// Mostly idle: the application had nothing to send.
    Application,
}

impl SendLimit {
    pub fn label(self) -> &'static str {
        match self {
            SendLimit::Receiver => "receiver",
            SendLimit::SendBuffer => "sndbuf",
            SendLimit::Network => "network?",
            SendLimit::Application => "app",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SendLimit::Receiver => "the receiver's window",
            SendLimit::SendBuffer => "its own send buffer",
            SendLimit::Network => "the network (inferred: busy, not held by window or buffer)",
            SendLimit::Application => "the application (nothing to send)",
        }
    }
}

/// A TCP connection's health over the interval between two reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub interval_ms: u32,
    /// Segments retransmitted in the interval.
    pub retransmits: u32,
    /// The peer advertises a zero receive window.
    pub zero_window: bool,
    /// Data was waiting to be sent all interval, and nothing was
    /// acknowledged.
    pub send_stalled: bool,
    /// Data waits to be read, as much or more than before, and the
    /// application read nothing.
    pub recv_stalled: bool,
    /// What held sending back; none where it sent nothing.
    pub send_limit: Option<SendLimit>,
}

impl Health {
    /// Whether the row deserves a mark.
    pub fn marked(&self) -> bool {
        self.retransmits > 0 || self.zero_window || self.send_stalled || self.recv_stalled
    }

    /// The conditions that hold, worded for the details pane.
    pub fn conditions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.retransmits > 0 {
            out.push(format!("{} segments retransmitted", self.retransmits));
        }
        if self.zero_window {
            out.push("the peer's receive window is zero".into());
        }
        if self.send_stalled {
            out.push("data waits to be sent and nothing was acknowledged".into());
        }
        if self.recv_stalled {
            out.push("data waits to be read and the application read nothing".into());
        }
        out
    }
}

/// The health over `elapsed_ns` from `before` to `now`, or none where the
/// interval is too short to tell.
pub fn judge(before: &TcpInfo, now: &TcpInfo, elapsed_ns: u64) -> Option<Health> {
    if elapsed_ns < MIN_INTERVAL_NS {
        return None;
    }
    let acked = now.acked_raw != before.acked_raw;
    // What the application took: what arrived, less what still waits.
    let read = |t: &TcpInfo| t.received_raw.wrapping_sub(u64::from(t.recv_queue));
    Some(Health {
        interval_ms: u32::try_from(elapsed_ns / 1_000_000).unwrap_or(u32::MAX),
        retransmits: now.total_retrans.saturating_sub(before.total_retrans),
        zero_window: now.snd_wnd == Some(0),
        send_stalled: before.send_queue > 0 && now.send_queue > 0 && !acked,
        recv_stalled: now.recv_queue > 0
            && now.recv_queue >= before.recv_queue
            && read(now) == read(before),
        send_limit: send_limit(before, now, elapsed_ns / 1_000, acked),
    })
}

fn send_limit(before: &TcpInfo, now: &TcpInfo, elapsed_us: u64, acked: bool) -> Option<SendLimit> {
    let busy = now.busy_us.saturating_sub(before.busy_us).min(elapsed_us);
    if busy == 0 && !acked {
        return None;
    }
    let receiver = now.rwnd_limited_us.saturating_sub(before.rwnd_limited_us);
    let sndbuf = now.sndbuf_limited_us.saturating_sub(before.sndbuf_limited_us);
    let shares = [
        (receiver, SendLimit::Receiver),
        (sndbuf, SendLimit::SendBuffer),
        (busy.saturating_sub(receiver + sndbuf), SendLimit::Network),
        (elapsed_us - busy, SendLimit::Application),
    ];
    // The largest share; on a tie the first, the most specific.
    shares.iter().rev().max_by_key(|s| s.0).map(|s| s.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn info(f: impl FnOnce(&mut TcpInfo)) -> TcpInfo {
        let mut t = TcpInfo { snd_wnd: Some(65_535), ..TcpInfo::default() };
        f(&mut t);
        t
    }

    #[test]
    fn a_quiet_healthy_connection_is_not_marked_and_has_no_limit() {
        let t = info(|_| {});
        let h = judge(&t, &t, SEC).unwrap();
        assert!(!h.marked());
        assert_eq!((h.send_limit, h.interval_ms), (None, 1000));
    }

    #[test]
    fn too_short_an_interval_is_not_judged() {
        let t = info(|_| {});
        assert_eq!(judge(&t, &t, MIN_INTERVAL_NS - 1), None);
        assert!(judge(&t, &t, MIN_INTERVAL_NS).is_some());
    }

    #[test]
    fn each_condition_marks_the_row() {
        let before = info(|t| {
            t.total_retrans = 2;
            t.send_queue = 100;
            t.recv_queue = 10;
            t.received_raw = 500;
            t.acked_raw = 1000;
        });
        let retrans = judge(&before, &info(|t| t.total_retrans = 5), SEC).unwrap();
        assert_eq!(retrans.retransmits, 3);
        assert!(retrans.marked());

        let zero = judge(&before, &info(|t| t.snd_wnd = Some(0)), SEC).unwrap();
        assert!(zero.zero_window && zero.marked());
        // An old kernel without the field is not "zero".
        assert!(!judge(&before, &info(|t| t.snd_wnd = None), SEC).unwrap().zero_window);

        let stalled = |now: TcpInfo| judge(&before, &now, SEC).unwrap().send_stalled;
        assert!(stalled(info(|t| (t.send_queue, t.acked_raw) = (100, 1000))));
        assert!(!stalled(info(|t| (t.send_queue, t.acked_raw) = (100, 1001))), "progress");
        assert!(!stalled(info(|t| (t.send_queue, t.acked_raw) = (0, 1000))), "all sent");

        let unread = |now: TcpInfo| judge(&before, &now, SEC).unwrap().recv_stalled;
        // 40 more arrived, all still queued: nothing read.
        assert!(unread(info(|t| (t.recv_queue, t.received_raw) = (50, 540))));
        // The same 10 bytes waited all interval.
        assert!(unread(info(|t| (t.recv_queue, t.received_raw) = (10, 500))));
        // It read 5 of them.
        assert!(!unread(info(|t| (t.recv_queue, t.received_raw) = (5, 500))));
        // More arrived and some was read.
        assert!(!unread(info(|t| (t.recv_queue, t.received_raw) = (20, 540))));
        let conditions = judge(&before, &info(|t| t.snd_wnd = Some(0)), SEC).unwrap().conditions();
        assert_eq!(conditions, ["the peer's receive window is zero"]);
    }

    #[test]
    fn the_largest_share_of_the_interval_names_the_limit() {
        let before = info(|t| (t.busy_us, t.rwnd_limited_us, t.sndbuf_limited_us) = (50, 20, 10));
        let after = |busy, rwnd, sndbuf| {
            let now = info(|t| {
                (t.busy_us, t.rwnd_limited_us, t.sndbuf_limited_us) = (busy, rwnd, sndbuf)
            });
            judge(&before, &now, SEC).unwrap().send_limit
        };
        // Busy 900 ms of 1 s, 700 of it on a full peer window.
        assert_eq!(after(900_050, 700_020, 10), Some(SendLimit::Receiver));
        assert_eq!(after(900_050, 20, 600_010), Some(SendLimit::SendBuffer));
        // Busy, but neither window nor buffer: inferred network.
        assert_eq!(after(900_050, 100_020, 100_010), Some(SendLimit::Network));
        // Busy 100 ms of 1 s: the application had nothing more.
        assert_eq!(after(100_050, 20, 10), Some(SendLimit::Application));
        // Not busy and nothing acknowledged: not sending, so no limit.
        assert_eq!(after(50, 20, 10), None);
    }
}
