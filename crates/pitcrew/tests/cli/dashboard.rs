//! The dashboard in a real browser: `pitcrew serve --workers 1` on a loopback port works tasks
//! against the scripted server while headless Chromium, driven through chromedriver
//! (WebDriver), uses the page as a person would: it gives the token, watches a task run with
//! its generation streaming and then finish, opens a result's findings and its diff. What a
//! model or a user wrote shows as text and runs nothing.
//!
//! Skipped, saying so, where Chromium or chromedriver is missing (`.ci/run` installs both).
//! `PITCREW_DASHBOARD_SCREENSHOT=PATH` saves the screenshot it takes there (docs/dashboard.png
//! is made so, see the README); otherwise it goes to a temporary directory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::Signal;
use pitcrew_testkit::{Reply, SseEvent};
use serde_json::{Value, json};

use crate::serve::api_url;
use crate::support::{GOOD_TEST, MODEL_ID, Project, reply_with_file, signal};

const TOKEN: &str = "cli-dashboard-token-3e81c07a95";

/// What a hostile reply and a hostile user put where the page shows text: each would set
/// `window.pwned` if the page ran it.
const REPLY_MARKUP: &str = "<script>window.pwned = 'reply'</script>";
const FAILURE_MARKUP: &str = "<script>window.pwned = 'failure'</script>";
const DESCRIPTION_MARKUP: &str = "<img src=x onerror=\"window.pwned = 'description'\">";

/// How long a task may take to show on the page, or to finish.
const PATIENCE: Duration = Duration::from_secs(120);

/// A test of the sign function whose stream pauses after its first lines: long enough for
/// the page to show it running, shorter than the scripted models' idle timeout (10 s).
const SIGN_TEST_HEAD: &str =
    "Tests for sign().\n\n```python path=tests/test_sign.py\nfrom src.calc import sign\n\n\n";
const SIGN_TEST_TAIL: &str = "\
def test_sign():
    assert sign(-5) == -1
    assert sign(0) == 0
    assert sign(2) == 1
