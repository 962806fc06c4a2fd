//! How many generations one pitcrew process can keep in flight: throughput as a share of the
//! Little's-law bound, and the process's peak memory, at 10, 100, 1,000 and 2,000 streamed
//! generations in flight against a provider that takes 1 s to the first token.
//!
//! The provider is `pitcrew sim` (the binary built next to this one), run as a separate process
//! so that the memory measured is the client's alone: one model with a fixed 1 s to the first
//! token and short replies streamed fast, so a call is ~1 s of waiting. The client is
//! pitcrew's own `Router` over a `ChatClient`, its concurrency cap set above the largest level
//! and the process's open-file limit raised to its hard limit (one socket per call in flight).
//!
//! Each level: every one of N workers makes one warm-up call (opening its connection), then
//! all start together and make calls back to back for a fixed time. Throughput is the sum of
//! the workers' rates (calls over the time each was busy); the bound is N over the latency of
//! one call at zero load, measured first, so the ratio shows what load costs. Peak RSS is the
//! process's high-water mark (`VmHWM`) after the level; it only grows, so levels run in
//! increasing order.
//!
//! ```sh
//! cargo build --release -p pitcrew -p pitcrew-bench
//! target/release/concurrency                      # --levels 10,100,1000,2000 --secs 10
//! ```

#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use pitcrew_bench::provider;
use pitcrew_bench::{arg, pitcrew, quantile};
use pitcrew_llm::{
    ChatClient, Expect, Message, Requirements, RouteRequest, Router, RouterSettings,
};
use tokio::sync::Barrier;

const MODEL: &str = "bench/sim";
/// Time to the first token.
const LATENCY_MS: u64 = 1000;
/// Reply length and pace: 16 tokens in 4 chunks a millisecond apart, so streaming adds
/// little to the 1 s.
const REPLY_TOKENS: u32 = 16;
const TOKENS_PER_SECOND: u32 = 4000;
/// Sequential calls that measure the latency at zero load, after one warm-up call.
const CALIBRATION_CALLS: usize = 3;
/// Targets from the issue.
const BOUND_TARGET: (usize, f64) = (1_000, 0.95);
const RSS_TARGET: (usize, f64) = (2_000, 200.0);

