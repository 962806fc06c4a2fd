//! Router chaos: faults injected at a provider that enforces a requests-per-minute quota.
//!
//! A local OpenAI-compatible server (the testkit's scripted server) serves one model under a
//! quota of 120 requests over any sliding minute (HTTP 429 with `Retry-After` past it); the
//! registry knows the `rpm`. Of the requests the quota lets through, a fixed share is
//! faulted: in every block of 20 accepted requests the scenario's faults take shuffled
//! positions, so the realised fault rate is the nominal one. Stream faults: a truncated stream
//! (it ends cleanly after some chunks, with neither a finish reason nor `[DONE]`), a
//! disconnect (the connection breaks after some chunks), a stall (one chunk held back for
//! 20 s where chunks normally come 10–60 ms apart; the router's learned stall deadlines should
//! cut it) and one malformed chunk (a delta chunk's JSON cut in half, in an otherwise normal
//! stream). HTTP faults: 500 and 503 without `Retry-After`.
//!
//! 20 workers per scenario take tasks and call `Router::complete` (a failed call puts its task
//! back); the scenarios run side by side on separate servers and routers. Every reply is
//! unique (it names its request's number and task), and the server keeps what it meant to send
//! for each request, so every completion the router returns is checked byte for byte.
//!
//! Run: `cargo run --release -p pitcrew-bench --bin router_chaos`
//! (`PITCREW_BENCH_CHAOS_SECS=20` shortens the run for a smoke test.)

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitcrew_bench::provider::{self, MinuteQuota};
use pitcrew_bench::{median, quantile, secs_from_env};
use pitcrew_llm::{ChatClient, RouteEvent, Router, RouterSettings};
use pitcrew_testkit::{Reply, ScriptedServer, SseEvent, sse_text_chunks};
use serde_json::json;

/// How long each scenario drives tasks, unless `RUN_ENV` names a number of seconds.
const RUN: Duration = Duration::from_secs(120);
const RUN_ENV: &str = "PITCREW_BENCH_CHAOS_SECS";
const WORKERS: usize = 20;
const MODEL: &str = "bench/coder";
/// Requests the provider accepts over any sliding minute.
const RPM: u32 = 120;
/// Faults are dealt per block of this many accepted requests.
const BLOCK: u64 = 20;
/// Delta chunks per streamed reply; healthy ones arrive 10–60 ms apart.
const PIECES: usize = 8;
/// How long a stalled stream holds one chunk back.
const STALL: Duration = Duration::from_secs(20);
/// The client and router as the engine builds them from the default configuration
/// (`request_timeout_secs`, `idle_timeout_secs`, `max_wait_secs`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(120);
/// Targets from the issue.
const GOODPUT_TARGET: f64 = 0.95;
const REQUESTS_RATIO_TARGET: f64 = 1.2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Truncated,
    Disconnect,
    Stall,
    Malformed,
    Http500,
    Http503,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Truncated => "truncated",
            Fault::Disconnect => "disconnect",
            Fault::Stall => "stall",
            Fault::Malformed => "malformed chunk",
            Fault::Http500 => "HTTP 500",
            Fault::Http503 => "HTTP 503",
        }
    }
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    /// Each fault and how many of every `BLOCK` accepted requests it takes.
    faults: &'static [(Fault, u64)],
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "stream faults (10% each)",
        faults: &[
            (Fault::Truncated, 2),
            (Fault::Disconnect, 2),
            (Fault::Stall, 2),
            (Fault::Malformed, 2),
        ],
    },
    Scenario {
        name: "HTTP faults (10% each)",
        faults: &[(Fault::Http500, 2), (Fault::Http503, 2)],
    },
    Scenario {
        name: "all six (5% each)",
        faults: &[
            (Fault::Truncated, 1),
            (Fault::Disconnect, 1),
            (Fault::Stall, 1),
            (Fault::Malformed, 1),
            (Fault::Http500, 1),
            (Fault::Http503, 1),
        ],
    },
];

impl Scenario {
    /// The share of accepted requests that are faulted.
    fn fault_rate(&self) -> f64 {
        self.faults.iter().map(|(_, n)| n).sum::<u64>() as f64 / BLOCK as f64
    }

