//! Attacks a generated test could try, each run confined (must fail) and, where that is
//! harmless, unconfined as a control (must work, so the refusal means something).
//!
//! The layout stands for a real task: a "repository" with a `.env` holding a secret and
//! `.git/hooks/`, a separate "worktree" the command may write, a private HOME from
//! `EnvPolicy::Allowlist`, and a Python interpreter granted read-only by its prefix.
//!
//! Each protection was checked by disabling it in the helper and watching the attacks it
//! stops succeed (see the report of the change that added this file).
//!
//! This is an integration test on purpose: it runs in its own test harness binary, whose
//! `main` this crate does not control, so it also proves the helper is dispatched before
//! `main` from any binary that links the crate.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use pitcrew_sandbox::{
    CommandSpec, Confinement, EnvPolicy, Output, SandboxError, confinement_available, run,
};
use tempfile::TempDir;

const SENTINEL: &str = "PITCREW_SENTINEL_5f1c";

/// The Python interpreter outside the sandbox: (`sys.executable`, `sys.prefix`). The
/// `python3` on PATH may be a pyenv shim needing `~/.pyenv`, so the real one is called.
fn python() -> &'static (PathBuf, PathBuf) {
    static PYTHON: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable); print(sys.prefix)"])
            .output()
            .expect("python3 runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let exe = PathBuf::from(lines.next().unwrap());
        let prefix = PathBuf::from(lines.next().unwrap());
        (exe.canonicalize().unwrap(), prefix)
    })
}

struct Fixture {
    repo: TempDir,
    worktree: TempDir,
}

impl Fixture {
    /// The worktree under /tmp.
    async fn new() -> Self {
        Self::with_worktree_in(&std::env::temp_dir()).await
    }

    /// The worktree on the repository's filesystem and mount, as a worktree inside the
    /// repository would be: links and renames between them do not fail on their own.
    async fn beside_the_repo() -> Self {
        Self::with_worktree_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).await
    }

    async fn with_worktree_in(parent: &Path) -> Self {
        confinement_available()
            .await
            .expect("this machine confines (Landlock, namespaces)");
        // The repository where the sandbox does not hide anything (under the target
        // directory, not /tmp or a home), so only Landlock keeps it out of reach; the
        // worktree under /tmp, which the sandbox hides and binds the worktree back into.
        let repo = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::write(repo.path().join(".env"), format!("API_KEY={SENTINEL}\n")).unwrap();
        std::fs::create_dir_all(repo.path().join(".git/hooks")).unwrap();
        std::fs::create_dir_all(repo.path().join("src")).unwrap();
        std::fs::write(repo.path().join("src/app.py"), "x = 1\n").unwrap();
        let worktree = TempDir::new_in(parent).unwrap();
        std::fs::write(worktree.path().join("existing.txt"), "old\n").unwrap();
        Self { repo, worktree }
    }

    fn repo(&self) -> &Path {
        self.repo.path()
    }

    fn wt(&self) -> &Path {
        self.worktree.path()
    }

    fn confinement(&self) -> Confinement {
        Confinement::new().read(&python().1).write(self.wt())
    }

    /// `sh -c script` in the worktree, with `$REPO`, `$WT` and `$PY` set, network isolated,
    /// not yet confined.
    fn sh(&self, script: &str) -> CommandSpec {
        CommandSpec::shell(script, self.wt())
            .env_policy(EnvPolicy::Allowlist {
                pass: vec![],
                set: vec![
                    ("REPO".into(), self.repo().display().to_string()),
                    ("WT".into(), self.wt().display().to_string()),
                    ("PY".into(), python().0.display().to_string()),
                ],
            })
            .isolate_network(true)
            .timeout(Duration::from_secs(20))
    }

    fn python(&self, code: &str) -> CommandSpec {
        self.sh("exec \"$PY\" -c \"$CODE\"")
            .env_policy(EnvPolicy::Allowlist {
                pass: vec![],
                set: vec![
                    ("REPO".into(), self.repo().display().to_string()),
                    ("WT".into(), self.wt().display().to_string()),
                    ("PY".into(), python().0.display().to_string()),
                    ("CODE".into(), code.to_owned()),
                ],
            })
    }

    async fn confined(&self, spec: CommandSpec) -> Output {
        let out = run(spec.confine(self.confinement())).await.unwrap();
        assert!(out.confined);
        out
    }

    async fn unconfined(&self, spec: CommandSpec) -> Output {
        let out = run(spec).await.unwrap();
        assert!(!out.confined);
        out
    }

    fn env_file(&self) -> String {
        std::fs::read_to_string(self.repo().join(".env")).unwrap()
    }
}

