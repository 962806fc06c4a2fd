//! Statistics over samples, shared by the figures pitcrew shows.

/// The `p` quantile (0–1) of `samples` by the nearest-rank method: the smallest sample that
/// at least `p` of the samples are at or below. `None` for no samples.
pub fn percentile(samples: &[u64], p: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_none_without_samples() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[], 0.95), None);
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[7], 0.95), Some(7));
        // Unsorted input; the median of an even count is the lower middle.
        assert_eq!(percentile(&[40, 10, 30, 20], 0.5), Some(20));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&hundred, 0.5), Some(50));
        assert_eq!(percentile(&hundred, 0.95), Some(95));
        assert_eq!(percentile(&hundred, 1.0), Some(100));
        assert_eq!(percentile(&hundred, 0.0), Some(1));
        // 20 samples: the 95th percentile is the 19th, not the largest.
        let twenty: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 0.95), Some(19));
    }
}
