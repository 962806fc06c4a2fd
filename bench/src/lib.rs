//! Shared helpers for the benchmark binaries: summary statistics over repeated runs, printed
//! the same way everywhere. Run a benchmark with `cargo run --release -p pitcrew-bench --bin NAME`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

/// The median of `samples` (sorted in place); `None` when empty.
pub fn median(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    Some(if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    })
}

/// Per-second rate of `count` events in `elapsed`.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Prints one result line: `name: median (min … max) unit over N runs`.
pub fn report(name: &str, unit: &str, samples: &mut [f64]) {
    let Some(mid) = median(samples) else {
        println!("{name}: no samples");
        return;
    };
    let (min, max) = (samples[0], samples[samples.len() - 1]);
    println!(
        "{name}: median {mid:.1} {unit} (min {min:.1}, max {max:.1}) over {} runs",
        samples.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
