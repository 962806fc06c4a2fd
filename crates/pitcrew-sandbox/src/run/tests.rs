//! End-to-end tests: real processes, real pipes, real signals.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

use tempfile::TempDir;

use super::*;
use crate::{Confinement, network_isolation_available};

fn sh(script: &str, dir: &TempDir) -> CommandSpec {
    CommandSpec::shell(script, dir.path()).timeout(Duration::from_secs(5))
}

/// Running means alive and not a zombie: killed orphans may stay zombies when PID 1 does not
/// reap (common in containers), but they hold nothing and run nothing.
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        !matches!(state, Some('Z' | 'X'))
    })
}

/// Polls until none of `pids` runs; SIGKILL delivery is asynchronous.
async fn assert_all_gone(pids: &[i32]) {
    for _ in 0..100 {
        if !pids.iter().any(|&p| is_running(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alive: Vec<_> = pids.iter().filter(|&&p| is_running(p)).collect();
    panic!("still running: {alive:?}");
}

/// Waits until `path` holds `n` pids, one per line.
async fn read_pids(path: &Path, n: usize) -> Vec<i32> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.len() == n {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never got {n} pids", path.display());
}

fn env_names(stdout: &str) -> HashMap<&str, &str> {
    stdout.lines().filter_map(|l| l.split_once('=')).collect()
}

fn fake_parent(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    vars.iter()
        .map(|(k, v)| (k.into(), v.into()))
        .chain([("PATH".into(), path)])
        .collect()
}

#[tokio::test]
async fn exit_code_and_both_streams_are_reported() {
    let dir = TempDir::new().unwrap();
    let out = run(sh("echo out; echo err >&2; exit 3", &dir))
        .await
        .unwrap();
    assert_eq!(out.code, Some(3));
    assert_eq!(out.signal, None);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert!(!out.stdout_truncated && !out.stderr_truncated && !out.timed_out);
    assert!(!out.success());
    assert_eq!(out.describe_status(), "exit code 3");

    let ok = run(sh("true", &dir)).await.unwrap();
    assert!(ok.success());
    assert_eq!(ok.describe_status(), "exit code 0");
}

#[tokio::test]
async fn death_by_signal_is_reported() {
    let dir = TempDir::new().unwrap();
    let out = run(sh("kill -TERM $$", &dir)).await.unwrap();
    assert_eq!((out.code, out.signal), (None, Some(15)));
    assert!(!out.success());
    assert_eq!(out.describe_status(), "killed by signal 15 (SIGTERM)");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = TempDir::new().unwrap();
    let spec = sh(
        "echo $$ > pids; sleep 100 & echo $! >> pids; sleep 100",
        &dir,
    )
    .timeout(Duration::from_millis(800));
    let out = run(spec).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.signal, Some(9));
    assert!(!out.success());
    assert!(
        out.describe_status().starts_with("timed out after"),
        "{}",
        out.describe_status()
    );
    assert!(out.duration < Duration::from_secs(2), "{:?}", out.duration);
    assert_all_gone(&read_pids(&dir.path().join("pids"), 2).await).await;
}

#[tokio::test]
async fn leftover_background_process_is_killed_and_does_not_hold_the_output() {
    let dir = TempDir::new().unwrap();
    let out = run(sh("sleep 100 & echo $! > pids; echo done", &dir))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "done\n");
    // Well under DRAIN_GRACE: the pipes closed because the sleep was killed, not abandoned.
    assert!(
        out.duration < Duration::from_millis(900),
        "{:?}",
        out.duration
    );
    assert_all_gone(&read_pids(&dir.path().join("pids"), 1).await).await;
}

#[tokio::test]
async fn a_process_that_left_the_group_cannot_hang_the_run() {
    let dir = TempDir::new().unwrap();
    // The escapee records its pid only after `setsid`, and the shell waits for that, so it
    // has surely left the group and holds stdout open when the group is killed.
    let script = "setsid sh -c 'echo $$ > escaped; exec sleep 2' & \
                  while [ ! -s escaped ]; do sleep 0.01; done; echo started";
    let out = run(sh(script, &dir)).await.unwrap();
    let escaped = read_pids(&dir.path().join("escaped"), 1).await[0];
    // Ours to clean up: the sandbox cannot reach it.
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped), Signal::SIGKILL);
    assert!(out.success());
    assert_eq!(out.stdout, "started\n");
    assert!(out.duration >= DRAIN_GRACE, "{:?}", out.duration);
    assert!(
        out.duration < DRAIN_GRACE + Duration::from_millis(800),
        "{:?}",
        out.duration
    );
}