    /// The fault of the `n`th accepted request (from 0), if any.
    fn fault(&self, n: u64) -> Option<Fault> {
        let mut position = shuffled_block(n / BLOCK)[(n % BLOCK) as usize];
        for &(fault, count) in self.faults {
            if position < count {
                return Some(fault);
            }
            position -= count;
        }
        None
    }
}

/// A permutation of `0..BLOCK`, the same for the same block.
fn shuffled_block(block: u64) -> [u64; BLOCK as usize] {
    let mut order: [u64; BLOCK as usize] = std::array::from_fn(|i| i as u64);
    let mut state = block;
    for i in (1..order.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The reply meant for accepted request `n` on `task`: unique to both, with a non-ASCII
/// character so that a reply rebuilt from mangled bytes shows.
fn reply_text(n: u64, task: u64) -> String {
    format!(
        "```python path=tests/test_add_{task}.py\n# reply {n} to task {task} — checks add()\nfrom calc import add\n\n\ndef test_add_{n}():\n    assert add({n}, {task}) == {}\n```\n",
        n + task
    )
}

/// The request number a reply names.
fn reply_number(text: &str) -> Option<u64> {
    let rest = text.split_once("# reply ")?.1;
    rest.split(' ').next()?.parse().ok()
}

/// The task a prompt names (`task N: …`).
fn task_of(prompt: &str) -> Option<u64> {
    let rest = prompt.split_once("task ")?.1;
    rest.split(':').next()?.parse().ok()
}

/// The events of the streamed reply to accepted request `n`, with `fault` injected.
fn stream(model: &str, text: &str, n: u64, fault: Option<Fault>) -> Vec<SseEvent> {
    // Deltas come first in `sse_text_chunks`, then the finish chunk, usage and [DONE].
    let events = sse_text_chunks(model, text, PIECES);
    // Where the fault strikes: after at least one delta, before the last.
    let at = 1 + (n as usize * 31) % (PIECES - 1);
    let mut out = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        if (1..PIECES).contains(&i) {
            out.push(SseEvent::Delay(Duration::from_millis(
                10 + (n * 31 + i as u64 * 17) % 50,
            )));
        }
        if i == at {
            match fault {
                Some(Fault::Truncated) => return out,
                Some(Fault::Disconnect) => {
                    out.push(SseEvent::Disconnect);
                    return out;
                }
                Some(Fault::Stall) => out.push(SseEvent::Delay(STALL)),
                Some(Fault::Malformed) => {
                    // The chunk's JSON cut in half: a reader that skipped it would lose text.
                    if let SseEvent::Data(chunk) = &event {
                        let json = chunk.to_string();
                        let mut half = json.len() / 2;
                        while !json.is_char_boundary(half) {
                            half -= 1;
                        }
                        out.push(SseEvent::RawLine(format!("data: {}\n", &json[..half])));
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(event);
    }
    out
}

fn http_error(code: u16, message: &str) -> Reply {
    Reply::status(code, json!({"error": {"message": message, "code": code}}))
}

/// What the server meant to send for one accepted request.
#[derive(Debug)]
struct Sent {
    task: Option<u64>,
    text: String,
    fault: Option<Fault>,
    /// When it arrived, from the start of the run.
    at: Duration,
}

/// What the quota-enforcing server saw.
#[derive(Debug)]
struct Ledger {
    quota: MinuteQuota,
    /// Every chat request, 429s included.
    requests: u64,
    limited: u64,
    accepted_in_window: u64,
    injected: BTreeMap<Fault, u64>,
    /// By request number: accepted request `n` is `sent[n]`.
    sent: Vec<Sent>,
}

struct ChaosServer {
    server: ScriptedServer,
    ledger: Arc<Mutex<Ledger>>,
}

impl ChaosServer {
    fn start(scenario: &'static Scenario, started: Instant, run: Duration) -> ChaosServer {
        let server = ScriptedServer::start();
        let ledger = Arc::new(Mutex::new(Ledger {
            quota: MinuteQuota::new(RPM),
            requests: 0,
            limited: 0,
            accepted_in_window: 0,
            injected: BTreeMap::new(),
            sent: Vec::new(),
        }));
        let shared = Arc::clone(&ledger);
        server.respond_with(move |request| {
            let now = request.received_at;
            let mut ledger = shared.lock().unwrap();
            ledger.requests += 1;
            if let Err(wait_secs) = ledger.quota.admit(now) {
                ledger.limited += 1;
                return provider::rate_limited(wait_secs);
            }
            if now.duration_since(started) < run {
                ledger.accepted_in_window += 1;
            }
            let n = ledger.sent.len() as u64;
            let fault = scenario.fault(n);
            if let Some(fault) = fault {
                *ledger.injected.entry(fault).or_default() += 1;
            }
            let task = task_of(&request.prompt_text());
            let text = reply_text(n, task.unwrap_or(u64::MAX));
            ledger.sent.push(Sent {
                task,
                text: text.clone(),
                fault,
                at: now.duration_since(started),
            });
            drop(ledger);
            // Time to the response head: 50–450 ms, varied deterministically.
            let first_byte = Duration::from_millis(50 + (n * 7919) % 400);
            let reply = match fault {
                Some(Fault::Http500) => http_error(500, "Internal Server Error"),
                Some(Fault::Http503) => http_error(503, "Service Unavailable"),
                // The router streams (its default); every 200 here is a stream.
                _ => Reply::sse(stream(request.model().unwrap_or(MODEL), &text, n, fault)),
            };
            reply.delay(first_byte)
        });
        ChaosServer { server, ledger }
    }
}

/// Whether `text`, returned for `task`, is byte for byte what the server sent for the request
/// it names: `Ok` with that request's number and fault (a stall waited out), or why not.
fn check(ledger: &Mutex<Ledger>, task: u64, text: &str) -> Result<(u64, Option<Fault>), String> {
    let ledger = ledger.lock().unwrap();
    let Some(n) = reply_number(text) else {
        return Err(format!("task {task}: a reply naming no request: {text:?}"));
    };
    let Some(sent) = ledger.sent.get(n as usize) else {
        return Err(format!(
            "task {task}: a reply naming request {n}, never sent"
        ));
    };
    if sent.task != Some(task) {
        return Err(format!(
            "task {task}: the reply to request {n}, which was for task {:?}",
            sent.task
        ));
    }
    if sent.text != text {
        return Err(format!(
            "task {task}: {} bytes returned, the server sent {} for request {n} ({})",
            text.len(),
            sent.text.len(),
            sent.fault.map_or("no fault", Fault::label)
        ));
    }
    Ok((n, sent.fault))
}

/// What the workers saw.
#[derive(Debug, Default)]
struct Tally {
    completed: u64,
    completed_in_window: u64,
    /// Per completed call, from `complete` to its reply.
    latencies: Vec<f64>,
    /// Errors returned to the caller (the task went back to the queue).
    failed: u64,
    /// Of those, the router gave up after waiting for a model.
    gave_up: u64,
    errors: BTreeMap<String, u64>,
    /// Completions that are not, byte for byte, what the server meant for that call.
    mismatches: u64,
    mismatch_samples: Vec<String>,
    /// Requests whose stream stalled and was waited out rather than cut.
    stalls_waited_out: BTreeSet<u64>,
    /// Failures the router reported on its way (`RouteEvent::Failed`), by kind.
    failures_seen: BTreeMap<String, u64>,
    /// For streams the router cut as stalled: seconds from the call's start to the cut.
    stall_cuts: Vec<f64>,
    tasks_started: u64,
    tasks_requeued: u64,
}

async fn drive(router: Router, server: &ChaosServer, started: Instant, run: Duration) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let queue: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    let next_task = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (router, ledger, tally, queue, next_task) = (
            router.clone(),
            Arc::clone(&server.ledger),
            Arc::clone(&tally),
            Arc::clone(&queue),
            Arc::clone(&next_task),
        );
        workers.push(tokio::spawn(async move {
            while started.elapsed() < run {
                // A requeued task first, like the engine's queue; else a new one.
                let task = queue
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| next_task.fetch_add(1, Ordering::Relaxed));
                let request = provider::task_request(task);
                let mut failures_seen: Vec<String> = Vec::new();
                let mut stall_cuts: Vec<f64> = Vec::new();
                let mut attempt_started = Instant::now();
                let call_started = Instant::now();
                let result = router
                    .complete(&request, &mut |event| match event {
                        RouteEvent::Started { .. } => attempt_started = Instant::now(),
                        RouteEvent::Failed { kind, message, .. } => {
                            failures_seen.push(kind.to_string());
                            if message.contains("stalled") {
                                stall_cuts.push(attempt_started.elapsed().as_secs_f64());
                            }
                        }
                        _ => {}
                    })
                    .await;
                let finished = started.elapsed();
                let latency = call_started.elapsed().as_secs_f64();
                let verdict = result
                    .as_ref()
                    .map(|routed| check(&ledger, task, &routed.completion.text));

                let mut tally = tally.lock().unwrap();
                for kind in failures_seen {
                    *tally.failures_seen.entry(kind).or_default() += 1;
                }
                tally.stall_cuts.extend(stall_cuts);
                match verdict {
                    Ok(verdict) => {
                        tally.completed += 1;
                        if finished <= run {
                            tally.completed_in_window += 1;
                        }
                        tally.latencies.push(latency);
                        match verdict {
                            Ok((n, Some(Fault::Stall))) => {
                                tally.stalls_waited_out.insert(n);
                            }
                            Ok(_) => {}
                            Err(why) => {
                                tally.mismatches += 1;
                                if tally.mismatch_samples.len() < 3 {
                                    tally.mismatch_samples.push(why);
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tally.failed += 1;
                        if error
                            .message
                            .starts_with("no model could take the call before its deadline")
                        {
                            tally.gave_up += 1;
                        }
                        let message: String = error.message.chars().take(200).collect();
                        *tally
                            .errors
                            .entry(format!("{}: {message}", error.kind))
                            .or_default() += 1;
                        drop(tally);
                        queue.lock().unwrap().push_back(task);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker panicked");
    }
    let mut tally = Arc::try_unwrap(tally)
        .expect("workers are done")
        .into_inner()
        .unwrap();
    tally.tasks_started = next_task.load(Ordering::Relaxed);
    tally.tasks_requeued = queue.lock().unwrap().len() as u64;
    tally
}

/// The router the engine would build from the default configuration, over the one model.
fn router(server: &ChaosServer) -> Router {
    let client = ChatClient::new(REQUEST_TIMEOUT)
        .expect("client builds")
        .with_idle_timeout(IDLE_TIMEOUT);
    let settings = RouterSettings {
        max_wait: MAX_WAIT,
        ..RouterSettings::default()
    };
    provider::router(
        &server.server,
        provider::registry(&[(MODEL, RPM)], true),
        client,
        settings,
    )
}

/// One scenario's headline figures.
#[derive(Debug)]
struct Figures {
    fault_rate: f64,
    completed: u64,
    requests_per_call: f64,
    ideal_requests: f64,
    quota_use: f64,
    goodput: f64,
    limited: u64,
    failed: u64,
    mismatches: u64,
    p50: f64,
    p95: f64,
}

impl Figures {
    fn requests_ratio(&self) -> f64 {
        self.requests_per_call / self.ideal_requests
    }
}

fn count_list(counts: &BTreeMap<impl AsRef<str>, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(what, n)| format!("{} {n}", what.as_ref()))
        .collect();
    parts.join(", ")
}

fn report(scenario: &Scenario, server: &ChaosServer, tally: &mut Tally, run: Duration) -> Figures {
    let ledger = server.ledger.lock().unwrap();
    let minutes = run.as_secs_f64() / 60.0;
    let p = scenario.fault_rate();
    let quota = f64::from(RPM);
    let mut latencies = tally.latencies.clone();
    let p50 = median(&mut latencies).unwrap_or(0.0);
    let p95 = quantile(&latencies, 0.95);
    let figures = Figures {
        fault_rate: p,
        completed: tally.completed,
        requests_per_call: ledger.requests as f64 / tally.completed.max(1) as f64,
        ideal_requests: 1.0 / (1.0 - p),
        quota_use: ledger.accepted_in_window as f64 / minutes / quota,
        goodput: tally.completed_in_window as f64 / minutes / (quota * (1.0 - p)),
        limited: ledger.limited,
        failed: tally.failed,
        mismatches: tally.mismatches,
        p50,
        p95,
    };
    let injected: BTreeMap<&str, u64> = (ledger.injected.iter())
        .map(|(fault, n)| (fault.label(), *n))
        .collect();
    println!("{} (p = {p:.2}):", scenario.name);
    println!(
        "  server: {} chat requests in all, {} accepted in the {:.0} s window ({:.1}/min, {:.1}% of the {RPM}/min quota), {} answered 429",
        ledger.requests,
        ledger.accepted_in_window,
        run.as_secs_f64(),
        ledger.accepted_in_window as f64 / minutes,
        100.0 * figures.quota_use,
        ledger.limited,
    );
    println!(
        "  faults injected: {} of {} accepted requests: {}",
        ledger.injected.values().sum::<u64>(),
        ledger.sent.len(),
        count_list(&injected)
    );
    println!(
        "  failures the router reported on its way: {}",
        count_list(&tally.failures_seen)
    );
    if ledger.injected.contains_key(&Fault::Stall) {
        let cut_after = median(&mut tally.stall_cuts);
        println!(
            "  stalled streams: {} cut by the router (median {:.1} s after the attempt began), {} waited out ({} s each)",
            tally.stall_cuts.len(),
            cut_after.unwrap_or(0.0),
            tally.stalls_waited_out.len(),
            STALL.as_secs()
        );
        let timeline: Vec<String> = (ledger.sent.iter().enumerate())
            .filter(|(_, sent)| sent.fault == Some(Fault::Stall))
            .map(|(n, sent)| {
                let waited = tally.stalls_waited_out.contains(&(n as u64));
                format!(
                    "{:.0}{}",
                    sent.at.as_secs_f64(),
                    if waited { "*" } else { "" }
                )
            })
            .collect();
        println!(
            "    stalled requests sent at (s into the run; * waited out): {}",
            timeline.join(" ")
        );
    }
    println!(
        "  calls: {} completed ({} within the window = {:.1}/min, {:.1}% of the {:.0}/min the quota allows at this fault rate); {} errors returned to workers ({} gave up after waiting); tasks lost: {}",
        tally.completed,
        tally.completed_in_window,
        tally.completed_in_window as f64 / minutes,
        100.0 * figures.goodput,
        quota * (1.0 - p),
        tally.failed,
        tally.gave_up,
        tally.tasks_started - tally.completed - tally.tasks_requeued,
    );
    for (error, n) in &tally.errors {
        println!("    error ×{n}: {error}");
    }
    println!(
        "  byte mismatches: {} of {} completions",
        tally.mismatches, tally.completed
    );
    for sample in &tally.mismatch_samples {
        println!("    {sample}");
    }
    println!(
        "  HTTP requests per completed call: {:.3} (ideal 1/(1−p) = {:.3}, ratio {:.2}); latency per completed call: p50 {:.2} s, p95 {:.2} s",
        figures.requests_per_call,
        figures.ideal_requests,
        figures.requests_ratio(),
        p50,
        p95
    );
    figures
}

fn verdict(holds: bool) -> &'static str {
    if holds { "holds" } else { "MISSED" }
}

#[tokio::main]
async fn main() {
    let run = secs_from_env(RUN_ENV, RUN);
    let started = Instant::now();
    let servers: Vec<ChaosServer> = (SCENARIOS.iter())
        .map(|scenario| ChaosServer::start(scenario, started, run))
        .collect();
    println!(
        "router chaos: 1 model, quota {RPM} requests/min (rpm known), {WORKERS} workers per scenario, {} scenarios side by side, {} s",
        SCENARIOS.len(),
        run.as_secs()
    );
    let (a, b, c) = tokio::join!(
        drive(router(&servers[0]), &servers[0], started, run),
        drive(router(&servers[1]), &servers[1], started, run),
        drive(router(&servers[2]), &servers[2], started, run),
    );
    println!(
        "(the last calls ended {:.1} s after the window)\n",
        (started.elapsed().saturating_sub(run)).as_secs_f64()
    );
    let mut figures = Vec::new();
    for ((scenario, server), mut tally) in SCENARIOS.iter().zip(&servers).zip([a, b, c]) {
        figures.push(report(scenario, server, &mut tally, run));
        println!();
    }

    println!(
        "| scenario | p | calls completed | HTTP requests / call | ideal 1/(1−p) | ratio | quota use | goodput | 429s | tasks failed | byte mismatches | latency p50 / p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (scenario, f) in SCENARIOS.iter().zip(&figures) {
        println!(
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.1}% | {:.2} | {} | {} | {} | {:.2} s / {:.2} s |",
            scenario.name,
            f.fault_rate,
            f.completed,
            f.requests_per_call,
            f.ideal_requests,
            f.requests_ratio(),
            100.0 * f.quota_use,
            f.goodput,
            f.limited,
            f.failed,
            f.mismatches,
            f.p50,
            f.p95
        );
    }
    println!(
        "\ngoodput: completed calls per minute over {RPM} × (1 − p); quota use: requests the quota accepted per minute over {RPM}"
    );
    println!("\ntargets:");
    for (scenario, f) in SCENARIOS.iter().zip(&figures) {
        println!(
            "  {}: goodput ≥ {GOODPUT_TARGET} {}; 0 tasks failed {}; requests ≤ {REQUESTS_RATIO_TARGET}× ideal {}; 0 byte mismatches {}",
            scenario.name,
            verdict(f.goodput >= GOODPUT_TARGET),
            verdict(f.failed == 0),
            verdict(f.requests_ratio() <= REQUESTS_RATIO_TARGET),
            verdict(f.mismatches == 0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_holds_exactly_the_scenarios_faults() {
        for scenario in &SCENARIOS {
            for block in 0..50 {
                let mut counts: BTreeMap<Fault, u64> = BTreeMap::new();
                for n in block * BLOCK..(block + 1) * BLOCK {
                    if let Some(fault) = scenario.fault(n) {
                        *counts.entry(fault).or_default() += 1;
                    }
                }
                let expected: BTreeMap<Fault, u64> = scenario.faults.iter().copied().collect();
                assert_eq!(counts, expected, "{} block {block}", scenario.name);
            }
        }
    }

    #[test]
    fn replies_name_their_request_and_task() {
        let text = reply_text(1234, 56);
        assert_eq!(reply_number(&text), Some(1234));
        assert_eq!(
            task_of("Write pytest tests.\ntask 56: tests for calc.add"),
            Some(56)
        );
        assert!(pitcrew_llm::content::check(&text, pitcrew_llm::Expect::Code).is_ok());
    }

    /// The text a client would assemble from the deltas of `events`.
    fn delta_text(events: &[SseEvent]) -> String {
        events
            .iter()
            .filter_map(|event| match event {
                SseEvent::Data(chunk) => chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn faulted_streams_carry_part_of_the_reply_and_healthy_ones_all_of_it() {
        let text = reply_text(7, 3);
        let healthy = stream(MODEL, &text, 7, None);
        assert_eq!(delta_text(&healthy), text);
        assert_eq!(healthy.last(), Some(&SseEvent::Done));
        for fault in [Fault::Truncated, Fault::Disconnect, Fault::Malformed] {
            let events = stream(MODEL, &text, 7, Some(fault));
            let got = delta_text(&events);
            assert!(got.len() < text.len(), "{fault:?}");
            assert_eq!(
                events.last() == Some(&SseEvent::Done),
                fault == Fault::Malformed,
                "{fault:?}"
            );
        }
        let stalled = stream(MODEL, &text, 7, Some(Fault::Stall));
        assert_eq!(delta_text(&stalled), text);
        assert!(stalled.contains(&SseEvent::Delay(STALL)));
    }
}
