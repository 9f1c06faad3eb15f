//! A Prometheus histogram of durations: fixed buckets, counted as they happen, rendered in the
//! text format. Pure; the control task owns one per kind of work it times.

use std::{fmt::Write as _, time::Duration};

/// Upper bounds of the buckets, in seconds: from half a millisecond (an idle poll) to five
/// seconds (a save on a struggling disk), about three per decade, so a quantile read from the
/// buckets is off by at most a factor of 2.5.
pub const BUCKET_BOUNDS_SECONDS: [f64; 14] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// How many durations fell into each bucket, their sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last slot is above the last bound (`+Inf`).
    counts: [u64; BUCKET_BOUNDS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKET_BOUNDS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKET_BOUNDS_SECONDS.len());
        self.counts[bucket] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }

    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The `_bucket` (cumulative, with `le`), `_sum` and `_count` lines of `name`.
    pub fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, count) in BUCKET_BOUNDS_SECONDS.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_that_holds_it() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_micros(501));
        histogram.observe(Duration::from_mins(1));
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds");
        assert!(out.contains("x_seconds_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert_eq!(histogram.count(), 3);
    }

    #[test]
    fn the_sum_is_in_seconds() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_millis(250));
        histogram.observe(Duration::from_millis(750));
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds");
        assert!(out.contains("x_seconds_sum 1\n"), "{out}");
    }
}