#[tokio::test]
async fn dropping_the_run_future_kills_the_group() {
    let dir = TempDir::new().unwrap();
    let pid_file = dir.path().join("pids");
    let spec = sh("echo $$ > pids; sleep 100 & echo $! >> pids; wait", &dir);
    let mut running = Box::pin(run(spec));
    let pids = tokio::select! {
        res = &mut running => panic!("finished early: {res:?}"),
        pids = read_pids(&pid_file, 2) => pids,
    };
    assert!(pids.iter().all(|&p| is_running(p)));
    drop(running);
    assert_all_gone(&pids).await;
}

#[tokio::test]
async fn long_output_keeps_head_and_tail_with_a_marker() {
    let dir = TempDir::new().unwrap();
    let out = run(sh("seq 1 100000", &dir).output_limit(1000))
        .await
        .unwrap();
    let full: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(out.success());
    assert!(out.stdout_truncated && !out.stderr_truncated);
    assert!(out.stdout.starts_with("1\n2\n3\n"), "{}", &out.stdout[..20]);
    assert!(out.stdout.ends_with("99999\n100000\n"));
    let marker = format!("[… {} bytes cut …]\n", full.len() - 1000);
    assert!(out.stdout.contains(&marker), "{}", out.stdout);
    assert_eq!(out.stdout.len(), 1000 + marker.len());
}

