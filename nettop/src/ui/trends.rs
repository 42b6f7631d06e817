//! Recent history for the pictures: the host's send and receive rates over
//! the last minutes (the graph pane), and each shown line's rates and RTT
//! over the last minute (the details pane's sparklines). Only lines on
//! screen are followed, so the cost stays that of a screenful.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::view::Key;

/// Host samples kept: five minutes at the default interval.
pub const HOST_SAMPLES: usize = 300;
/// Samples kept per line: a minute at the default interval.
pub const LINE_SAMPLES: usize = 60;
/// Lines followed at once; past it, the longest unseen go.
const MAX_LINES: usize = 512;

/// One refresh's figures for a line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub send: f64,
    pub recv: f64,
    /// TCP: smoothed RTT, µs; None for UDP, processes and peers.
    pub rtt_us: Option<u32>,
}

#[derive(Default)]
struct Line {
    samples: VecDeque<Sample>,
    /// The refresh that last sampled it.
    seen: u64,
}

#[derive(Default)]
pub struct Trends {
    /// (send, receive) bytes/s of the whole host, oldest first.
    pub host: VecDeque<(f64, f64)>,
    lines: FxHashMap<Key, Line>,
    refresh: u64,
}

impl Trends {
    /// A new refresh: the host's totals.
    pub fn host(&mut self, send: f64, recv: f64) {
        self.refresh += 1;
        if self.host.len() == HOST_SAMPLES {
            self.host.pop_front();
        }
        self.host.push_back((send, recv));
    }

    /// A line on screen this refresh, and its figures.
    pub fn line(&mut self, key: Key, s: Sample) {
        let refresh = self.refresh;
        let l = self.lines.entry(key).or_default();
        if l.seen == refresh {
            return;
        }
        l.seen = refresh;
        if l.samples.len() == LINE_SAMPLES {
            l.samples.pop_front();
        }
        l.samples.push_back(s);
        if self.lines.len() > MAX_LINES {
            let oldest = refresh.saturating_sub(LINE_SAMPLES as u64);
            self.lines.retain(|_, l| l.seen > oldest);
            if self.lines.len() > MAX_LINES {
                self.lines.retain(|_, l| l.seen == refresh);
            }
        }
    }

    /// A line's samples, oldest first.
    pub fn of(&self, key: Key) -> Option<&VecDeque<Sample>> {
        self.lines.get(&key).map(|l| &l.samples)
    }
}

/// The values as a text sparkline, scaled to their own maximum: `▁▃█▅`.
pub fn sparkline(values: impl Iterator<Item = f64>) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let v: Vec<f64> = values.collect();
    let max = v.iter().copied().fold(0.0, f64::max);
    v.iter()
        .map(|&x| if max > 0.0 { BARS[((x / max) * 7.0).round() as usize] } else { BARS[0] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_are_bounded_and_follow_refreshes() {
        let mut t = Trends::default();
        for i in 0..400u32 {
            t.host(f64::from(i), 0.0);
            t.line(Key::Conn(1), Sample { send: f64::from(i), ..Sample::default() });
            // Seen twice in one refresh: sampled once.
            t.line(Key::Conn(1), Sample::default());
            t.line(Key::Conn(1000 + u64::from(i)), Sample::default());
        }
        assert_eq!(t.host.len(), HOST_SAMPLES);
        assert_eq!(t.host.back(), Some(&(399.0, 0.0)));
        let one = t.of(Key::Conn(1)).unwrap();
        assert_eq!((one.len(), one.back().unwrap().send), (LINE_SAMPLES, 399.0));
        assert!(t.lines.len() <= MAX_LINES);
        for i in 0..1000 {
            t.host(0.0, 0.0);
            t.line(Key::Conn(5000 + i), Sample::default());
        }
        assert!(t.lines.len() <= MAX_LINES, "{}", t.lines.len());
    }

    #[test]
    fn sparklines_scale_to_their_maximum() {
        assert_eq!(sparkline([0.0, 1.0, 2.0, 4.0].into_iter()), "▁▃▅█");
        assert_eq!(sparkline([0.0, 0.0].into_iter()), "▁▁");
        assert_eq!(sparkline(std::iter::empty()), "");
    }
}