fn all(out: &Output) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn unique(name: &str) -> String {
    format!(
        "pitcrew-attack-{name}-{}-{}",
        std::process::id(),
        fastish_id()
    )
}

fn fastish_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn the_repository_secret_cannot_be_read() {
    let f = Fixture::new().await;
    let attack = "cat \"$REPO/.env\"; ls -a \"$REPO\"";
    assert!(all(&f.unconfined(f.sh(attack)).await).contains(SENTINEL));

    let out = f.confined(f.sh(attack)).await;
    assert!(!out.success());
    assert!(!all(&out).contains(SENTINEL), "{}", all(&out));
    assert!(!out.stdout.contains(".git"), "{}", out.stdout);

    // Nor from Python, nor through the worktree's parent directory.
    let code = "import os\nfor p in [os.environ['REPO'] + '/.env', os.environ['WT'] + '/../' + os.path.basename(os.environ['REPO']) + '/.env']:\n    try:\n        print(open(p).read())\n    except OSError as e:\n        print('refused', e.errno)";
    let out = f.confined(f.python(code)).await;
    assert!(out.success(), "{}", all(&out));
    assert!(!all(&out).contains(SENTINEL), "{}", all(&out));
    assert_eq!(out.stdout.matches("refused").count(), 2, "{}", out.stdout);
}

#[tokio::test]
async fn git_hooks_and_the_repository_tree_cannot_be_written() {
    let f = Fixture::new().await;
    let attack = "printf '#!/bin/sh\\necho pwned\\n' > \"$REPO/.git/hooks/pre-commit\"; \
                  echo 'x = 2' > \"$REPO/src/app.py\"; \
                  echo new > \"$REPO/src/new.py\"; \
                  rm -f \"$REPO/.env\"; mv \"$REPO/src\" \"$WT/stolen\"";
    let out = f.confined(f.sh(attack)).await;
    assert!(!out.success());
    assert!(!f.repo().join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read_to_string(f.repo().join("src/app.py")).unwrap(),
        "x = 1\n"
    );
    assert!(!f.repo().join("src/new.py").exists());
    assert!(f.env_file().contains(SENTINEL));
    // `mv` across filesystems copies: it may make the empty directory, never the content.
    assert!(!f.wt().join("stolen/app.py").exists());
    assert!(f.repo().join("src/app.py").exists());

    // Control: unconfined, the same writes land.
    let out = f
        .unconfined(f.sh("echo 'x = 2' > \"$REPO/src/app.py\""))
        .await;
    assert!(out.success());
    assert_eq!(
        std::fs::read_to_string(f.repo().join("src/app.py")).unwrap(),
        "x = 2\n"
    );
}