#[tokio::test]
async fn stdin_is_passed_through_and_closed() {
    let dir = TempDir::new().unwrap();
    let out = run(CommandSpec::new("cat", dir.path()).stdin(b"hello\nworld\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout, "hello\nworld\n");

    // Without stdin the child reads /dev/null, so `cat` ends at once.
    let out = run(CommandSpec::new("cat", dir.path())).await.unwrap();
    assert!(out.success() && out.stdout.is_empty());

    // 1 MB through `cat` only finishes if stdin is written while stdout is read.
    let big = vec![b'x'; 1_000_000];
    let out = run(CommandSpec::new("cat", dir.path()).stdin(big))
        .await
        .unwrap();
    assert!(out.success() && out.stdout_truncated);

    // A child that never reads its stdin is not an error.
    let out = run(CommandSpec::new("true", dir.path()).stdin(vec![0; 1_000_000]))
        .await
        .unwrap();
    assert!(out.success());
}

#[tokio::test]
async fn spawn_failure_names_program_and_cwd() {
    let dir = TempDir::new().unwrap();
    let err = run(CommandSpec::new("pitcrew-no-such-program", dir.path()))
        .await
        .unwrap_err();
    let SandboxError::Spawn {
        program,
        cwd,
        source,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(program, "pitcrew-no-such-program");
    assert_eq!(cwd, dir.path());
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("pitcrew-no-such-program") && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );

    let missing = dir.path().join("missing");
    let err = run(CommandSpec::new("true", &missing)).await.unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn inherit_scrubbed_drops_secrets_and_removed_names() {
    let dir = TempDir::new().unwrap();
    let parent = fake_parent(&[
        ("OPENAI_API_KEY", "sk-1"),
        ("MY_SECRET", "s"),
        ("GITHUB_TOKEN", "t"),
        ("SSH_AUTH_SOCK", "/tmp/agent"),
        ("DROP_ME", "x"),
        ("GIT_AUTHOR_NAME", "pitcrew"),
        ("KEEP_ME", "y"),
    ]);
    let policy = EnvPolicy::InheritScrubbed {
        remove: vec!["DROP_ME".into()],
    };
    let out = run(sh("env", &dir).env_policy(policy).parent_env(parent))
        .await
        .unwrap();
    let env = env_names(&out.stdout);
    assert_eq!(env.get("KEEP_ME"), Some(&"y"));
    assert_eq!(env.get("GIT_AUTHOR_NAME"), Some(&"pitcrew"));
    for name in [
        "OPENAI_API_KEY",
        "MY_SECRET",
        "GITHUB_TOKEN",
        "SSH_AUTH_SOCK",
        "DROP_ME",
    ] {
        assert!(!env.contains_key(name), "{name} reached the child");
    }
}

#[tokio::test]
async fn allowlist_passes_only_what_is_asked_and_gives_a_private_home() {
    let dir = TempDir::new().unwrap();
    let parent = fake_parent(&[
        ("LANG", "C.UTF-8"),
        ("HOME", "/root"),
        ("OPENAI_API_KEY", "sk-1"),
        ("MY_TOKEN", "t"),
        ("WANTED", "w"),
        ("UNWANTED", "u"),
    ]);
    let policy = EnvPolicy::Allowlist {
        pass: vec!["WANTED".into(), "MY_TOKEN".into()],
        set: vec![("PYTHONHASHSEED".into(), "0".into())],
    };
    let script =
        "set -e; test -d \"$HOME\"; echo ok > \"$HOME/probe\"; test \"$TMPDIR\" = \"$HOME\"; env";
    let out = run(sh(script, &dir).env_policy(policy).parent_env(parent))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.combined_tail(10));
    let env = env_names(&out.stdout);
    assert_eq!(env.get("LANG"), Some(&"C.UTF-8"));
    assert_eq!(env.get("WANTED"), Some(&"w"));
    assert_eq!(env.get("PYTHONHASHSEED"), Some(&"0"));
    assert!(env.contains_key("PATH"));
    for name in ["OPENAI_API_KEY", "MY_TOKEN", "UNWANTED"] {
        assert!(!env.contains_key(name), "{name} reached the child");
    }
    let home = Path::new(env["HOME"]);
    assert_ne!(home, Path::new("/root"));
    assert!(!home.exists(), "{} outlived the run", home.display());
}

#[tokio::test]
async fn file_size_limit_stops_a_bigger_write() {
    let dir = TempDir::new().unwrap();
    let limits = Limits {
        file_size_bytes: Some(1_000_000),
        ..Limits::default()
    };
    let script = "head -c 500000 /dev/zero > small && head -c 2000000 /dev/zero > big";
    let out = run(sh(script, &dir).limits(limits)).await.unwrap();
    assert!(!out.success(), "{}", out.describe_status());
    assert_eq!(
        std::fs::metadata(dir.path().join("small")).unwrap().len(),
        500_000
    );
    assert!(std::fs::metadata(dir.path().join("big")).unwrap().len() <= 1_000_000);
}

#[tokio::test]
async fn cpu_limit_kills_a_busy_loop() {
    let dir = TempDir::new().unwrap();
    let limits = Limits {
        cpu_secs: Some(1),
        ..Limits::default()
    };
    let out = run(sh("while :; do :; done", &dir).limits(limits))
        .await
        .unwrap();
    assert!(!out.timed_out, "{:?}", out.duration);
    assert_eq!(out.signal, Some(9), "{}", out.describe_status());
}

/// A connection attempt to `port` on loopback, exiting 0 only if it connects.
fn connect_to(port: u16, dir: &TempDir) -> CommandSpec {
    let script = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()"
    );
    CommandSpec::new("python3", dir.path())
        .args(["-c", &script])
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn isolated_command_cannot_reach_a_listening_port() {
    let dir = TempDir::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    // Control: without isolation the same command connects, so a refusal below means
    // something.
    let open = run(connect_to(port, &dir)).await.unwrap();
    assert!(open.success(), "{}", open.combined_tail(10));
    assert!(!open.network_isolated);
    let (accepted, _) = listener.accept().unwrap();
    drop(accepted);

    let isolated = run(connect_to(port, &dir).isolate_network(true))
        .await
        .unwrap();
    if !network_isolation_available().await {
        assert!(!isolated.network_isolated);
        return;
    }
    assert!(isolated.network_isolated);
    assert!(!isolated.success(), "connected from inside the namespace");
    assert!(
        isolated.stderr.contains("Network is unreachable")
            || isolated.stderr.contains("Connection refused"),
        "{}",
        isolated.stderr
    );
    let pending = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(pending, Err(io::ErrorKind::WouldBlock));
}

#[tokio::test]
async fn isolated_command_keeps_its_process_group_and_timeout() {
    let dir = TempDir::new().unwrap();
    let spec = sh(
        "echo $$ > pids; sleep 100 & echo $! >> pids; sleep 100",
        &dir,
    )
    .timeout(Duration::from_millis(800))
    .isolate_network(true);
    let out = run(spec).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.network_isolated, network_isolation_available().await);
    assert_all_gone(&read_pids(&dir.path().join("pids"), 2).await).await;
}

#[tokio::test]
async fn an_unconfined_run_sees_the_host_as_before() {
    let dir = TempDir::new().unwrap();
    let me = std::process::id();
    let out = run(sh(&format!("test -d /proc/{me} && echo $$"), &dir))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.combined_tail(5));
    assert!(!out.confined);
    let pid: u32 = out.stdout.trim().parse().unwrap();
    assert!(
        pid > 2,
        "ran in the host's PID namespace, so not PID 2: {pid}"
    );
}

