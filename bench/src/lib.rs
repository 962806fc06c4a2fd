//! Shared helpers for the benchmark binaries: summary statistics over repeated runs, printed
//! the same way everywhere, command-line and environment knobs (so `bench_all --smoke` can
//! run every benchmark at tiny sizes), the `pitcrew` binary built next to them, and a
//! quota-enforcing scripted provider ([`provider`]). Run a benchmark with
//! `cargo run --release -p pitcrew-bench --bin NAME`, or all of them with `bench_all`.

#![allow(clippy::print_stdout)]

pub mod provider;

use std::path::PathBuf;
use std::str::FromStr;
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

/// The `q` quantile (nearest rank) of ascending `sorted`; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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

/// The value after `name` on the command line (`--runs 3`), or `default` when absent; a
/// value that does not parse is an error worth stopping for, not a silent default.
pub fn arg<T: FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let value = args.get(i + 1).map_or("", String::as_str);
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} wants a value, not {value:?}"))
        }
        None => default,
    }
}

/// Whether `name` (`--smoke`) is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The number of seconds the environment variable `var` names, or `default` when unset.
pub fn secs_from_env(var: &str, default: Duration) -> Duration {
    match std::env::var(var) {
        Ok(secs) => Duration::from_secs_f64(
            secs.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var} must be a number of seconds, not {secs:?}")),
        ),
        Err(_) => default,
    }
}

/// The binary `name` built next to the running one (same target directory and profile), so
/// a benchmark measures the build it was built with; `Err` says how to build it.
pub fn find_sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let binary = exe.parent().unwrap_or(&exe).join(name);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it next to this benchmark, e.g. \
             `cargo build --release -p pitcrew -p pitcrew-bench` (without --release for target/debug)",
            binary.display()
        ))
    }
}

/// [`find_sibling`], which must be there.
pub fn sibling_binary(name: &str) -> PathBuf {
    find_sibling(name).unwrap_or_else(|why| panic!("{why}"))
}

/// The `pitcrew` binary built next to this one.
pub fn pitcrew() -> PathBuf {
    sibling_binary("pitcrew")
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

    #[test]
    fn quantiles_take_the_nearest_rank() {
        assert_eq!(quantile(&[], 0.9), 0.0);
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.9), 9.0);
        assert_eq!(quantile(&sorted, 0.95), 10.0);
        assert_eq!(quantile(&sorted, 0.0), 1.0);
    }
}
