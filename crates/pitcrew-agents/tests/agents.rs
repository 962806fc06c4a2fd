//! External agents run for real: fake `openhands`, `docker` and agent programs (POSIX sh,
//! in `fixtures/`) first on the child's PATH, a loopback listener standing in for the
//! gateway, and the real sandbox around them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pitcrew_agents::{
    ExternalRun, FailureClass, GatewayAccess, Job, RuntimeSpec, TranscriptEntry, run,
};
use pitcrew_core::Secret;
use tempfile::TempDir;

const TOKEN: &str = "pcs-session-7d1e9a4b3c";
const PROVIDER_KEY: &str = "sk-or-secret";

/// The Python interpreter outside the sandbox: (`sys.executable`, `sys.prefix`).
fn python() -> &'static (PathBuf, PathBuf) {
    static PYTHON: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable); print(sys.prefix)"])
            .output()
            .expect("python3 runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let exe = PathBuf::from(lines.next().unwrap()).canonicalize().unwrap();
        (exe, PathBuf::from(lines.next().unwrap()))
    })
}

/// A stand-in for the gateway: answers every HTTP request with `{}` and keeps the
/// requests.
struct Gateway {
    access: GatewayAccess,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body `Content-Length` announces (2 bytes here).
                while let Ok(n) = stream.read(&mut buf) {
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if n == 0 || text.contains("\r\n\r\n{}") {
                        break;
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"ok\": \"yes\"}",
                );
            }
        });
        Self {
            access: GatewayAccess {
                base_url: format!("http://127.0.0.1:{port}/v1"),
                port,
                token: Secret::new(TOKEN),
                model: "pitcrew".into(),
            },
            requests,
        }
    }
}

/// One task's directories: fake programs, a repository with `.git/hooks`, a worktree, a
/// scratch directory, and a directory outside all of them.
struct Fixture {
    root: TempDir,
    gateway: Gateway,
    marker: String,
}