#[tokio::test]
async fn the_real_home_cannot_be_read_or_written() {
    let f = Fixture::new().await;
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let secret = real_home.join(unique("history"));
    std::fs::write(&secret, SENTINEL).unwrap();
    let planted = real_home.join(unique("planted"));
    let attack = format!(
        "cat {secret}; ls -a {home}; echo pwned > {planted}; cat {home}/.bash_history",
        secret = secret.display(),
        home = real_home.display(),
        planted = planted.display()
    );
    let out = f.confined(f.sh(&attack)).await;
    let unconfined = f
        .unconfined(f.sh(&format!("cat {}", secret.display())))
        .await;
    std::fs::remove_file(&secret).unwrap();
    let planted_exists = planted.exists();
    let _ = std::fs::remove_file(&planted);

    assert!(unconfined.stdout.contains(SENTINEL), "control");
    assert!(!all(&out).contains(SENTINEL), "{}", all(&out));
    assert!(!planted_exists, "wrote into the real HOME");
    // The private HOME is what the command sees as HOME.
    let out = f.confined(f.sh("echo \"$HOME\"")).await;
    assert_ne!(Path::new(out.stdout.trim()), real_home);
}

#[tokio::test]
async fn other_processes_are_invisible_and_unreachable() {
    let f = Fixture::new().await;
    let me = std::process::id();
    let mut victim = std::process::Command::new("sleep")
        .arg("100")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let victim_pid = victim.id();

    // Control: unconfined, our environment is readable.
    let out = f
        .unconfined(f.sh(&format!("tr '\\0' '\\n' < /proc/{me}/environ | head -1")))
        .await;
    assert!(out.success() && !out.stdout.is_empty(), "{}", all(&out));

    let attack = format!(
        "cat /proc/{me}/environ; cat /proc/{victim_pid}/cmdline; kill -9 {victim_pid}; kill -9 {me}; \
         kill -9 1; echo pids: $(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ')"
    );
    let out = f.confined(f.sh(&attack)).await;
    let pids: Vec<u32> = out
        .stdout
        .split("pids:")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // Only the namespace's own: init (1), the shell (2), the pipeline of the command
    // substitution; numbered from 1 in order, so small.
    assert!(pids.starts_with(&[1, 2]), "{pids:?}");
    assert!(pids.len() < 10 && pids.iter().all(|&p| p < 100), "{pids:?}");
    assert!(
        !pids.contains(&me) && !pids.contains(&victim_pid),
        "{pids:?}"
    );
    assert!(!out.stdout.contains("PATH="), "{}", out.stdout);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim outside the sandbox was killed"
    );

    // ptrace: no such process in this namespace (and Landlock would refuse it anyway).
    let code = format!(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.ptrace(16, {victim_pid}, None, None)\nprint('attach', r, ctypes.get_errno())\n\
         r = libc.ptrace(16, 1, None, None)\nprint('attach-init', r, ctypes.get_errno())"
    );
    let out = f.confined(f.python(&code)).await;
    assert!(out.success(), "{}", all(&out));
    assert!(
        out.stdout.contains("attach -1 3\n"),
        "ESRCH: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("attach-init -1 1\n"),
        "EPERM: {}",
        out.stdout
    );
    assert!(victim.try_wait().unwrap().is_none());
    victim.kill().unwrap();
    victim.wait().unwrap();
}