/// A `pitcrew sim` process serving `MODEL`, killed on drop.
struct Sim {
    child: Child,
    /// Kept open so the simulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    base_url: String,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn start() -> Sim {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("sim.toml");
        std::fs::write(
            &config,
            format!(
                "[models.\"{MODEL}\"]\nlatency = {{ fixed_ms = {LATENCY_MS} }}\n\
                 tokens_per_second = {TOKENS_PER_SECOND}\nchunk_tokens = 4\n\
                 filler_tokens = {REPLY_TOKENS}\n"
            ),
        )
        .expect("sim.toml written");
        let mut child = Command::new(pitcrew())
            .args(["sim", "--bind", "127.0.0.1:0", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("pitcrew sim starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("pitcrew sim prints");
        let base_url = listening_url(&line)
            .unwrap_or_else(|| panic!("pitcrew sim printed no listening address: {line:?}"));
        Sim {
            child,
            _stdout: stdout,
            base_url,
            _dir: dir,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL in `pitcrew sim`'s first line (`… listening on http://ADDR/v1 (models: …)`).
fn listening_url(line: &str) -> Option<String> {
    let rest = line.split_once("listening on ")?.1;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_string())
}

/// Raises the soft open-file limit to the hard one, so thousands of sockets fit; returns it.
fn raise_fd_limit() -> u64 {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

/// The process's peak resident memory so far (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024.0
}

/// A router over the simulator's one model that never caps calls in flight below `max`.
fn router(sim: &Sim, max: usize) -> Router {
    let client = ChatClient::new(Duration::from_secs(60)).expect("client builds");
    let cap = u32::try_from(max).expect("a level fits in u32");
    let settings = RouterSettings {
        initial_concurrency: cap,
        max_concurrency: cap,
        ..RouterSettings::default()
    };
    let registry = provider::registry(&[(MODEL, 0)], false);
    provider::router_at(sim.base_url.clone(), registry, client, settings)
}

/// One streamed generation; its latency in seconds, or `None` if the router gave up.
async fn generate(router: &Router) -> Option<f64> {
    let request = RouteRequest {
        messages: vec![
            Message::system("You are a benchmark."),
            Message::user("Say something short."),
        ],
        temperature: 0.2,
        expect: Expect::Text,
        requirements: Requirements {
            max_output_tokens: 64,
            ..Requirements::default()
        },
        task_budget: None,
        wait_until: None,
    };
    let started = Instant::now();
    router.complete(&request, &mut |_| {}).await.ok()?;
    Some(started.elapsed().as_secs_f64())
}

/// Mean latency of sequential calls: what one call costs with nothing else in flight.
async fn zero_load_latency(router: &Router) -> f64 {
    generate(router).await.expect("the warm-up call succeeds");
    let mut total = 0.0;
    for _ in 0..CALIBRATION_CALLS {
        total += generate(router).await.expect("a calibration call succeeds");
    }
    total / CALIBRATION_CALLS as f64
}

/// What one worker of a level did after its warm-up.
#[derive(Debug, Default)]
struct Worker {
    completed: u64,
    errors: u64,
    latencies: Vec<f64>,
    busy: Duration,
}

/// One worker: a warm-up call, the common start, then calls back to back for `secs`.
async fn work(router: Router, start: Arc<Barrier>, secs: Duration) -> Worker {
    let warm = generate(&router).await;
    start.wait().await;
    let mut worker = Worker {
        errors: u64::from(warm.is_none()),
        ..Worker::default()
    };
    let began = Instant::now();
    while began.elapsed() < secs {
        match generate(&router).await {
            Some(latency) => {
                worker.completed += 1;
                worker.latencies.push(latency);
            }
            None => worker.errors += 1,
        }
    }
    worker.busy = began.elapsed();
    worker
}

/// One level's figures.
#[derive(Debug)]
struct Level {
    in_flight: usize,
    completed: u64,
    errors: u64,
    throughput: f64,
    bound: f64,
    mean_latency: f64,
    p99_latency: f64,
    peak_rss_mb: f64,
}

async fn level(router: &Router, in_flight: usize, secs: Duration, zero_load: f64) -> Level {
    let start = Arc::new(Barrier::new(in_flight));
    let handles: Vec<_> = (0..in_flight)
        .map(|_| tokio::spawn(work(router.clone(), Arc::clone(&start), secs)))
        .collect();
    let mut workers = Vec::with_capacity(in_flight);
    for handle in handles {
        workers.push(handle.await.expect("worker panicked"));
    }
    let mut latencies: Vec<f64> = workers
        .iter()
        .flat_map(|w| w.latencies.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let completed: u64 = workers.iter().map(|w| w.completed).sum();
    Level {
        in_flight,
        completed,
        errors: workers.iter().map(|w| w.errors).sum(),
        throughput: workers
            .iter()
            .map(|w| w.completed as f64 / w.busy.as_secs_f64())
            .sum(),
        bound: in_flight as f64 / zero_load,
        mean_latency: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        p99_latency: quantile(&latencies, 0.99),
        peak_rss_mb: peak_rss_mb(),
    }
}

fn print_table(levels: &[Level]) {
    println!(
        "| in flight | calls completed | throughput | Little's-law bound | share of the bound | mean latency | p99 latency | errors | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for l in levels {
        println!(
            "| {} | {} | {:.1}/s | {:.1}/s | {:.1}% | {:.3} s | {:.3} s | {} | {:.1} MB |",
            l.in_flight,
            l.completed,
            l.throughput,
            l.bound,
            100.0 * l.throughput / l.bound,
            l.mean_latency,
            l.p99_latency,
            l.errors,
            l.peak_rss_mb
        );
    }
}

fn print_targets(levels: &[Level]) {
    let at = |n: usize| levels.iter().find(|l| l.in_flight == n);
    let verdict = |holds: bool| if holds { "holds" } else { "MISSED" };
    let (n, share) = BOUND_TARGET;
    let bound = at(n).map_or_else(
        || "not measured".to_string(),
        |l| {
            let got = l.throughput / l.bound;
            format!("{} ({:.1}%)", verdict(got >= share), 100.0 * got)
        },
    );
    let (m, mb) = RSS_TARGET;
    let rss = at(m).map_or_else(
        || "not measured".to_string(),
        |l| format!("{} ({:.1} MB)", verdict(l.peak_rss_mb < mb), l.peak_rss_mb),
    );
    println!(
        "\ntargets: ≥ {:.0}% of the bound at {n} in flight: {bound}; peak RSS < {mb:.0} MB at {m} in flight: {rss}",
        100.0 * share
    );
}

/// `--levels 10,100,1000,2000`, ascending.
fn levels() -> Vec<usize> {
    let text: String = arg("--levels", "10,100,1000,2000".to_string());
    let mut levels: Vec<usize> = text
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("--levels takes numbers, e.g. 10,100")
        })
        .collect();
    levels.sort_unstable();
    levels
}

fn main() {
    let levels = levels();
    let secs = Duration::from_secs_f64(arg("--secs", 10.0));
    let largest = *levels.last().expect("at least one level");
    let fd_limit = raise_fd_limit();
    assert!(
        fd_limit > largest as u64 + 100,
        "the open-file limit ({fd_limit}) is too low for {largest} connections"
    );
    // Started after the limit is raised: the simulator inherits it.
    let sim = Sim::start();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let router = router(&sim, largest);
        let zero_load = zero_load_latency(&router).await;
        println!(
            "concurrency: pitcrew's router against `pitcrew sim` (a separate process) serving \
             {LATENCY_MS} ms to the first token and {REPLY_TOKENS}-token streamed replies; per level, \
             one warm-up call per worker, then {:.0} s of calls back to back",
            secs.as_secs_f64()
        );
        println!(
            "latency of one call at zero load: {:.0} ms (mean of {CALIBRATION_CALLS}); bound = in flight / that; \
             peak RSS of this process (VmHWM) after each level, starting at {:.1} MB\n",
            zero_load * 1000.0,
            peak_rss_mb()
        );
        let mut figures = Vec::new();
        for &n in &levels {
            figures.push(level(&router, n, secs, zero_load).await);
        }
        print_table(&figures);
        print_targets(&figures);
    });
    drop(sim);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_names_the_base_url() {
        let line = "pitcrew sim: SIMULATED provider (replies are fake) listening on \
                    http://127.0.0.1:40123/v1 (models: bench/sim)\n";
        assert_eq!(
            listening_url(line).as_deref(),
            Some("http://127.0.0.1:40123/v1")
        );
        assert_eq!(listening_url("error: cannot listen"), None);
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        let mb = peak_rss_mb();
        assert!(mb > 0.0 && mb < 100_000.0, "{mb}");
    }
}