```
";

/// `pieces` streamed as one completion, pausing `pause` after the first, reporting `cost`.
fn streamed(pieces: &[&str], pause: Duration, cost: f64) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        SseEvent::Data(json!({
            "id": "chatcmpl-dashboard", "object": "chat.completion.chunk", "created": 0,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let mut events = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        if n == 0 {
            events.push(chunk(
                json!({"role": "assistant", "content": piece}),
                Value::Null,
            ));
            events.push(SseEvent::Delay(pause));
        } else {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push(SseEvent::Data(json!({
        "id": "chatcmpl-dashboard", "object": "chat.completion.chunk", "created": 0,
        "model": MODEL_ID, "choices": [],
        "usage": {
            "prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020, "cost": cost,
        },
    })));
    events.push(SseEvent::Done);
    Reply::sse(events)
}

/// A program on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// chromedriver on a free loopback port, stopped when dropped.
struct Chromedriver {
    process: Child,
    url: String,
}

impl Chromedriver {
    async fn start(program: &PathBuf) -> Chromedriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(program)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Chromedriver {
            process,
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        eventually(
            "chromedriver to be ready",
            Duration::from_secs(30),
            async || {
                let answer = reqwest::get(&status)
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()?;
                (answer["value"]["ready"] == true).then_some(())
            },
        )
        .await;
        driver
    }

    async fn browser(&self, chromium: &PathBuf, profile: &std::path::Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Root (as in CI) cannot use Chromium's own sandbox; the page is ours.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--window-size=1440,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session through chromedriver: {e}"))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Waits until `check` gives a value, trying every 200 ms for at most `timeout`.
async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "no {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of the element `css` selects, once it has some that `wanted` accepts.
async fn text_of(browser: &Client, css: &str, wanted: impl Fn(&str) -> bool) -> String {
    eventually(&format!("text at {css}"), PATIENCE, async || {
        let text = browser
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        wanted(&text).then_some(text)
    })
    .await
}

/// Whether the element with the id `id` is displayed.
async fn shown(browser: &Client, id: &str) -> bool {
    let element = browser.find(Locator::Id(id)).await.unwrap();
    element.is_displayed().await.unwrap()
}

/// The results row of `task` once its outcome is `status`.
async fn result_row(browser: &Client, task: &str, status: &str) -> fantoccini::elements::Element {
    let css = format!("#results-rows tr[data-task=\"{task}\"][data-status=\"{status}\"]");
    eventually(&format!("{status} row of {task}"), PATIENCE, async || {
        browser.find(Locator::Css(&css)).await.ok()
    })
    .await
}

async fn submit(client: &reqwest::Client, api: &str, body: Value) -> String {
    let submitted: Value = client
        .post(format!("{api}/tasks"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    submitted["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{submitted}"))
        .to_string()
}

#[test]
fn the_dashboard_shows_tasks_run_and_finish_and_runs_nothing_a_model_wrote() {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
    else {
        // Straight to stderr: the harness would swallow eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: chromium or chromedriver is not on PATH (Debian: apt-get install chromium \
             chromium-driver), so the dashboard's browser test did not run"
        );
        return;
    };
    let p = Project::with_config(&format!("\n[server]\ntoken = \"{TOKEN}\"\n"));
    // First a reply that shows markup while it streams, then tests that fail against the code
    // with markup in their assertion, then one that pauses long enough for a screenshot.
    p.server.push(streamed(
        &[
            &format!("Here are the tests. {REPLY_MARKUP}\n\n"),
            &format!("```python path=tests/test_calc.py\n{GOOD_TEST}```\n"),
        ],
        Duration::from_secs(3),
        0.0123,
    ));
    let disagreeing = format!(
        "from src.calc import double\n\n\ndef test_double_of_three():\n    \
         assert double(3) == 7, \"{FAILURE_MARKUP}\"\n"
    );
    p.server.push(
        Reply::content(&reply_with_file("tests/test_double.py", &disagreeing)).with_usage(
            700,
            90,
            Some(0.0081),
        ),
    );
    p.server.push(streamed(
        &[SIGN_TEST_HEAD, SIGN_TEST_TAIL],
        Duration::from_secs(8),
        0.0047,
    ));

    let mut serve = p.spawn(&["serve", "--bind", "127.0.0.1:0", "--workers", "1"]);
    let (api, _stdout) = api_url(&mut serve);
    let site = api.trim_end_matches("/api/v1").to_string();
    let mut stderr = serve.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let profile = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let driver = Chromedriver::start(&chromedriver).await;
        let browser = driver.browser(&chromium, profile.path()).await;
        let client = reqwest::Client::new();
        browser.goto(&format!("{site}/")).await.unwrap();

        // The page asks for the token before it shows anything.
        let form = eventually("the token form", PATIENCE, async || {
            let form = browser.find(Locator::Id("token-form")).await.ok()?;
            form.is_displayed().await.ok()?.then_some(form)
        })
        .await;
        assert!(!shown(&browser, "dashboard").await);
        // A wrong token is refused, and asked for again.
        let give_token = async |token: &str| {
            let input = form.find(Locator::Id("token-input")).await.unwrap();
            input.send_keys(token).await.unwrap();
            form.find(Locator::Id("token-submit"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        };
        give_token("not-the-token-of-this-server").await;
        text_of(&browser, "#token-error", |t| t.contains("refused")).await;
        give_token(TOKEN).await;
        text_of(&browser, "#connection", |t| t == "live").await;
        assert!(shown(&browser, "dashboard").await);

        // A task submitted through the API shows running, its generation streaming as text.
        let task = json!({"kind": "unit_test", "target": "src/calc.py"});
        let mut described = task.clone();
        described["description"] = json!(DESCRIPTION_MARKUP);
        let first = submit(&client, &api, described).await;
        let generation = format!("#running-tasks article[data-task=\"{first}\"] .generation");
        text_of(&browser, &generation, |t| t.contains(REPLY_MARKUP)).await;
        // Then finished, with its evidence, the user's description shown as it was written.
        let row = result_row(&browser, &first, "completed").await;
        let row_text = row.text().await.unwrap();
        assert!(row_text.contains(DESCRIPTION_MARKUP), "{row_text}");
        assert!(
            row_text.contains("tests: 2 collected, 2 passed"),
            "{row_text}"
        );
        assert!(row_text.contains("scripted/coder-v1"), "{row_text}");

        // Tests that fail against the code: a possible bug, whose failure quotes the reply.
        let second = submit(&client, &api, task.clone()).await;
        let row = result_row(&browser, &second, "possible_bug").await;
        row.find(Locator::Css("details summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let row_text = row.text().await.unwrap();
        assert!(row_text.contains(FAILURE_MARKUP), "{row_text}");

        // A third, caught running for the screenshot.
        let third = submit(&client, &api, task).await;
        let generation = format!("#running-tasks article[data-task=\"{third}\"] .generation");
        text_of(&browser, &generation, |t| {
            t.contains("from src.calc import sign")
        })
        .await;
        let screenshot = browser.screenshot().await.unwrap();
        assert!(screenshot.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let saved = std::env::var_os("PITCREW_DASHBOARD_SCREENSHOT")
            .map_or_else(|| profile.path().join("dashboard.png"), PathBuf::from);
        std::fs::write(&saved, &screenshot).unwrap();

        result_row(&browser, &third, "completed").await;
        // The queue's counts follow.
        for (status, count) in [("completed", "2"), ("possible_bug", "1"), ("failed", "0")] {
            let tile = format!("#queue-counts .tile[data-status=\"{status}\"] .count");
            text_of(&browser, &tile, |t| t == count).await;
        }

        // A result's diff, read with the token and shown as text.
        let row = result_row(&browser, &first, "completed").await;
        row.find(Locator::LinkText("diff"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        text_of(&browser, "#diff-text", |t| {
            t.contains("+def test_double():")
        })
        .await;

        // Nothing a model or a user wrote ran, nor became an element.
        let ran = browser
            .execute(
                "return [typeof window.pwned, document.scripts.length, \
                 document.querySelectorAll('#dashboard img, #dashboard script').length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(ran, json!(["undefined", 1, 0]));
        browser.close().await.unwrap();
    });
    signal(&serve, Signal::SIGTERM);
    let status = serve.wait().unwrap();
    let logs = logs.join().unwrap();
    assert!(status.success(), "serve exited with {status}: {logs}");
}
