//! What the benchmark's binaries share: latency percentiles and JSON output.

use std::time::Duration;

/// Percentiles of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |p: f64| {
            let index = (p * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        let total: Duration = samples.iter().sum();
        Some(Self {
            samples: samples.len(),
            p50_us: micros(rank(0.50)),
            p99_us: micros(rank(0.99)),
            mean_us: micros(total) / samples.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!((p.samples, p.p50_us, p.p99_us, p.mean_us), (100, 50.0, 99.0, 50.5));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let p = Percentiles::of(&mut [Duration::from_micros(7)]).unwrap();
        assert_eq!((p.p50_us, p.p99_us), (7.0, 7.0));
        assert!(Percentiles::of(&mut []).is_none());
    }
}