#[tokio::test]
async fn a_confined_run_reports_exit_codes_signals_and_streams_like_an_unconfined_one() {
    crate::confinement_available().await.unwrap();
    let dir = TempDir::new().unwrap();
    let confined = |script: &str| sh(script, &dir).confine(Confinement::new().read(dir.path()));
    let out = run(confined("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!((out.code, out.signal), (Some(3), None));
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert!(out.confined && !out.network_isolated);

    let out = run(confined("kill -TERM $$")).await.unwrap();
    assert_eq!((out.code, out.signal), (None, Some(15)));

    let out = run(CommandSpec::new("cat", dir.path())
        .stdin(b"hello\n".to_vec())
        .confine(Confinement::new().read(dir.path())))
    .await
    .unwrap();
    assert_eq!(out.stdout, "hello\n");

    let out = run(confined("seq 1 100000").output_limit(1000))
        .await
        .unwrap();
    assert!(out.success() && out.stdout_truncated);
}

#[tokio::test]
async fn a_confined_run_keeps_its_limits_and_timeout() {
    crate::confinement_available().await.unwrap();
    let dir = TempDir::new().unwrap();
    let limits = Limits {
        file_size_bytes: Some(1_000_000),
        ..Limits::default()
    };
    let conf = Confinement::new().write(dir.path());
    let script = "head -c 500000 /dev/zero > small && head -c 2000000 /dev/zero > big";
    let out = run(sh(script, &dir).limits(limits).confine(conf.clone()))
        .await
        .unwrap();
    assert!(!out.success(), "{}", out.describe_status());
    assert_eq!(
        std::fs::metadata(dir.path().join("small")).unwrap().len(),
        500_000
    );
    assert!(std::fs::metadata(dir.path().join("big")).unwrap().len() <= 1_000_000);

    let limits = Limits {
        cpu_secs: Some(1),
        ..Limits::default()
    };
    let out = run(sh("while :; do :; done", &dir)
        .limits(limits)
        .confine(conf.clone()))
    .await
    .unwrap();
    assert!(!out.timed_out, "{:?}", out.duration);
    assert_eq!(out.signal, Some(9), "{}", out.describe_status());

    let out = run(sh("sleep 100 & sleep 100", &dir)
        .timeout(Duration::from_millis(500))
        .confine(conf))
    .await
    .unwrap();
    assert!(out.timed_out && out.signal == Some(9), "{out:?}");
    assert!(out.duration < Duration::from_secs(2), "{:?}", out.duration);
}

#[tokio::test]
async fn a_confined_program_that_cannot_start_is_a_spawn_error() {
    crate::confinement_available().await.unwrap();
    let dir = TempDir::new().unwrap();
    let err = run(CommandSpec::new("pitcrew-no-such-program", dir.path())
        .confine(Confinement::new().read(dir.path())))
    .await
    .unwrap_err();
    let SandboxError::Spawn {
        program,
        cwd,
        source,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(program, "pitcrew-no-such-program");
    assert_eq!(cwd, dir.path());
    assert_eq!(source.kind(), io::ErrorKind::NotFound);

    // A program outside every granted path: under /tmp, which the sandbox shows empty.
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = run(CommandSpec::new(&script, "/").confine(Confinement::new()))
        .await
        .unwrap_err();
    let SandboxError::Spawn { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    let out =
        run(CommandSpec::new(&script, dir.path()).confine(Confinement::new().read(dir.path())))
            .await
            .unwrap();
    assert_eq!(out.stdout, "ran\n");

    let missing = dir.path().join("missing");
    let err = run(CommandSpec::new("true", &missing).confine(Confinement::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err:?}");
}

#[tokio::test]
async fn a_working_directory_hidden_by_the_sandbox_is_refused() {
    crate::confinement_available().await.unwrap();
    // Under /tmp, which the sandbox covers, and not granted: the command would otherwise
    // sit in the real directory, whose contents relative paths would still reach.
    let dir = TempDir::new().unwrap();
    let err = run(sh("ls ..", &dir).confine(Confinement::new()))
        .await
        .unwrap_err();
    let SandboxError::Unconfined { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("working directory"), "{reason}");
    assert!(
        reason.contains(&dir.path().display().to_string()),
        "{reason}"
    );
}

#[test]
fn helper_reports_become_errors_or_statuses() {
    use crate::policy::{Report, StartError};
    let spec = CommandSpec::new("prog", "/work");
    let killed = ExitStatus::from_raw(9);
    let exited = ExitStatus::from_raw(125 << 8);
    let failed = |stage: &str, errno: i32| Report {
        error: Some(StartError {
            stage: stage.into(),
            errno,
            message: "Operation not permitted".into(),
        }),
        status: Some(127 << 8),
        ..Report::default()
    };

    let err = confined_status(&spec, exited, &failed("mount /proc", 1), "").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot confine the command: mount /proc: Operation not permitted"
    );
    let err = confined_status(&spec, exited, &failed("exec", 2), "").unwrap_err();
    let SandboxError::Spawn {
        program, source, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (program.as_str(), source.kind()),
        ("prog", io::ErrorKind::NotFound)
    );

    // The command's own status wins; init's when init was killed; the helper's when it was.
    let report = Report {
        status: Some(3 << 8),
        init_status: Some(3 << 8),
        ..Report::default()
    };
    let status = confined_status(&spec, exited, &report, "").unwrap();
    assert_eq!(status.code(), Some(3));
    let report = Report {
        init_status: Some(9),
        ..Report::default()
    };
    assert_eq!(
        confined_status(&spec, exited, &report, "")
            .unwrap()
            .signal(),
        Some(9)
    );
    let status = confined_status(&spec, killed, &Report::default(), "").unwrap();
    assert_eq!(status.signal(), Some(9));

    // A helper that exited without a word was not dispatched: never taken as the command's.
    let err = confined_status(&spec, exited, &Report::default(), "usage: pitcrew ...").unwrap_err();
    assert!(matches!(err, SandboxError::Unconfined { .. }), "{err:?}");
    assert!(err.to_string().contains("usage: pitcrew"), "{err}");
}

#[tokio::test]
async fn granted_paths_under_hidden_directories_are_bound_back() {
    crate::confinement_available().await.unwrap();
    // Under /tmp, which the sandbox covers with an empty tmpfs: a granted file and a granted
    // directory nested in another granted one come back, their siblings do not.
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("granted.txt"), "file\n").unwrap();
    std::fs::write(dir.path().join("sibling.txt"), "hidden\n").unwrap();
    std::fs::create_dir_all(dir.path().join("ro/rw")).unwrap();
    let script = format!(
        "cd /; cat {d}/granted.txt; cat {d}/sibling.txt; echo x > {d}/ro/rw/new && echo wrote; \
         (echo x > {d}/ro/no) 2>/dev/null || echo refused",
        d = dir.path().display()
    );
    let conf = Confinement::new()
        .read(dir.path().join("granted.txt"))
        .read(dir.path().join("ro"))
        .write(dir.path().join("ro/rw"));
    let out = run(CommandSpec::shell(&script, "/").confine(conf))
        .await
        .unwrap();
    assert_eq!(out.stdout, "file\nwrote\nrefused\n", "{}", out.stderr);
    assert!(
        out.stderr.contains("sibling.txt: No such file"),
        "{}",
        out.stderr
    );
    assert!(dir.path().join("ro/rw/new").exists());
}

#[test]
fn programs_are_found_on_the_child_s_path_as_std_would() {
    let bin = tempfile::tempdir().unwrap();
    let tool = bin.path().join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    let not_executable = bin.path().join("data");
    std::fs::write(&not_executable, "x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = |value: &str| vec![(OsString::from("PATH"), OsString::from(value))];
    let dir = bin.path().display().to_string();

    let found = resolve_program(OsStr::new("tool"), &path(&format!("/nonexistent:{dir}")));
    assert_eq!(found, tool.as_os_str());
    // Not executable, not there, or given with a slash: left to std, unchanged.
    assert_eq!(resolve_program(OsStr::new("data"), &path(&dir)), "data");
    assert_eq!(resolve_program(OsStr::new("nope"), &path(&dir)), "nope");
    assert_eq!(resolve_program(OsStr::new("./tool"), &path(&dir)), "./tool");
    // A relative entry is searched from the child's directory, which std knows.
    assert_eq!(
        resolve_program(OsStr::new("tool"), &path(&format!("bin:{dir}"))),
        "tool"
    );
}

/// Host pids of processes whose command line contains `marker`.
fn pids_with_arg(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == marker.as_bytes()))
        })
        .filter(|&pid| is_running(pid))
        .collect()
}

