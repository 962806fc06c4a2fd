//! Router goodput against providers that enforce a requests-per-minute quota.
//!
//! A local OpenAI-compatible server (the testkit's scripted server) serves two models, each
//! with its own quota over a sliding minute; a request over quota gets HTTP 429 with
//! `Retry-After` (whole seconds, rounded up, as most providers send it). Workers drive tasks
//! through pitcrew's router for two minutes, in two scenarios run side by side on separate
//! servers: the registry knows the models' limits (`rpm`), or it does not and the router
//! learns them only from 429s. Reported per scenario: successful requests per minute as a
//! share of the combined quota, requests that arrived while the server's `Retry-After` was
//! still running (sent after the client had been told to wait), and tasks lost.
//!
//! Run: `cargo run --release -p pitcrew-bench --bin router_goodput`
//! (`PITCREW_BENCH_GOODPUT_SECS=5` shortens the run for a smoke test.)

#![allow(clippy::print_stdout)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitcrew_bench::provider::{self, MinuteQuota};
use pitcrew_bench::secs_from_env;
use pitcrew_llm::{ChatClient, RouteEvent, Router, RouterSettings};
use pitcrew_testkit::{Reply, ScriptedServer};

/// How long each scenario drives tasks, unless `RUN_ENV` names a number of seconds.
const RUN: Duration = Duration::from_secs(120);
const RUN_ENV: &str = "PITCREW_BENCH_GOODPUT_SECS";
const WORKERS: usize = 16;
/// (model, requests per minute the server allows).
const MODELS: [(&str, u32); 2] = [("bench/a", 60), ("bench/b", 30)];
/// A request arriving this soon after a 429 was sent may have left the client before the 429
/// arrived; only later arrivals count as ignoring `Retry-After`.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(50);
const REPLY: &str = "```python path=tests/test_calc.py\nfrom calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n";

/// What the quota-enforcing server saw for one model.
#[derive(Debug)]
struct ModelLedger {
    quota: MinuteQuota,
    ok_in_window: u64,
    ok_total: u64,
    limited: u64,
    /// The last 429: when it was sent and until when it asked the client to wait.
    wait: Option<(Instant, Instant)>,
    early: u64,
}

impl ModelLedger {
    fn new(rpm: u32) -> ModelLedger {
        ModelLedger {
            quota: MinuteQuota::new(rpm),
            ok_in_window: 0,
            ok_total: 0,
            limited: 0,
            wait: None,
            early: 0,
        }
    }
}

struct QuotaServer {
    server: ScriptedServer,
    ledgers: Arc<Mutex<HashMap<String, ModelLedger>>>,
}

