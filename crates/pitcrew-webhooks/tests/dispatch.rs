//! The dispatcher against a real receiver on 127.0.0.1 and a real SQLite store: what is
//! sent, how failures are retried, when it gives up, and that it stops when told.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pitcrew_core::{RunEnded, Secret, WebhookEvent, WebhookEventType, WebhookSubscription};
use pitcrew_store::{DeliveryState, Store, WebhookDelivery};
use pitcrew_testkit::{Answer, Gate, WebhookReceiver};
use pitcrew_webhooks::{Dispatched, Dispatcher, Endpoint, MAX_ANSWER_BYTES, Mode};
use tokio::sync::watch;

const SECRET: &str = "dispatch-test-secret-c41d7e9b";

struct Setup {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn store_for(url: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = pitcrew_store::open(&db).await.unwrap();
    store.subscribe_webhooks(vec![WebhookSubscription {
        url: url.into(),
        events: WebhookEventType::ALL.to_vec(),
    }]);
    Setup { store, _dir: dir }
}

fn run_event(id: &str) -> WebhookEvent {
    WebhookEvent::run_finished(&RunEnded {
        id: id.into(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        completed: 2,
        failed: 1,
        possible_bugs: 0,
        retried: 0,
        queued: 0,
        cost_usd: 0.01,
        budget_spent: false,
        stopped: false,
    })
}

fn dispatcher(
    store: &Arc<dyn Store>,
    url: &str,
    timeout: Duration,
    attempts: u32,
) -> Arc<Dispatcher> {
    let endpoint = Endpoint::new(url.into(), Secret::new(SECRET), timeout, attempts);
    Arc::new(Dispatcher::new(Arc::clone(store), vec![endpoint], "test").unwrap())
}

/// Runs `dispatcher` until it has nothing due within `drain`, and returns its tally.
async fn drain(dispatcher: Arc<Dispatcher>, drain: Duration) -> Dispatched {
    let until = tokio::time::Instant::now() + drain;
    let (_mode, watching) = watch::channel(Mode::Drain { until });
    dispatcher.run(watching).await
}

async fn only_delivery(store: &dyn Store) -> WebhookDelivery {
    let mut all = store.webhook_deliveries(10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_signed_and_carries_the_event() {
    let receiver = WebhookReceiver::start(SECRET);
    let setup = store_for(&receiver.url()).await;
    let event = run_event("nightly");
    setup.store.enqueue_webhook_event(&event).await.unwrap();
    let tally = drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 3),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        tally,
        Dispatched {
            delivered: 1,
            retried: 0,
            failed: 0
        }
    );
    let [got] = receiver.deliveries().try_into().unwrap();
    assert!(got.signature_valid, "{:?}", got.headers);
    assert_eq!(got.body, event.body().as_bytes());
    assert_eq!(got.event_id(), Some(event.id.to_string().as_str()));
    assert_eq!(got.header("x-pitcrew-event"), Some("run.finished"));
    assert_eq!(got.header("x-pitcrew-delivery-attempt"), Some("1"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(
        got.header("user-agent")
            .unwrap()
            .starts_with("pitcrew-webhooks/")
    );
    let sent_at: i64 = got.header("x-pitcrew-timestamp").unwrap().parse().unwrap();
    assert!((Utc::now().timestamp() - sent_at).abs() < 60);
    assert!(!format!("{:?}", got.headers).contains(SECRET));
    let json = got.json();
    assert_eq!(json["type"], "run.finished");
    assert_eq!(json["data"]["run"]["id"], "nightly");
    assert_eq!(json["data"]["run"]["failed"], 1);
    let stored = only_delivery(&*setup.store).await;
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!((stored.attempts, stored.last_status_code), (1, Some(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_growing_delays_and_the_same_event_id() {
    let receiver = WebhookReceiver::start(SECRET);
    receiver.push(Answer::status(500));
    receiver.push(Answer::status(500));
    let setup = store_for(&receiver.url()).await;
    let event = run_event("r");
    setup.store.enqueue_webhook_event(&event).await.unwrap();
    let tally = drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 5),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        tally,
        Dispatched {
            delivered: 1,
            retried: 2,
            failed: 0
        }
    );
    let got = receiver.deliveries();
    assert_eq!(got.len(), 3);
    for (n, delivery) in got.iter().enumerate() {
        assert!(delivery.signature_valid);
        assert_eq!(delivery.event_id(), Some(event.id.to_string().as_str()));
        assert_eq!(
            delivery.body,
            event.body().as_bytes(),
            "the same body every time"
        );
        assert_eq!(
            delivery.header("x-pitcrew-delivery-attempt"),
            Some((n + 1).to_string().as_str())
        );
    }
    // 1 s then 2 s, each ±20 %.
    let first_gap = got[1].received_at - got[0].received_at;
    let second_gap = got[2].received_at - got[1].received_at;
    assert!(first_gap >= Duration::from_millis(800), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1600), "{second_gap:?}");
    let stored = only_delivery(&*setup.store).await;
    assert_eq!(
        (stored.state, stored.attempts),
        (DeliveryState::Delivered, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_429_is_honoured() {
    let receiver = WebhookReceiver::start(SECRET);
    receiver.push(Answer::status(429).header("retry-after", "3"));
    let setup = store_for(&receiver.url()).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 3),
        Duration::from_secs(20),
    )
    .await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 2);
    let waited = got[1].received_at - got[0].received_at;
    assert!(
        waited >= Duration::from_millis(2900),
        "came back after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_failing_is_given_up_with_its_last_error() {
    let receiver = WebhookReceiver::start(SECRET);
    // A huge answer: only its start is read, and less is kept.
    receiver.then_answer(Answer::status(502).body(&"bad gateway ".repeat(200_000)));
    let setup = store_for(&receiver.url()).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    let tally = drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 2),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        tally,
        Dispatched {
            delivered: 0,
            retried: 1,
            failed: 1
        }
    );
    assert_eq!(receiver.deliveries().len(), 2);
    let stored = only_delivery(&*setup.store).await;
    assert_eq!(stored.state, DeliveryState::Failed);
    assert_eq!((stored.attempts, stored.last_status_code), (2, Some(502)));
    let error = stored.last_error.unwrap();
    assert!(
        error.starts_with("HTTP 502: bad gateway bad gateway"),
        "{error}"
    );
    assert!(error.len() < MAX_ANSWER_BYTES, "{} bytes kept", error.len());
    assert!(stored.finished_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_times_out() {
    let receiver = WebhookReceiver::start(SECRET);
    let never = Gate::new();
    receiver.then_answer(Answer::ok().hold(&never));
    let setup = store_for(&receiver.url()).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    let started = Instant::now();
    let tally = drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(1), 1),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(tally.failed, 1);
    let stored = only_delivery(&*setup.store).await;
    assert_eq!(stored.last_status_code, None);
    assert_eq!(
        stored.last_error.as_deref(),
        Some("no answer within 1 s (timeout_secs)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_a_closed_port_is_a_failure() {
    let receiver = WebhookReceiver::start(SECRET);
    receiver.then_answer(Answer::status(301).header("location", "https://elsewhere.example/"));
    let setup = store_for(&receiver.url()).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 1),
        Duration::from_secs(5),
    )
    .await;
    let error = only_delivery(&*setup.store).await.last_error.unwrap();
    assert!(
        error.contains("HTTP 301: redirects are not followed"),
        "{error}"
    );
    assert!(error.contains("https://elsewhere.example/"), "{error}");

    // Nothing listens there any more.
    let gone = receiver.url();
    drop(receiver);
    let setup = store_for(&gone).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    drain(
        dispatcher(&setup.store, &gone, Duration::from_secs(5), 1),
        Duration::from_secs(5),
    )
    .await;
    let error = only_delivery(&*setup.store).await.last_error.unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_leaves_what_falls_due_later_and_stop_is_at_once() {
    let receiver = WebhookReceiver::start(SECRET);
    receiver.then_answer(Answer::status(500));
    let setup = store_for(&receiver.url()).await;
    setup
        .store
        .enqueue_webhook_event(&run_event("r"))
        .await
        .unwrap();
    // The first retry comes after about a second: a half-second drain does not wait for it.
    let started = Instant::now();
    let tally = drain(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(5), 5),
        Duration::from_millis(500),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        tally,
        Dispatched {
            delivered: 0,
            retried: 1,
            failed: 0
        }
    );
    assert_eq!(
        only_delivery(&*setup.store).await.state,
        DeliveryState::Retrying
    );

    // Serving, then told to stop: it stops without waiting for the endpoint.
    let held = Gate::new();
    receiver.then_answer(Answer::ok().hold(&held));
    let (mode, watching) = watch::channel(Mode::Deliver);
    let running = tokio::spawn(
        dispatcher(&setup.store, &receiver.url(), Duration::from_secs(30), 5).run(watching),
    );
    let arrived = tokio::task::block_in_place(|| receiver.wait_for(2, Duration::from_secs(10)));
    assert!(arrived, "the retry never came");
    let stopped = Instant::now();
    mode.send(Mode::Stop).unwrap();
    running.await.unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(2));
    // Its lease holds it until it expires; then any dispatcher sends it again.
    assert_eq!(
        only_delivery(&*setup.store).await.state,
        DeliveryState::Retrying
    );
    held.open();
}