/// A `sleep` argument no other process has: found again in /proc by [`pids_with_arg`].
fn unique_sleep() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}.{nanos:09}", 500 + std::process::id() % 400)
}

#[tokio::test]
async fn stdout_lines_arrive_while_the_command_runs() {
    let dir = TempDir::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let script = "printf 'first\\r\\n'; while [ ! -e go ]; do sleep 0.02; done; \
                  printf 'second\\n\\nlast'";
    let running = tokio::spawn(run(sh(script, &dir).stdout_lines(tx)));
    // The command waits for `go`, so this line can only come from a live command.
    assert_eq!(rx.recv().await.as_deref(), Some("first"));
    assert!(!running.is_finished());
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.await.unwrap().unwrap();
    assert!(out.success(), "{}", out.combined_tail(5));
    let mut rest = Vec::new();
    while let Some(line) = rx.recv().await {
        rest.push(line);
    }
    assert_eq!(rest, ["second", "", "last"]);
    assert_eq!(out.stdout, "first\r\nsecond\n\nlast", "capture unchanged");
}

#[tokio::test]
async fn a_streamed_line_over_the_limit_is_cut_and_the_next_one_is_whole() {
    let dir = TempDir::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let n = MAX_STREAMED_LINE + 100;
    let script = format!("head -c {n} /dev/zero | tr '\\0' x; printf '\\nnext\\n\\377\\n'");
    let out = run(sh(&script, &dir).stdout_lines(tx)).await.unwrap();
    assert!(out.success(), "{}", out.combined_tail(5));
    let long = rx.recv().await.unwrap();
    assert_eq!(long.len(), MAX_STREAMED_LINE);
    assert!(long.bytes().all(|b| b == b'x'));
    assert_eq!(rx.recv().await.as_deref(), Some("next"));
    assert_eq!(rx.recv().await.as_deref(), Some("\u{FFFD}"), "lossy UTF-8");
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn a_dropped_receiver_does_not_stop_the_command() {
    let dir = TempDir::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    drop(rx);
    let out = run(sh("seq 1 3", &dir).stdout_lines(tx)).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "1\n2\n3\n");
}