impl QuotaServer {
    fn start(started: Instant, run: Duration) -> QuotaServer {
        let server = ScriptedServer::start();
        let ledgers: Arc<Mutex<HashMap<String, ModelLedger>>> = Arc::new(Mutex::new(
            MODELS
                .into_iter()
                .map(|(model, rpm)| (model.to_string(), ModelLedger::new(rpm)))
                .collect(),
        ));
        let ledger = Arc::clone(&ledgers);
        let served = AtomicU64::new(0);
        server.respond_with(move |request| {
            let now = request.received_at;
            let model = request.model().unwrap_or_default();
            let mut ledgers = ledger.lock().unwrap();
            let ledger = ledgers
                .entry(model.to_string())
                .or_insert_with(|| ModelLedger::new(0));
            if let Some((sent, until)) = ledger.wait
                && now >= sent + IN_FLIGHT_GRACE
                && now < until
            {
                ledger.early += 1;
            }
            if let Err(wait_secs) = ledger.quota.admit(now) {
                ledger.wait = Some((now, now + Duration::from_secs(wait_secs)));
                ledger.limited += 1;
                return provider::rate_limited(wait_secs);
            }
            ledger.ok_total += 1;
            if now.duration_since(started) < run {
                ledger.ok_in_window += 1;
            }
            // Replies take 50–450 ms, varied deterministically.
            let n = served.fetch_add(1, Ordering::Relaxed);
            let latency = Duration::from_millis(50 + (n * 7919) % 400);
            Reply::content(REPLY).delay(latency)
        });
        QuotaServer { server, ledgers }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    completed: u64,
    failed_calls: u64,
    /// Calls still waiting a whole window after it closed, given up and requeued.
    abandoned: u64,
    lost: u64,
}

async fn drive(router: Router, started: Instant, run: Duration) -> Outcome {
    let queue: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    let next_task = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let failed_calls = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    // Calls end on their own well within a window of minutes; a run of seconds (a smoke
    // test) would otherwise wait out a minute's quota after it.
    let give_up = tokio::time::Instant::from_std(started + 2 * run);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (router, queue, next_task, completed, failed_calls, abandoned) = (
            router.clone(),
            Arc::clone(&queue),
            Arc::clone(&next_task),
            Arc::clone(&completed),
            Arc::clone(&failed_calls),
            Arc::clone(&abandoned),
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
                let mut ignore = |_: RouteEvent<'_>| {};
                let call = router.complete(&request, &mut ignore);
                match tokio::time::timeout_at(give_up, call).await {
                    Ok(Ok(_)) => {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        failed_calls.fetch_add(1, Ordering::Relaxed);
                        queue.lock().unwrap().push_back(task);
                    }
                    Err(_) => {
                        abandoned.fetch_add(1, Ordering::Relaxed);
                        queue.lock().unwrap().push_back(task);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker panicked");
    }
    let started_tasks = next_task.load(Ordering::Relaxed);
    let completed = completed.load(Ordering::Relaxed);
    let requeued = queue.lock().unwrap().len() as u64;
    Outcome {
        completed,
        failed_calls: failed_calls.load(Ordering::Relaxed),
        abandoned: abandoned.load(Ordering::Relaxed),
        lost: started_tasks - completed - requeued,
    }
}

/// A router over the two models, with or without their `rpm` in its registry.
fn router(server: &QuotaServer, limits_known: bool) -> Router {
    let client = ChatClient::new(Duration::from_secs(30)).expect("client builds");
    provider::router(
        &server.server,
        provider::registry(&MODELS, limits_known),
        client,
        RouterSettings::default(),
    )
}

fn report(label: &str, server: &QuotaServer, outcome: &Outcome, run: Duration) {
    let ledgers = server.ledgers.lock().unwrap();
    let minutes = run.as_secs_f64() / 60.0;
    let quota: u32 = MODELS.iter().map(|(_, q)| q).sum();
    println!("{label}");
    let mut ok = 0;
    let mut early = 0;
    for (model, per_minute) in MODELS {
        let l = &ledgers[model];
        println!(
            "  {model}: quota {per_minute}/min; {} successful in the window ({:.1}% of its quota), {} 429s, {} sent early",
            l.ok_in_window,
            100.0 * l.ok_in_window as f64 / (f64::from(per_minute) * minutes),
            l.limited,
            l.early
        );
        ok += l.ok_in_window;
        early += l.early;
    }
    println!(
        "  goodput: {ok} successful requests in {:.0} s = {:.1}/min = {:.1}% of the {quota}/min quota",
        run.as_secs_f64(),
        ok as f64 / minutes,
        100.0 * ok as f64 / (f64::from(quota) * minutes)
    );
    println!("  requests sent before Retry-After allowed: {early}");
    println!(
        "  tasks: {} completed, {} router errors (requeued), {} lost",
        outcome.completed, outcome.failed_calls, outcome.lost
    );
    if outcome.abandoned > 0 {
        println!(
            "  calls given up a whole window after it closed (requeued): {}",
            outcome.abandoned
        );
    }
}

#[tokio::main]
async fn main() {
    let run = secs_from_env(RUN_ENV, RUN);
    let started = Instant::now();
    let known = QuotaServer::start(started, run);
    let unknown = QuotaServer::start(started, run);
    println!(
        "router goodput: {} models, {WORKERS} workers per scenario, {} s",
        MODELS.len(),
        run.as_secs()
    );
    let (with_limits, without_limits) = tokio::join!(
        drive(router(&known, true), started, run),
        drive(router(&unknown, false), started, run),
    );
    report(
        "limits known (rpm in the registry):",
        &known,
        &with_limits,
        run,
    );
    report(
        "limits unknown (learned from 429 + Retry-After):",
        &unknown,
        &without_limits,
        run,
    );
}