// Attacks on shared files only *open* them for writing (`true >> file` writes nothing), so
// that they change nothing even when a protection is missing.
#[tokio::test]
async fn etc_shadow_and_system_files_are_not_readable_or_writable() {
    let f = Fixture::new().await;
    let out = f
        .unconfined(f.sh("head -c 5 /etc/shadow; true >> /etc/passwd && echo opened"))
        .await;
    assert!(
        out.success() && out.stdout.len() > "opened\n".len(),
        "control: {}",
        all(&out)
    );

    let out = f
        .confined(f.sh(
            "cat /etc/shadow; cat /etc/ssl/private/*; ls /etc; true >> /etc/passwd; \
             true >> /proc/sys/kernel/core_pattern; true >> /proc/sys/vm/drop_caches; \
             true >> /usr/bin/env; head -c 1 /usr/bin/env >/dev/null && echo read-usr",
        ))
        .await;
    for refused in [
        "/etc/shadow",
        "/etc/passwd",
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/vm/drop_caches",
        "/usr/bin/env",
    ] {
        assert!(
            out.stderr
                .contains(&format!("{refused}: Permission denied")),
            "{refused}: {}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("cannot open directory '/etc'"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "read-usr\n", "{}", all(&out));
}

#[tokio::test]
async fn tmp_and_dev_shm_outside_grants_keep_nothing() {
    let f = Fixture::new().await;
    let in_tmp = PathBuf::from("/tmp").join(unique("tmp"));
    let in_shm = PathBuf::from("/dev/shm").join(unique("shm"));
    let attack = format!(
        "echo x > {tmp}; echo x > {shm} && cat {shm} && echo shm-private-ok; ls /tmp",
        tmp = in_tmp.display(),
        shm = in_shm.display()
    );
    let out = f.confined(f.sh(&attack)).await;
    let (tmp_left, shm_left) = (in_tmp.exists(), in_shm.exists());
    let _ = std::fs::remove_file(&in_tmp);
    let _ = std::fs::remove_file(&in_shm);
    assert!(out.stdout.contains("shm-private-ok"), "{}", all(&out));
    assert!(!tmp_left, "wrote to the host's /tmp");
    assert!(!shm_left, "left a file in the host's /dev/shm");

    // Control.
    let out = f
        .unconfined(f.sh(&format!("echo x > {}", in_shm.display())))
        .await;
    let shm_left = in_shm.exists();
    let _ = std::fs::remove_file(&in_shm);
    assert!(out.success() && shm_left, "control: {}", all(&out));
}

#[tokio::test]
async fn links_in_the_worktree_do_not_reach_outside_it() {
    for f in [Fixture::new().await, Fixture::beside_the_repo().await] {
        links_attack(&f).await;
    }
}

async fn links_attack(f: &Fixture) {
    // A hard link to the secret, then a write through it; a symlink, then a read through
    // it; renames out of and into the repository.
    let attack = "ln \"$REPO/.env\" \"$WT/hard\" && echo pwned >> \"$WT/hard\"; \
                  ln -s \"$REPO/.env\" \"$WT/soft\"; cat \"$WT/soft\"; \
                  ln -s / \"$WT/root\"; cat \"$WT/root/etc/shadow\"; \
                  mv \"$REPO/.env\" \"$WT/moved\"; cat \"$WT/moved\"; \
                  mv \"$WT/existing.txt\" \"$REPO/src/planted.py\"";
    let out = f.confined(f.sh(attack)).await;
    assert!(!all(&out).contains(SENTINEL), "{}", all(&out));
    assert!(!f.wt().join("hard").exists());
    assert!(!f.wt().join("moved").exists());
    assert!(!f.repo().join("src/planted.py").exists());
    assert!(f.wt().join("existing.txt").exists());
    assert_eq!(f.env_file(), format!("API_KEY={SENTINEL}\n"));
    assert!(
        f.wt().join("soft").is_symlink(),
        "the symlink itself may be made"
    );

    // Control: unconfined, the hard link works and writes the secret's file.
    let out = f
        .unconfined(f.sh("ln \"$REPO/.env\" \"$WT/hard2\" && echo pwned >> \"$WT/hard2\""))
        .await;
    assert!(out.success(), "{}", all(&out));
    assert!(f.env_file().contains("pwned"));
}

#[tokio::test]
async fn a_tcp_listener_on_loopback_is_unreachable() {
    let f = Fixture::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n    print('connected')\nexcept OSError as e:\n    print('refused', e)"
    );
    let out = f.unconfined(f.python(&code).isolate_network(false)).await;
    assert!(out.stdout.contains("connected"), "control: {}", all(&out));
    drop(listener.accept().unwrap());

    let out = f.confined(f.python(&code)).await;
    assert!(out.network_isolated);
    assert!(out.stdout.contains("refused"), "{}", all(&out));
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}

#[tokio::test]
async fn unix_sockets_outside_the_sandbox_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};

    let f = Fixture::new().await;
    // A service's socket in a directory of its own under /tmp (like X11's or an agent's),
    // and one in the abstract namespace (like D-Bus's or X11's).
    let sock_dir = TempDir::new().unwrap();
    let path = sock_dir.path().join("s");
    let by_path = UnixListener::bind(&path).unwrap();
    by_path.set_nonblocking(true).unwrap();
    let name = unique("abstract");
    let abstract_listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    abstract_listener.set_nonblocking(true).unwrap();
    // By absolute path, by a path relative to the working directory (a sibling under /tmp),
    // and by abstract name.
    let relative = format!(
        "../{}/s",
        sock_dir.path().file_name().unwrap().to_string_lossy()
    );
    let code = format!(
        "import socket\nfor a in [{path:?}, {relative:?}, '\\0{name}']:\n    \
         s = socket.socket(socket.AF_UNIX)\n    \
         try:\n        s.connect(a); print('connected')\n    \
         except OSError as e:\n        print('refused', e.errno)",
        path = path.display().to_string()
    );

    let out = f.unconfined(f.python(&code).isolate_network(false)).await;
    assert_eq!(
        out.stdout.matches("connected").count(),
        3,
        "control: {}",
        all(&out)
    );
    for _ in 0..2 {
        drop(by_path.accept().unwrap());
    }
    drop(abstract_listener.accept().unwrap());

    // With the machine's network too: the abstract one is refused by Landlock's scope, not
    // only by the network namespace.
    for isolated in [true, false] {
        let out = f.confined(f.python(&code).isolate_network(isolated)).await;
        assert!(out.success(), "{}", all(&out));
        assert_eq!(out.stdout.matches("refused").count(), 3, "{}", all(&out));
        assert_eq!(
            by_path.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
        assert_eq!(
            abstract_listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
    }
}

#[tokio::test]
async fn no_capability_is_left_so_no_mount_or_module_load() {
    let f = Fixture::new().await;
    let out = f
        .confined(
            f.sh("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; \
                        mkdir -p m; mount -t tmpfs none m && echo mounted; \
                        unshare -U -r true && echo unshared; \
                        insmod /nonexistent.ko 2>&1 | head -1"),
        )
        .await;
    let caps: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .collect();
    assert_eq!(caps.len(), 5, "{}", out.stdout);
    for line in caps {
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(!out.stdout.contains("mounted"), "{}", all(&out));
    // init_module needs CAP_SYS_MODULE (ENOSYS where the kernel has no module support).
    let code = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
                r = libc.syscall(175, None, 0, b'')\nprint('init_module', r, ctypes.get_errno())";
    let out = f.confined(f.python(code)).await;
    assert!(
        out.stdout.contains("init_module -1 1\n") || out.stdout.contains("init_module -1 38\n"),
        "EPERM or ENOSYS: {}",
        all(&out)
    );

    // Root's other powers, each allowed by Landlock in the worktree, so only the missing
    // capability refuses them: make a device node (CAP_MKNOD), give a file away
    // (CAP_CHOWN), read another user's private file (CAP_DAC_OVERRIDE).
    let private = f.wt().join("private");
    std::fs::write(&private, SENTINEL).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(&private, Some(4321), Some(4321)).unwrap();
    let attack = |n: &str| {
        format!(
            "mknod \"$WT/null{n}\" c 1 3 && echo mknod-ok; touch \"$WT/mine{n}\"; \
             chown 4321 \"$WT/mine{n}\" && echo chown-ok; cat \"$WT/private\""
        )
    };
    let out = f.unconfined(f.sh(&attack("1"))).await;
    let text = all(&out);
    assert!(
        text.contains("mknod-ok") && text.contains("chown-ok") && text.contains(SENTINEL),
        "control: {text}"
    );
    let out = f.confined(f.sh(&attack("2"))).await;
    let text = all(&out);
    assert!(!text.contains("mknod-ok"), "{text}");
    assert!(!text.contains("chown-ok"), "{text}");
    assert!(!text.contains(SENTINEL), "{text}");
}

/// A process that leaves the group with `setsid`, says it is running (so it surely left
/// before the command ends), then writes `marker-<n>` after 1.5 s.
fn escapee(n: u32) -> String {
    format!(
        "setsid sh -c 'echo > \"$WT/in-{n}\"; sleep 1.5; echo escaped > \"$WT/marker-{n}\"' \
         </dev/null >/dev/null 2>&1 & \
         while [ ! -e \"$WT/in-{n}\" ]; do sleep 0.01; done; echo started"
    )
}

#[tokio::test]
async fn a_setsid_escapee_dies_with_the_command() {
    let f = Fixture::new().await;
    let out = f.confined(f.sh(&escapee(1))).await;
    assert!(out.success() && out.stdout == "started\n", "{}", all(&out));
    assert!(
        out.duration < Duration::from_millis(900),
        "{:?}",
        out.duration
    );

    // The same after a timeout, with the escapee holding stdout open.
    let timed = escapee(2).replace("echo started", "sleep 100");
    let timed = timed.replace(" </dev/null >/dev/null 2>&1", "");
    let out = f
        .confined(f.sh(&timed).timeout(Duration::from_millis(1000)))
        .await;
    assert!(out.timed_out);
    assert!(
        out.duration < Duration::from_millis(1900),
        "{:?}",
        out.duration
    );

    // Control: unconfined, the escapee survives and writes its marker.
    let out = f.unconfined(f.sh(&escapee(3))).await;
    assert!(out.success(), "{}", all(&out));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    for n in 1..=3 {
        assert!(
            f.wt().join(format!("in-{n}")).exists(),
            "escapee {n} never ran"
        );
    }
    assert!(
        f.wt().join("marker-3").exists(),
        "control: the unconfined escapee survives"
    );
    assert!(
        !f.wt().join("marker-1").exists(),
        "the escapee outlived the command"
    );
    assert!(
        !f.wt().join("marker-2").exists(),
        "the escapee outlived the timeout"
    );
}

#[tokio::test]
async fn the_worktree_home_and_python_work_as_usual() {
    let f = Fixture::new().await;
    let script = "set -e; cat existing.txt; echo new > new.txt; mkdir -p d/e; mv new.txt d/e/moved.txt; \
                  ln d/e/moved.txt hard.txt; ln -s d/e/moved.txt soft.txt; cat soft.txt; \
                  rm existing.txt; rm -r d/e; echo home > \"$HOME/h\"; cat \"$HOME/h\"; \
                  t=$(mktemp); echo tmp > \"$t\"; cat \"$t\"; ls /usr/bin/env; \
                  echo discarded > /dev/null; head -c 4 /dev/urandom | wc -c";
    let out = f.confined(f.sh(script)).await;
    assert!(out.success(), "{}", all(&out));
    assert_eq!(
        out.stdout, "old\nnew\nhome\ntmp\n/usr/bin/env\n4\n",
        "{}",
        out.stderr
    );
    assert!(!f.wt().join("existing.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.wt().join("hard.txt")).unwrap(),
        "new\n"
    );

    let code = "import json, sqlite3, tempfile, subprocess, multiprocessing, os, sys\n\
                db = sqlite3.connect(os.path.join(os.environ['WT'], 'x.db')); db.execute('create table t (x)'); db.commit()\n\
                with tempfile.NamedTemporaryFile() as t: t.write(b'x')\n\
                print(json.dumps({'cpus': os.cpu_count() > 0, 'sub': subprocess.run(['true']).returncode}))\n\
                with multiprocessing.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))";
    let out = f.confined(f.python(code)).await;
    assert!(out.success(), "{}", all(&out));
    assert_eq!(
        out.stdout, "{\"cpus\": true, \"sub\": 0}\n3\n",
        "{}",
        out.stderr
    );
    assert!(f.wt().join("x.db").exists());
}

#[tokio::test]
async fn the_helper_is_dispatched_before_main_in_an_integration_test_binary() {
    // Started with the helper's marker, this very test binary must run the helper (which
    // refuses a malformed policy), not libtest.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--pitcrew-sandbox-helper-v1", "not-hex", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("malformed policy"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "libtest ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_not_an_exit_code() {
    let f = Fixture::new().await;
    let err = run(CommandSpec::new("no-such-program-5f1c", f.wt()).confine(f.confinement()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

/// Connects to `port` on loopback and prints `connected` or the error's errno name.
fn connect_code(port: u16) -> String {
    format!(
        "import errno, socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n    print('connected')\nexcept OSError as e:\n    print('refused', errno.errorcode.get(e.errno), e)"
    )
}

#[tokio::test]
async fn connect_only_to_allows_the_listed_ports_only() {
    let f = Fixture::new().await;
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let (allowed_port, other_port) = (
        allowed.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let with_network = |code: &str| {
        f.python(code)
            .isolate_network(false)
            .connect_only_to(vec![allowed_port])
    };

    let out = f.confined(with_network(&connect_code(allowed_port))).await;
    assert_eq!(out.stdout.trim(), "connected", "{}", all(&out));
    assert!(!out.network_isolated);
    drop(allowed.accept().unwrap());

    // Control: confined with the network but no port list, the other port is reachable.
    let out = f
        .confined(f.python(&connect_code(other_port)).isolate_network(false))
        .await;
    assert_eq!(out.stdout.trim(), "connected", "{}", all(&out));
    drop(other.accept().unwrap());

    let out = f.confined(with_network(&connect_code(other_port))).await;
    assert!(out.stdout.starts_with("refused EACCES"), "{}", all(&out));
    assert_eq!(
        other.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );

    // No TCP listening either: a listener could be a channel out through a forwarded port.
    let bind = "import errno, socket\ntry:\n    socket.socket().bind(('127.0.0.1', 0))\n    print('bound')\nexcept OSError as e:\n    print('refused', errno.errorcode.get(e.errno))";
    let out = f.confined(with_network(bind)).await;
    assert_eq!(out.stdout.trim(), "refused EACCES", "{}", all(&out));
}

/// Opens a pseudo-terminal, runs `echo` on it, and lists `/dev/pts`.
const PTY_CODE: &str = "import os, pty, sys
try:
    pid, fd = pty.fork()
except OSError as e:
    print('refused', e.errno)
    sys.exit(0)
if pid == 0:
    os.execvp('echo', ['echo', 'from-the-terminal'])
out = b''
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
print(out.decode().strip(), sorted(os.listdir('/dev/pts')))";

#[tokio::test]
async fn terminals_are_private_to_the_command_and_refused_without_them() {
    let f = Fixture::new().await;
    // A terminal of the machine's (a user's shell, say), which the command must not see:
    // held open by a process outside the sandbox for the test's length.
    let mut holder = std::process::Command::new(&python().0)
        .args([
            "-c",
            "import os, sys, time\nm, s = os.openpty()\nprint(os.ttyname(s), flush=True)\ntime.sleep(60)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let machine_name = line.trim().rsplit('/').next().unwrap().to_string();
    assert!(!machine_name.is_empty(), "{line}");

    let out = f.confined(f.python(PTY_CODE).terminals(true)).await;
    let printed = out.stdout.trim();
    assert!(printed.starts_with("from-the-terminal"), "{}", all(&out));
    // Only its own: the private instance holds ptmx and the one it opened.
    assert!(printed.ends_with("['0', 'ptmx']"), "{printed}");
    assert!(
        machine_name == "0" || !printed.contains(&format!("'{machine_name}'")),
        "{printed}"
    );

    // Without: no terminal can be opened at all.
    let out = f.confined(f.python(PTY_CODE)).await;
    assert!(out.stdout.starts_with("refused"), "{}", all(&out));
    holder.kill().unwrap();
    holder.wait().unwrap();
}