impl Fixture {
    fn new() -> Self {
        let root = TempDir::new().unwrap();
        let fakes = root.path().join("fakes");
        std::fs::create_dir(&fakes).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["openhands", "docker", "agent"] {
            std::fs::copy(source.join(name), fakes.join(name)).unwrap();
        }
        for dir in ["repo/.git/hooks", "worktree", "scratch", "outside"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("repo/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        Self {
            root,
            gateway: Gateway::start(),
            marker: unique_sleep(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn home_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.path("scratch/home").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn env_of(&self, file: &str) -> BTreeMap<String, String> {
        self.home_file(file)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The runtime `type` with the test's settings: the mode, Python, the paths the
    /// escape attempts use, and `extra` TOML lines.
    fn spec(&self, kind: &str, mode: &str, extra: &str) -> RuntimeSpec {
        let text = format!(
            "type = \"{kind}\"\n\
             read = [\"{prefix}\"]\n\
             env = [\"FAKE_PASSED\"]\n\
             {extra}\n\
             [set]\n\
             FAKE_MODE = \"{mode}\"\n\
             PY = \"{py}\"\n\
             FAKE_SLEEP = \"{marker}\"\n\
             FAKE_GIT_DIR = \"{git}\"\n\
             FAKE_OUTSIDE = \"{outside}\"\n",
            prefix = python().1.display(),
            py = python().0.display(),
            marker = self.marker,
            git = self.path("repo/.git").display(),
            outside = self.path("outside").display(),
        );
        let spec: RuntimeSpec = toml::from_str(&text).unwrap();
        spec.check("fake").unwrap();
        spec
    }

    /// The variables the agent could inherit: fakes first on PATH, a provider key, one
    /// variable the config passes and one it does not.
    fn parent_env(&self) -> Vec<(OsString, OsString)> {
        let path = format!(
            "{}:{}",
            self.path("fakes").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        [
            ("PATH", path.as_str()),
            ("LANG", "C.UTF-8"),
            ("OPENROUTER_API_KEY", PROVIDER_KEY),
            ("FAKE_PASSED", "passed-value"),
            ("UNLISTED", "not-passed"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    async fn run(&self, spec: &RuntimeSpec, prompt: &str) -> (ExternalRun, Vec<TranscriptEntry>) {
        self.run_with(spec, prompt, &[]).await
    }

    async fn run_with(
        &self,
        spec: &RuntimeSpec,
        prompt: &str,
        targets: &[String],
    ) -> (ExternalRun, Vec<TranscriptEntry>) {
        let mut seen = Vec::new();
        let mut on_event = |e: &TranscriptEntry| seen.push(e.clone());
        let worktree = self.path("worktree");
        let scratch = self.path("scratch");
        let git_dir = self.path("repo/.git");
        let job = Job {
            name: "fake",
            task_id: "task-1",
            attempt: 2,
            worktree: &worktree,
            scratch: &scratch,
            git_dir: Some(&git_dir),
            prompt,
            targets,
            gateway: &self.gateway.access,
            parent_env: Some(self.parent_env()),
            on_event: &mut on_event,
        };
        let result = run(spec, job).await;
        (result, seen)
    }
}

/// A `sleep` argument no other process has: found again in /proc by [`running_with_arg`].
fn unique_sleep() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}.{n}{nanos:09}", 300 + std::process::id() % 600)
}

/// Host pids of live (not zombie) processes with `arg` among their arguments.
fn running_with_arg(arg: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !matches!(
                    s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
                    Some('Z' | 'X')
                )
            });
            alive && cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes())
        })
        .collect()
}

async fn assert_gone(arg: &str) {
    for _ in 0..200 {
        if running_with_arg(arg).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("`sleep {arg}` still runs: {:?}", running_with_arg(arg));
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", path.display());
}

fn failure_class(run: &ExternalRun) -> FailureClass {
    match &run.outcome {
        Ok(finish) => panic!(
            "expected a failure, got {finish:?}; transcript {:#?}",
            run.transcript
        ),
        Err(f) => f.class,
    }
}

fn kinds(transcript: &[TranscriptEntry]) -> Vec<&str> {
    transcript.iter().map(|e| e.kind.as_str()).collect()
}

// ---- openhands-cli ----

#[tokio::test]
async fn openhands_cli_runs_with_the_gateway_only_and_finishes() {
    let f = Fixture::new();
    let spec = f.spec("openhands-cli", "finish", "max_iterations = 12");
    let (result, seen) = f.run(&spec, "Add a greeting").await;
    let finish = result
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {:#?}", result.transcript));
    assert_eq!(finish.summary.as_deref(), Some("created hello.txt"));
    assert_eq!(result.exit_code, Some(0));

    // The command line, exactly.
    assert_eq!(
        f.home_file("argv"),
        "--headless\n--json\n--override-with-envs\n-t\nAdd a greeting\n"
    );
    let program = f.path("fakes/openhands").canonicalize().unwrap();
    assert_eq!(
        result.argv,
        [
            program.display().to_string().as_str(),
            "--headless",
            "--json",
            "--override-with-envs",
            "-t",
            "Add a greeting"
        ]
    );

    // The environment: the gateway, its token, nothing of the parent's secrets.
    let env = f.env_of("env");
    let expect = [
        ("LLM_MODEL", "openai/pitcrew".to_owned()),
        ("LLM_API_KEY", TOKEN.to_owned()),
        ("LLM_BASE_URL", f.gateway.access.base_url.clone()),
        ("LLM_NATIVE_TOOL_CALLING", "false".to_owned()),
        ("MAX_ITERATIONS", "12".to_owned()),
        ("HOME", f.path("scratch/home").display().to_string()),
        (
            "OPENHANDS_WORK_DIR",
            f.path("worktree").display().to_string(),
        ),
        ("FAKE_PASSED", "passed-value".to_owned()),
        ("FAKE_MODE", "finish".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
    ];
    for (name, value) in expect {
        assert_eq!(env.get(name), Some(&value), "{name}");
    }
    assert!(env["PATH"].starts_with(&f.path("fakes").display().to_string()));
    for absent in ["OPENROUTER_API_KEY", "UNLISTED", "OPENAI_API_KEY"] {
        assert!(!env.contains_key(absent), "{absent} reached the agent");
    }
    assert!(!f.home_file("env").contains(PROVIDER_KEY));

    // It worked in the worktree and reached the gateway with the session token.
    assert_eq!(
        std::fs::read_to_string(f.path("worktree/hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        f.home_file("gateway-reply").contains("\"ok\": \"yes\""),
        "{}",
        f.home_file("gateway-reply")
    );
    let requests = f.gateway.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("POST /v1/chat/completions "),
        "{}",
        requests[0]
    );
    assert!(
        requests[0].contains(&format!("Authorization: Bearer {TOKEN}")),
        "{}",
        requests[0]
    );

    // The transcript: events and text, unknown events kept, the token redacted, each entry
    // reported as it came.
    let k = kinds(&result.transcript);
    for kind in ["text", "action", "observation", "event", "finish"] {
        assert!(k.contains(&kind), "{kind} missing from {k:?}");
    }
    let all: String = result
        .transcript
        .iter()
        .map(|e| format!("{}\n", e.text))
        .collect();
    assert!(all.contains("terminal: echo hello > hello.txt"), "{all}");
    assert!(all.contains("SomethingNew"), "{all}");
    assert!(all.contains("debug: key=[REDACTED]"), "{all}");
    assert!(!all.contains(TOKEN));
    assert!(!result.argv.concat().contains(TOKEN));
    assert_eq!(seen, result.transcript);
}

#[tokio::test]
async fn an_error_event_then_exit_0_is_an_agent_error() {
    let f = Fixture::new();
    let (result, _) = f.run(&f.spec("openhands-cli", "error", ""), "task").await;
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    let message = &result.outcome.unwrap_err().message;
    assert!(
        message.contains("LLMError: the gateway said no"),
        "{message}"
    );
}

#[tokio::test]
async fn looping_condensations_are_stopped_early_as_stuck() {
    let f = Fixture::new();
    let started = Instant::now();
    let (result, _) = f
        .run(
            &f.spec("openhands-cli", "condense", "timeout_secs = 120"),
            "task",
        )
        .await;
    assert_eq!(failure_class(&result), FailureClass::Stuck);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(result.exit_code, None, "stopped, not ended");
    let message = result.outcome.unwrap_err().message;
    assert!(message.contains("3 condensations"), "{message}");
    assert_gone(&f.marker).await;
}

#[tokio::test]
async fn identical_actions_are_stopped_early_as_stuck() {
    let f = Fixture::new();
    let started = Instant::now();
    let spec = f.spec(
        "openhands-cli",
        "same-action",
        "timeout_secs = 120\nstuck_after = 4",
    );
    let (result, _) = f.run(&spec, "task").await;
    assert_eq!(failure_class(&result), FailureClass::Stuck);
    assert!(started.elapsed() < Duration::from_secs(20));
    let message = result.outcome.unwrap_err().message;
    assert!(message.contains("4 times"), "{message}");
    let actions = result
        .transcript
        .iter()
        .filter(|e| e.kind == "action")
        .count();
    assert_eq!(actions, 4, "stopped at the 4th, not after the 5th");
    assert_gone(&f.marker).await;
}

#[tokio::test]
async fn a_hanging_agent_times_out_and_is_killed() {
    let f = Fixture::new();
    let (result, _) = f
        .run(&f.spec("openhands-cli", "hang", "timeout_secs = 2"), "task")
        .await;
    assert_eq!(failure_class(&result), FailureClass::Timeout);
    assert!(result.duration < Duration::from_secs(10));
    assert_gone(&f.marker).await;
}

#[tokio::test]
async fn an_agent_that_prints_no_event_failed_to_start() {
    let f = Fixture::new();
    let (result, _) = f.run(&f.spec("openhands-cli", "silent", ""), "task").await;
    assert_eq!(failure_class(&result), FailureClass::Startup);
    let message = result.outcome.unwrap_err().message;
    assert!(
        message.contains("no events") && message.contains("LLM_MODEL is not set"),
        "{message}"
    );
    assert!(result.transcript.iter().any(|e| e.kind == "stderr"));
}

#[tokio::test]
async fn a_missing_or_unexecutable_program_is_a_misconfiguration_naming_the_field() {
    let f = Fixture::new();
    let spec = f.spec(
        "openhands-cli",
        "finish",
        "program = \"no-such-openhands-5f1c\"",
    );
    let (result, _) = f.run(&spec, "task").await;
    assert_eq!(failure_class(&result), FailureClass::Misconfigured);
    let message = result.outcome.unwrap_err().message;
    assert!(
        message.starts_with(
            "runtimes.fake.program: cannot run `no-such-openhands-5f1c`: not found on PATH"
        ),
        "{message}"
    );

    let plain = f.path("fakes/not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let spec = f.spec(
        "openhands-cli",
        "finish",
        &format!("program = \"{}\"", plain.display()),
    );
    let (result, _) = f.run(&spec, "task").await;
    assert_eq!(failure_class(&result), FailureClass::Misconfigured);
    let message = result.outcome.unwrap_err().message;
    assert!(message.contains("is not an executable file"), "{message}");
}

#[tokio::test]
async fn the_agent_cannot_write_outside_its_directories_or_reach_other_ports() {
    let f = Fixture::new();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let port = other.local_addr().unwrap().port();
    let spec = f.spec("openhands-cli", "escape", "");
    let RuntimeSpec::OpenhandsCli(mut cli) = spec else {
        unreachable!()
    };
    cli.common
        .set
        .insert("FAKE_OTHER_PORT".into(), port.to_string());
    let (result, _) = f.run(&RuntimeSpec::OpenhandsCli(cli.clone()), "task").await;
    assert!(result.outcome.is_ok(), "{:#?}", result.transcript);
    let text: Vec<&str> = result
        .transcript
        .iter()
        .filter(|e| e.kind == "text")
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        text,
        [
            "hook-denied",
            "outside-denied",
            "git-readable",
            "other-port-refused 13"
        ],
        "{:#?}",
        result.transcript
    );
    assert!(!f.path("repo/.git/hooks/pre-commit").exists());
    assert!(!f.path("outside/stolen").exists());
    assert!(
        other.accept().is_err(),
        "a connection reached the other port"
    );

    // Control: with `network = "full"` the other port is reachable, so the refusal above
    // is the gateway-only rule at work.
    cli.common.network = pitcrew_agents::Network::Full;
    let (result, _) = f.run(&RuntimeSpec::OpenhandsCli(cli), "task").await;
    assert!(
        result
            .transcript
            .iter()
            .any(|e| e.text == "other-port-connected"),
        "{:#?}",
        result.transcript
    );
}

#[tokio::test]
async fn a_prompt_over_100_kib_goes_through_a_file() {
    let f = Fixture::new();
    let prompt = "fix it. ".repeat(20 * 1024);
    let (result, _) = f.run(&f.spec("openhands-cli", "finish", ""), &prompt).await;
    assert!(result.outcome.is_ok(), "{:?}", result.outcome);
    let file = f.path("scratch/prompt.md");
    assert_eq!(
        f.home_file("argv"),
        format!(
            "--headless\n--json\n--override-with-envs\n-f\n{}\n",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), prompt);
}

// ---- openhands-docker ----

#[tokio::test]
async fn openhands_docker_runs_the_headless_image_and_reads_its_trajectory() {
    let f = Fixture::new();
    let spec = f.spec(
        "openhands-docker",
        "finish",
        "runtime_image = \"runtime:0.59-nikolaik\"\nmax_iterations = 9",
    );
    let (result, _) = f.run(&spec, "Fix the bug").await;
    let finish = result
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {:#?}", result.transcript));
    assert_eq!(finish.summary.as_deref(), Some("all done"));

    let uid = nix::unistd::getuid();
    let scratch = f.path("scratch");
    let expected = [
        "run".to_owned(),
        "--rm".into(),
        "--name".into(),
        "pitcrew-task-1-2".into(),
        "--network".into(),
        "host".into(),
        "-e".into(),
        format!("SANDBOX_USER_ID={uid}"),
        "-e".into(),
        format!(
            "SANDBOX_VOLUMES={}:/workspace:rw",
            f.path("worktree").display()
        ),
        "-e".into(),
        "LLM_MODEL=openai/pitcrew".into(),
        "-e".into(),
        "LLM_API_KEY".into(),
        "-e".into(),
        format!("LLM_BASE_URL=http://127.0.0.1:{}/v1", f.gateway.access.port),
        "-e".into(),
        "LLM_NATIVE_TOOL_CALLING=false".into(),
        "-e".into(),
        "MAX_ITERATIONS=9".into(),
        "-e".into(),
        "SAVE_TRAJECTORY_PATH=/trajectories/trajectory.json".into(),
        "-e".into(),
        "LOG_ALL_EVENTS=true".into(),
        "-e".into(),
        "SANDBOX_RUNTIME_CONTAINER_IMAGE=runtime:0.59-nikolaik".into(),
        "-e".into(),
        "FAKE_PASSED".into(),
    ];
    let argv = f.home_file("docker-argv");
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv[..expected.len()], expected, "{argv:#?}");
    let tail = [
        "-v".to_owned(),
        format!("{}:/trajectories", scratch.join("trajectories").display()),
        "-v".into(),
        "/var/run/docker.sock:/var/run/docker.sock".into(),
        "docker.all-hands.dev/all-hands-ai/openhands:0.59".into(),
        "python".into(),
        "-m".into(),
        "openhands.core.main".into(),
        "-t".into(),
        "Fix the bug".into(),
    ];
    assert_eq!(argv[argv.len() - tail.len()..], tail, "{argv:#?}");
    // `set` goes into the container as given.
    assert!(argv.contains(&"FAKE_MODE=finish"), "{argv:#?}");

    // The client has the token (for `-e LLM_API_KEY`), never in its arguments; no provider key.
    let env = f.env_of("docker-env");
    assert_eq!(env.get("LLM_API_KEY").map(String::as_str), Some(TOKEN));
    assert!(!f.home_file("docker-argv").contains(TOKEN));
    assert!(!f.home_file("docker-env").contains(PROVIDER_KEY));
    assert!(!env.contains_key("UNLISTED"));

    // The container was removed afterwards, and the trajectory is in the transcript.
    assert_eq!(f.home_file("docker-rm"), "rm -f pitcrew-task-1-2\n");
    let k = kinds(&result.transcript);
    assert!(k.contains(&"action") && k.contains(&"finish"), "{k:?}");
}

#[tokio::test]
async fn a_docker_trajectory_ending_in_error_is_an_agent_error_despite_exit_0() {
    let f = Fixture::new();
    let (result, _) = f
        .run(&f.spec("openhands-docker", "error", ""), "task")
        .await;
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    let message = result.outcome.unwrap_err().message;
    assert!(message.contains("agent state error"), "{message}");
    assert_eq!(f.home_file("docker-rm"), "rm -f pitcrew-task-1-2\n");
}

#[tokio::test]
async fn a_docker_trajectory_of_condensations_is_stuck() {
    let f = Fixture::new();
    let (result, _) = f
        .run(&f.spec("openhands-docker", "condense", ""), "task")
        .await;
    assert_eq!(failure_class(&result), FailureClass::Stuck);
}

#[tokio::test]
async fn docker_without_a_trajectory_is_startup_or_agent_error() {
    let f = Fixture::new();
    let (result, _) = f
        .run(&f.spec("openhands-docker", "no-image", ""), "task")
        .await;
    assert_eq!(failure_class(&result), FailureClass::Startup);
    assert!(
        result
            .outcome
            .unwrap_err()
            .message
            .contains("Unable to find image")
    );

    let (result, _) = f
        .run(&f.spec("openhands-docker", "no-trajectory", ""), "task")
        .await;
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    assert!(
        result
            .outcome
            .unwrap_err()
            .message
            .contains("without its trajectory")
    );
}

#[tokio::test]
async fn a_hanging_container_times_out_and_is_removed() {
    let f = Fixture::new();
    let (result, _) = f
        .run(
            &f.spec("openhands-docker", "hang", "timeout_secs = 2"),
            "task",
        )
        .await;
    assert_eq!(failure_class(&result), FailureClass::Timeout);
    assert_eq!(f.home_file("docker-rm"), "rm -f pitcrew-task-1-2\n");
    assert_gone(&f.marker).await;
}

#[tokio::test]
async fn a_cancelled_docker_run_still_removes_its_container() {
    let f = Fixture::new();
    let spec = f.spec("openhands-docker", "hang", "timeout_secs = 120");
    let mut running = Box::pin(f.run(&spec, "task"));
    let argv = f.path("scratch/home/docker-argv");
    tokio::select! {
        _ = &mut running => panic!("finished early"),
        _ = wait_for_file(&argv) => {}
    }
    drop(running);
    let removed = wait_for_file(&f.path("scratch/home/docker-rm")).await;
    assert_eq!(removed, "rm -f pitcrew-task-1-2\n");
    assert_gone(&f.marker).await;
}

// ---- command ----

fn command_spec(f: &Fixture, mode: &str, extra: &str) -> RuntimeSpec {
    let argv = r#"argv = ["agent", "--prompt", "{prompt}", "--file={prompt_file}", "--all={targets}", "{model}@{base_url} in {worktree}", "--", "{targets}"]"#;
    f.spec("command", mode, &format!("{argv}\n{extra}"))
}

#[tokio::test]
async fn a_command_agent_gets_its_arguments_literally_and_edits_the_targets() {
    let f = Fixture::new();
    std::fs::write(f.path("worktree/a.py"), "a\n").unwrap();
    let targets = vec!["a.py".to_owned(), "b c.py".to_owned()];
    let prompt = r#"it's "quoted" $(touch pwned) `touch pwned2` {worktree} and  spaces"#;
    let (result, _) = f
        .run_with(&command_spec(&f, "ok", ""), prompt, &targets)
        .await;
    let finish = result
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {:#?}", result.transcript));
    assert_eq!(finish.summary.as_deref(), Some("edited 2 files"));

    let args = f.home_file("args");
    let args: Vec<&str> = args.split('\0').collect();
    let worktree = f.path("worktree").display().to_string();
    let prompt_file = f.path("scratch/prompt.txt").display().to_string();
    let base_url = &f.gateway.access.base_url;
    assert_eq!(
        args,
        [
            "--prompt",
            prompt,
            &format!("--file={prompt_file}"),
            "--all=a.py b c.py",
            &format!("pitcrew@{base_url} in {worktree}"),
            "--",
            "a.py",
            "b c.py",
            "",
        ]
    );
    assert_eq!(std::fs::read_to_string(&prompt_file).unwrap(), prompt);
    assert!(!f.path("worktree/pwned").exists() && !f.path("worktree/pwned2").exists());
    assert_eq!(
        std::fs::read_to_string(f.path("worktree/a.py")).unwrap(),
        "a\nedited\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("worktree/b c.py")).unwrap(),
        "edited\n"
    );

    let env = f.env_of("env");
    for (name, value) in [
        ("OPENAI_API_KEY", TOKEN),
        ("LLM_API_KEY", TOKEN),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("OPENAI_API_BASE", base_url.as_str()),
        ("LLM_BASE_URL", base_url.as_str()),
        ("LLM_MODEL", "openai/pitcrew"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(!env.contains_key("OPENROUTER_API_KEY") && !env.contains_key("UNLISTED"));
}

#[tokio::test]
async fn a_command_agent_failing_is_an_agent_error_with_its_stderr() {
    let f = Fixture::new();
    let (result, _) = f.run(&command_spec(&f, "fail", ""), "task").await;
    assert_eq!(result.exit_code, Some(3));
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    let message = result.outcome.unwrap_err().message;
    assert!(
        message.contains("exit code 3") && message.contains("cannot parse the diff"),
        "{message}"
    );
}

#[tokio::test]
async fn an_outcome_file_decides_over_the_exit_status() {
    let f = Fixture::new();
    let extra = "outcome_file = \"outcome.json\"";
    let (result, _) = f
        .run(&command_spec(&f, "report-error", extra), "task")
        .await;
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    assert!(
        result
            .outcome
            .unwrap_err()
            .message
            .contains("could not fix it")
    );

    let (result, _) = f
        .run(&command_spec(&f, "report-finished", extra), "task")
        .await;
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(result.outcome.unwrap().summary.as_deref(), Some("fixed it"));

    // The earlier attempt's file is gone before the next one: silence is no verdict.
    let (result, _) = f.run(&command_spec(&f, "ok", extra), "task").await;
    assert_eq!(failure_class(&result), FailureClass::AgentError);
    assert!(
        result
            .outcome
            .unwrap_err()
            .message
            .contains("did not write its outcome file")
    );
}

#[tokio::test]
async fn a_command_agent_that_is_not_there_is_a_misconfiguration() {
    let f = Fixture::new();
    let spec = f.spec(
        "command",
        "ok",
        "argv = [\"no-such-agent-5f1c\", \"{prompt}\"]",
    );
    let (result, _) = f.run(&spec, "task").await;
    assert_eq!(failure_class(&result), FailureClass::Misconfigured);
    let message = result.outcome.unwrap_err().message;
    assert!(
        message.starts_with("runtimes.fake.argv: cannot run `no-such-agent-5f1c`"),
        "{message}"
    );
}
