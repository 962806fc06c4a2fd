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

#![allow(clippy::print_stdout)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitcrew_llm::{
    ChatClient, Endpoint, Expect, Message, Registry, Requirements, RouteRequest, Router,
    RouterSettings,
};
use pitcrew_testkit::{Reply, ScriptedServer};
use serde_json::json;

const RUN: Duration = Duration::from_secs(120);
const WORKERS: usize = 16;
/// (model, requests per minute the server allows).
const MODELS: [(&str, u32); 2] = [("bench/a", 60), ("bench/b", 30)];
/// A request arriving this soon after a 429 was sent may have left the client before the 429
/// arrived; only later arrivals count as ignoring `Retry-After`.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(50);
const REPLY: &str = "```python path=tests/test_calc.py\nfrom calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n";

/// What the quota-enforcing server saw for one model.
#[derive(Debug, Default)]
struct ModelLedger {
    accepted: VecDeque<Instant>,
    ok_in_window: u64,
    ok_total: u64,
    limited: u64,
    /// The last 429: when it was sent and until when it asked the client to wait.
    wait: Option<(Instant, Instant)>,
    early: u64,
}

struct QuotaServer {
    server: ScriptedServer,
    ledgers: Arc<Mutex<HashMap<String, ModelLedger>>>,
}

impl QuotaServer {
    fn start(started: Instant) -> QuotaServer {
        let server = ScriptedServer::start();
        let ledgers: Arc<Mutex<HashMap<String, ModelLedger>>> = Arc::default();
        let quotas: HashMap<&str, u32> = MODELS.into_iter().collect();
        let ledger = Arc::clone(&ledgers);
        let served = AtomicU64::new(0);
        server.respond_with(move |request| {
            let now = request.received_at;
            let model = request.model().unwrap_or_default();
            let quota = quotas.get(model).copied().unwrap_or(0);
            let mut ledgers = ledger.lock().unwrap();
            let ledger = ledgers.entry(model.to_string()).or_default();
            if let Some((sent, until)) = ledger.wait
                && now >= sent + IN_FLIGHT_GRACE
                && now < until
            {
                ledger.early += 1;
            }
            while ledger
                .accepted
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                ledger.accepted.pop_front();
            }
            if ledger.accepted.len() >= quota as usize {
                let frees_at = ledger.accepted[0] + Duration::from_secs(60);
                let wait_secs = frees_at.duration_since(now).as_secs_f64().ceil().max(1.0);
                ledger.wait = Some((now, now + Duration::from_secs_f64(wait_secs)));
                ledger.limited += 1;
                let body = json!({"error": {"message": "Rate limit exceeded", "code": 429}});
                return Reply::status(429, body).header("retry-after", &format!("{wait_secs}"));
            }
            ledger.accepted.push_back(now);
            ledger.ok_total += 1;
            if now.duration_since(started) < RUN {
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

/// A registry of the two models, with or without their `rpm`.
fn registry(limits_known: bool) -> Registry {
    let mut toml = String::from("fallback = [\"bench/a\", \"bench/b\"]\n");
    for (model, rpm) in MODELS {
        toml += &format!(
            "[[models]]\nprovider = \"bench\"\nid = \"{model}\"\ncontext = 32000\nfree = true\nspecializations = [\"balanced\"]\nquality = 0.7\nlatency_ms = 250\n"
        );
        if limits_known {
            toml += &format!("rpm = {rpm}\n");
        }
    }
    Registry::from_toml(&toml, "benchmark registry").expect("benchmark registry is valid")
}

#[derive(Debug, Default)]
struct Outcome {
    completed: u64,
    failed_calls: u64,
    lost: u64,
}

async fn drive(router: Router, started: Instant) -> Outcome {
    let queue: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    let next_task = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let failed_calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (router, queue, next_task, completed, failed_calls) = (
            router.clone(),
            Arc::clone(&queue),
            Arc::clone(&next_task),
            Arc::clone(&completed),
            Arc::clone(&failed_calls),
        );
        workers.push(tokio::spawn(async move {
            while started.elapsed() < RUN {
                // A requeued task first, like the engine's queue; else a new one.
                let task = queue
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| next_task.fetch_add(1, Ordering::Relaxed));
                let request = RouteRequest {
                    messages: vec![
                        Message::system("Write pytest tests."),
                        Message::user(format!("task {task}: tests for calc.add")),
                    ],
                    temperature: 0.2,
                    expect: Expect::Code,
                    requirements: Requirements {
                        max_output_tokens: 1024,
                        ..Requirements::default()
                    },
                    task_budget: None,
                    wait_until: None,
                };
                match router.complete(&request, &mut |_| {}).await {
                    Ok(_) => {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed_calls.fetch_add(1, Ordering::Relaxed);
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
        lost: started_tasks - completed - requeued,
    }
}

fn router(server: &QuotaServer, limits_known: bool) -> Router {
    let endpoint = Endpoint {
        base_url: server.server.base_url(),
        api_key: None,
        api_key_env: String::new(),
    };
    let client = ChatClient::new(Duration::from_secs(30)).expect("client builds");
    Router::new(
        registry(limits_known),
        [("bench".to_string(), endpoint)],
        client,
        RouterSettings::default(),
    )
}

fn report(label: &str, server: &QuotaServer, outcome: &Outcome) {
    let ledgers = server.ledgers.lock().unwrap();
    let minutes = RUN.as_secs_f64() / 60.0;
    let quota: u32 = MODELS.iter().map(|(_, q)| q).sum();
    println!("{label}");
    let empty = ModelLedger::default();
    let mut ok = 0;
    let mut early = 0;
    for (model, per_minute) in MODELS {
        let l = ledgers.get(model).unwrap_or(&empty);
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
        RUN.as_secs_f64(),
        ok as f64 / minutes,
        100.0 * ok as f64 / (f64::from(quota) * minutes)
    );
    println!("  requests sent before Retry-After allowed: {early}");
    println!(
        "  tasks: {} completed, {} router errors (requeued), {} lost",
        outcome.completed, outcome.failed_calls, outcome.lost
    );
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let known = QuotaServer::start(started);
    let unknown = QuotaServer::start(started);
    println!(
        "router goodput: {} models, {WORKERS} workers per scenario, {} s",
        MODELS.len(),
        RUN.as_secs()
    );
    let (with_limits, without_limits) = tokio::join!(
        drive(router(&known, true), started),
        drive(router(&unknown, false), started),
    );
    report("limits known (rpm in the registry):", &known, &with_limits);
    report(
        "limits unknown (learned from 429 + Retry-After):",
        &unknown,
        &without_limits,
    );
}