#[tokio::test]
async fn dropping_a_confined_run_after_its_first_line_kills_it() {
    let dir = TempDir::new().unwrap();
    let marker = unique_sleep();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let script = format!("sleep {marker} & echo started; wait");
    let spec = sh(&script, &dir)
        .timeout(Duration::from_secs(60))
        .stdout_lines(tx)
        .confine(Confinement::new().write(dir.path()));
    let mut running = Box::pin(run(spec));
    tokio::select! {
        res = &mut running => panic!("finished early: {res:?}"),
        line = rx.recv() => assert_eq!(line.as_deref(), Some("started")),
    }
    // `echo` may run before the backgrounded shell has exec'd `sleep`: wait for it.
    let mut pids = pids_with_arg(&marker);
    for _ in 0..100 {
        if !pids.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        pids = pids_with_arg(&marker);
    }
    assert_eq!(pids.len(), 1, "the confined sleep is visible from the host");
    drop(running);
    assert_all_gone(&pids).await;
}

#[tokio::test]
async fn connect_only_to_is_refused_for_an_unconfined_command() {
    let dir = TempDir::new().unwrap();
    let err = run(sh("true", &dir).connect_only_to(vec![80]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Unconfined { reason } if reason.contains("confined")),
        "{err:?}"
    );
}

#[test]
fn connect_only_to_needs_landlock_abi_4() {
    assert!(helper::check_net_abi(4).is_ok());
    assert!(helper::check_net_abi(7).is_ok());
    let err = helper::check_net_abi(3).unwrap_err();
    assert!(err.contains("ABI 4") && err.contains("ABI 3"), "{err}");
    assert!(helper::check_net_abi(-nix::libc::ENOSYS).is_err());
}

#[tokio::test]
async fn a_home_set_in_the_allowlist_is_kept() {
    let dir = TempDir::new().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let policy = EnvPolicy::Allowlist {
        pass: vec![],
        set: vec![("HOME".into(), home.display().to_string())],
    };
    let out = run(sh(
        "echo \"$HOME\"; echo \"$TMPDIR\"; env | grep -c '^HOME='",
        &dir,
    )
    .env_policy(policy))
    .await
    .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], home.display().to_string());
    assert_ne!(lines[1], lines[0], "TMPDIR stays the private directory");
    assert!(lines[1].contains("pitcrew-home-"), "{}", lines[1]);
    assert_eq!(lines[2], "1", "one HOME only");
}
