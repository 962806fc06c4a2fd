//! The fixture every test starts from: a Python project in a git repository, configured to
//! call a scripted server, and helpers to drive the binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

pub use pitcrew_testkit::{PgSchema, postgres_or_skip};
use pitcrew_testkit::{ScriptedServer, TempRepo};
use serde_json::Value;

/// The API key the tests hand to pitcrew; it must never show up anywhere but the HTTP header.
pub const SENTINEL_KEY: &str = "sk-sentinel-7f3a9c1e-do-not-leak";
pub const KEY_VAR: &str = "LOCAL_LLM_KEY";
pub const MODEL_ID: &str = "scripted/coder-v1";

pub const CALC_PY: &str = "\
def double(x):
    return x * 2


def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0
";

pub const GOOD_TEST: &str = "\
from src.calc import double, sign


def test_double():
    assert double(3) == 6


def test_sign():
    assert sign(-5) == -1
    assert sign(0) == 0
    assert sign(2) == 1
";

/// A reply that writes `path` with `content`, the way the prompt asks for it.
pub fn reply_with_file(path: &str, content: &str) -> String {
    format!(
        "Here are the tests.\n\n```python path={path}\n{content}```\n\nThey cover both functions."
    )
}

pub struct Project {
    pub repo: TempRepo,
    pub server: ScriptedServer,
    /// Scratch space outside the repository.
    pub scratch: tempfile::TempDir,
}

impl Project {
    /// A repository with `src/calc.py` and a pitcrew.toml pointing at a fresh scripted server.
    pub fn new() -> Project {
        Self::with_config("")
    }

    /// Like [`Project::new`], with `extra` appended to pitcrew.toml.
    pub fn with_config(extra: &str) -> Project {
        let server = ScriptedServer::start();
        let repo = TempRepo::with_files(&[
            ("src/__init__.py", ""),
            ("src/calc.py", CALC_PY),
            ("README.md", "# calc\n"),
        ]);
        let config = format!(
            "[providers.local]\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\n\n\
             [presets.local]\nprovider = \"local\"\nmodel = \"{MODEL_ID}\"\n\n\
             [models]\ndefault = \"local\"\nrequest_timeout_secs = 30\nidle_timeout_secs = 10\n\
             max_wait_secs = 5\nmax_iterations = 1\n\n\
             [workers]\ncount = 1\nlease_ttl_secs = 2\nretry_backoff_secs = 0.2\n{extra}",
            server.base_url()
        );
        repo.write("pitcrew.toml", &config);
        repo.commit("configure pitcrew");
        Project {
            repo,
            server,
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// `pitcrew` in the repository, with the key in its environment and nothing else of ours.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
        self.prepare(cmd.current_dir(self.path()));
        cmd
    }

    fn prepare<C: CommandEnv>(&self, cmd: &mut C) {
        for (name, _) in std::env::vars() {
            if name.starts_with("PITCREW_") || name == "RUST_LOG" {
                cmd.remove(&name);
            }
        }
        cmd.set(KEY_VAR, SENTINEL_KEY);
        // One rerun keeps these tests quick; flakiness detection is tested in pitcrew-validate.
        cmd.set("PITCREW_VALIDATION_RERUNS", "1");
        // A stop gives running tasks this long before they go back to the queue.
        cmd.set("PITCREW_WORKERS_SHUTDOWN_GRACE_SECS", "1");
        cmd.set("NO_COLOR", "1");
        cmd.set("GIT_CONFIG_GLOBAL", "/dev/null");
        cmd.set("GIT_CONFIG_NOSYSTEM", "1");
        // Worktrees go under the cache directory: this project's scratch space.
        cmd.set("XDG_CACHE_HOME", &self.cache_home().to_string_lossy());
    }

    pub fn cache_home(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// Everything under the directory pitcrew keeps this project's worktrees in.
    pub fn worktree_files(&self) -> Vec<PathBuf> {
        files_under(&self.cache_home().join("pitcrew/worktrees"))
    }

    /// Starts `pitcrew args…` in the background (for crash tests).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with(args, &[])
    }

    /// [`Project::spawn`] with extra environment variables.
    pub fn spawn_with(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
        cmd.current_dir(self.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.prepare(&mut cmd);
        cmd.envs(env.iter().copied());
        cmd.spawn().unwrap()
    }

    /// Runs `pitcrew args… --json` successfully and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "pitcrew {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Submits one unit_test task for `target`; returns its id.
    pub fn submit(&self, target: &str, extra: &[&str]) -> String {
        let mut args = vec!["submit", "--kind", "unit_test", "--target", target];
        args.extend_from_slice(extra);
        let out = self.json(&args);
        out[0]["id"].as_str().unwrap().to_string()
    }

    pub fn task(&self, id: &str) -> Value {
        self.json(&["status", id])
    }

    pub fn attempts(&self, id: &str) -> Vec<Value> {
        self.json(&["show", id])["attempts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The branches pitcrew created.
    pub fn pitcrew_branches(&self) -> Vec<String> {
        self.repo
            .git(&[
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads/pitcrew/",
            ])
            .lines()
            .map(String::from)
            .collect()
    }
}

/// The environment operations shared by assert_cmd's and std's `Command`.
trait CommandEnv {
    fn set(&mut self, key: &str, value: &str);
    fn remove(&mut self, key: &str);
}

impl CommandEnv for assert_cmd::Command {
    fn set(&mut self, key: &str, value: &str) {
        self.env(key, value);
    }
    fn remove(&mut self, key: &str) {
        self.env_remove(key);
    }
}

impl CommandEnv for std::process::Command {
    fn set(&mut self, key: &str, value: &str) {
        self.env(key, value);
    }
    fn remove(&mut self, key: &str) {
        self.env_remove(key);
    }
}

/// Sends `signal` to a `pitcrew` process started with [`Project::spawn`].
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Queues one unit_test task whose first model call hangs until `gate` opens (forever if it
/// never does) and whose second call succeeds; starts `pitcrew run --name NAME` and waits
/// until that worker holds the task and is waiting for the model. Returns the task and the
/// worker.
pub fn worker_stuck_in_a_call(
    p: &Project,
    gate: &pitcrew_testkit::Gate,
    name: &str,
    first_reply: &str,
) -> (String, Child) {
    p.server.push(
        pitcrew_testkit::Reply::content(&reply_with_file("tests/test_calc.py", first_reply))
            .hold(gate),
    );
    p.server
        .push(pitcrew_testkit::Reply::content(&reply_with_file(
            "tests/test_calc.py",
            GOOD_TEST,
        )));
    let id = p.submit("src/calc.py", &[]);
    let worker = p.spawn(&["run", "--name", name]);
    assert!(
        p.server.wait_for_requests(1, Duration::from_secs(20)),
        "the worker never called the model"
    );
    (id, worker)
}

/// Every file under `dir`, recursively (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found
}

pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every row of every table in `schema`, as JSON text.
pub fn dump(schema: &PgSchema) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&schema.store_url()).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(schema.name())
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut dump = String::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM {}.{table} t",
                schema.name()
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            dump.push_str(&rows.join("\n"));
            dump.push('\n');
        }
        dump
    })
}

/// Waits for `child`, collecting its output, and returns it with the child's peak resident
/// memory in KiB: its `VmHWM`, read until it exits (the last stretch before exit is missed,
/// which is when nothing is being read any more).
pub fn wait_measured(mut child: Child) -> (std::process::Output, i64) {
    use std::io::Read;
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        });
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, peak_kib)
}
