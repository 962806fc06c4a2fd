//! Spawning, timing out, reaping and capturing one command.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::{Pid, pipe2};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::confine::{Confinement, ConfinementUnavailable};
use crate::helper;
use crate::output::{Capture, Output};
use crate::policy::{HELPER_ARG, Policy, Report, STAGE_EXEC};
use crate::spec::{CommandSpec, EnvPolicy, Limits, MAX_STREAMED_LINE, child_env};

/// Why a command could not be run. A command that ran and failed is an [`Output`], not this.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The program could not be started: not found, not executable, `cwd` missing, or a
    /// resource limit refused.
    #[error("cannot start `{program}` in {}: {source}", cwd.display())]
    Spawn {
        program: String,
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Confinement was asked for ([`CommandSpec::confine`]) but could not be set up, so the
    /// command did not run: the machine cannot confine at all
    /// ([`crate::confinement_available`]), or a step of the sandbox failed for this command
    /// (a mount, Landlock, the namespaces). `reason` says which.
    #[error("cannot confine the command: {reason}")]
    Unconfined { reason: String },
    /// An I/O failure around a started command (its process group has been killed).
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

/// How long output is still read after the process group is gone. Only a process that left
/// the group (`setsid`) can keep the pipes open that long; the run must not wait for it.
/// (A confined command's leftovers die with its PID namespace, so this never applies there.)
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How long the confinement probe may take; it is milliseconds when it works.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `spec` to completion, timeout or failure to start.
///
/// The command runs in its own process group. When the timeout expires the whole group is
/// killed with `SIGKILL` (`timed_out` is set); when the command exits, whatever is left of
/// its group is killed too; and if this future is dropped, the group is killed as well.
///
/// A [confined](CommandSpec::confine) command runs through the sandbox helper: this
/// process's own executable (`/proc/self/exe`) started again with a marker argument, which
/// a constructor of this crate recognises before `main` (so it works in any binary that
/// links this crate, test harnesses included). The helper, the PID namespace's init and the
/// command share the process group, so the timeout reaches all three; when the command
/// ends, init ends and the kernel kills everything left in the namespace, including
/// processes that left the group. If the helper cannot set the sandbox up, the command does
/// not run and this returns [`SandboxError::Unconfined`] (or [`SandboxError::Spawn`] when
/// the program itself cannot be executed: not found, not executable, not granted).
pub async fn run(spec: CommandSpec) -> Result<Output, SandboxError> {
    if spec.connect_ports.is_some() {
        if spec.confinement.is_none() {
            return Err(SandboxError::Unconfined {
                reason: "`connect_only_to` is enforced by Landlock, so it needs a confined \
                         command (`CommandSpec::confine`)"
                    .to_owned(),
            });
        }
        if !spec.isolate_network {
            helper::check_net_abi(helper::kernel_landlock_abi())
                .map_err(|reason| SandboxError::Unconfined { reason })?;
        }
    }
    if spec.confinement.is_some() {
        crate::confine::confinement_available()
            .await
            .map_err(|e| SandboxError::Unconfined { reason: e.reason })?;
    }
    execute(spec, false).await.map(|(output, _)| output)
}

/// Runs the helper's self-check once (see [`crate::confinement_available`]).
pub(crate) async fn probe() -> Result<(), ConfinementUnavailable> {
    let abi = helper::kernel_landlock_abi();
    if abi < helper::MIN_LANDLOCK_ABI {
        return Err(ConfinementUnavailable::new(helper::describe_landlock_abi(
            abi,
        )));
    }
    let spec = CommandSpec::new("pitcrew-sandbox-probe", "/")
        .confine(Confinement::new())
        .isolate_network(true)
        .timeout(PROBE_TIMEOUT);
    match execute(spec, true).await {
        Ok((_, report)) if report.probe_abi.is_some() => Ok(()),
        Ok((out, _)) => Err(ConfinementUnavailable::new(format!(
            "the sandbox helper's self-check did not pass ({}): {}",
            out.describe_status(),
            out.combined_tail(5)
        ))),
        Err(SandboxError::Unconfined { reason }) => Err(ConfinementUnavailable::new(reason)),
        Err(e) => Err(ConfinementUnavailable::new(e)),
    }
}

/// Runs `spec`; with `probe`, a confined spec runs the helper's self-check instead of the
/// program. Also returns what the helper reported (empty when not confined).
async fn execute(mut spec: CommandSpec, probe: bool) -> Result<(Output, Report), SandboxError> {
    let parent_env = match &spec.parent_env {
        Some(vars) => vars.clone(),
        None => std::env::vars_os().collect(),
    };
    let mut env = child_env(&spec.env, parent_env);
    // Held until the run ends; dropping it removes the directory.
    let home = match spec.env {
        EnvPolicy::Allowlist { .. } => Some(
            tempfile::Builder::new()
                .prefix("pitcrew-home-")
                .tempdir()
                .map_err(io_error("creating the temporary HOME"))?,
        ),
        EnvPolicy::InheritScrubbed { .. } => None,
    };
    if let Some(home) = &home {
        let home_set = matches!(&spec.env, EnvPolicy::Allowlist { set, .. } if set.iter().any(|(k, _)| k == "HOME"));
        if !home_set {
            env.push(("HOME".into(), home.path().into()));
        }
        env.push(("TMPDIR".into(), home.path().into()));
    }

    let confined = spec.confinement.is_some();
    let isolation = if spec.isolate_network && !confined {
        crate::net::isolation_prefix().await
    } else {
        None
    };
    // The helper's status pipe: it writes, we read once it has been reaped.
    let status_pipe = if confined {
        Some(
            pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| SandboxError::Io {
                context: "creating the sandbox status pipe",
                source: e.into(),
            })?,
        )
    } else {
        None
    };
    let mut cmd = match (&spec.confinement, &status_pipe, isolation) {
        (Some(confinement), Some((_, status_w)), _) => {
            helper::keep_hook();
            let real_home = std::env::var_os("HOME").map(PathBuf::from);
            let (read, write, hide) =
                confinement.resolve(home.as_ref().map(TempDir::path), real_home.as_deref());
            let policy = Policy {
                parent_pid: std::process::id(),
                report_fd: status_w.as_raw_fd(),
                network: !spec.isolate_network,
                // Without network there is nothing to allow.
                connect_ports: spec.connect_ports.clone().filter(|_| !spec.isolate_network),
                terminals: spec.terminals,
                probe,
                limits: spec.limits,
                read,
                write,
                hide,
            };
            // Our own image, not `current_exe()`: still right if the file was replaced or
            // deleted since we started, and always speaks our helper protocol.
            let mut cmd = Command::new("/proc/self/exe");
            cmd.arg0("pitcrew-sandbox")
                .arg(HELPER_ARG)
                .arg(policy.encode())
                .arg(&spec.program);
            inherit_fd(&mut cmd, status_w.as_raw_fd());
            cmd
        }
        (_, _, Some(prefix)) => {
            let mut cmd = Command::new(&prefix[0]);
            cmd.args(&prefix[1..]).arg("--").arg(&spec.program);
            cmd
        }
        // An absolute path lets std start the child with posix_spawn (vfork-like) instead of
        // fork, which copies this whole process's page tables: with a child environment that
        // sets PATH, std falls back to fork for a bare program name.
        _ => Command::new(resolve_program(&spec.program, &env)),
    };
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !confined {
        // A confined command sets its limits itself, after the sandbox is up.
        apply_limits(&mut cmd, spec.limits);
    }

    tracing::debug!(
        program = ?spec.program,
        args = ?spec.args,
        cwd = %spec.cwd.display(),
        confined,
        "running sandboxed command"
    );
    let stdin_bytes = spec.stdin.take();
    let started = Instant::now();
    let (status_r, status_w) = status_pipe.unzip();
    let (start_rx, mut exit_rx) = spawn_supervisor(cmd, status_w, status_r)
        .map_err(io_error("starting the supervisor thread"))?;
    let Started {
        group,
        stdin,
        stdout,
        stderr,
    } = start_rx
        .await
        .unwrap_or_else(|_| Err(io::Error::other("supervisor thread ended before spawning")))
        .map_err(|source| SandboxError::Spawn {
            program: spec.program.to_string_lossy().into_owned(),
            cwd: spec.cwd.clone(),
            source,
        })?;
    let stdin = stdin
        .map(ChildStdin::from_std)
        .transpose()
        .map_err(io_error("registering stdin"))?;
    let stdout = stdout
        .map(ChildStdout::from_std)
        .transpose()
        .map_err(io_error("registering stdout"))?;
    let stderr = stderr
        .map(ChildStderr::from_std)
        .transpose()
        .map_err(io_error("registering stderr"))?;

    let (mut out, mut err) = (
        Capture::new(spec.output_limit),
        Capture::new(spec.output_limit),
    );
    let mut io_result = Ok(());
    let mut timed_out = false;
    let exit = {
        let io = async {
            let (a, b, c) = tokio::join!(
                pump(
                    stdout,
                    &mut out,
                    spec.stdout_lines.clone(),
                    "reading stdout"
                ),
                pump(stderr, &mut err, None, "reading stderr"),
                feed(stdin, stdin_bytes),
            );
            a.and(b).and(c)
        };
        tokio::pin!(io);
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let mut io_done = false;
        // Keep the pipes flowing while waiting, or a chatty child blocks on a full pipe.
        let exit = loop {
            tokio::select! {
                exit = &mut exit_rx => break exit,
                res = &mut io, if !io_done => { io_done = true; io_result = res; }
                () = &mut deadline, if !timed_out => { group.kill(); timed_out = true; }
            }
        };
        if !io_done {
            match tokio::time::timeout(DRAIN_GRACE, &mut io).await {
                Ok(res) => io_result = res,
                Err(_) => tracing::warn!(
                    program = ?spec.program,
                    "output pipes still open after the process group ended; a process left the group"
                ),
            }
        }
        exit
    };
    let (status, report) = exit
        .unwrap_or_else(|_| Err(io::Error::other("reaper thread ended without a status")))
        .map_err(io_error("waiting for the command"))?;
    io_result?;
    let (stdout, stdout_truncated) = out.finish();
    let (stderr, stderr_truncated) = err.finish();
    let status = if confined {
        confined_status(&spec, status, &report, &stderr)?
    } else {
        status
    };
    let output = Output {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        timed_out,
        duration: started.elapsed(),
        network_isolated: if confined {
            spec.isolate_network
        } else {
            isolation.is_some()
        },
        confined,
    };
    Ok((output, report))
}

/// The command's own status from what the helper reported, or the error it reported.
fn confined_status(
    spec: &CommandSpec,
    helper: ExitStatus,
    report: &Report,
    stderr: &str,
) -> Result<ExitStatus, SandboxError> {
    if let Some(error) = &report.error {
        if error.stage == STAGE_EXEC {
            return Err(SandboxError::Spawn {
                program: spec.program.to_string_lossy().into_owned(),
                cwd: spec.cwd.clone(),
                source: io::Error::from_raw_os_error(error.errno),
            });
        }
        let mut reason = format!("{}: {}", error.stage, error.message);
        if error.errno != 0 && !error.message.contains(Errno::from_raw(error.errno).desc()) {
            reason.push_str(&format!(" ({})", Errno::from_raw(error.errno).desc()));
        }
        return Err(SandboxError::Unconfined { reason });
    }
    // The command's status as init saw it; else init's, if it was killed; else the
    // helper's, if it was killed (a timeout, or the group killed from outside).
    if let Some(raw) = report.status.or(report.init_status) {
        return Ok(ExitStatus::from_raw(raw));
    }
    if helper.signal().is_some() {
        return Ok(helper);
    }
    let tail: Vec<&str> = stderr.trim_end().lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(SandboxError::Unconfined {
        reason: format!(
            "the sandbox helper ended ({helper}) without reporting; was it dispatched before \
             `main`? stderr: {}",
            tail.join(" | ")
        ),
    })
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Io { context, source }
}

/// Reads `pipe` to its end into `capture`, and sends its lines to `lines` if given.
async fn pump(
    pipe: Option<impl AsyncRead + Unpin>,
    capture: &mut Capture,
    lines: Option<UnboundedSender<String>>,
    context: &'static str,
) -> Result<(), SandboxError> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut splitter = lines.map(LineSplitter::new);
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = pipe.read(&mut buf).await.map_err(io_error(context))?;
        if n == 0 {
            if let Some(splitter) = &mut splitter {
                splitter.finish();
            }
            return Ok(());
        }
        capture.push(&buf[..n]);
        if let Some(splitter) = &mut splitter {
            splitter.push(&buf[..n]);
        }
    }
}

/// Cuts a byte stream into lines for [`CommandSpec::stdout_lines`].
#[derive(Debug)]
struct LineSplitter {
    tx: UnboundedSender<String>,
    line: Vec<u8>,
    /// Whether the current line grew past [`MAX_STREAMED_LINE`]; its rest is dropped.
    cut: bool,
}

impl LineSplitter {
    fn new(tx: UnboundedSender<String>) -> Self {
        Self {
            tx,
            line: Vec::new(),
            cut: false,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = MAX_STREAMED_LINE - self.line.len();
            if part.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            if ended {
                self.send();
            }
            bytes = rest;
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() || self.cut {
            self.send();
        }
    }

    fn send(&mut self) {
        if !self.cut && self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        // A receiver that is gone only stops listening; the command runs on.
        let _ = self.tx.send(text);
        self.line.clear();
        self.cut = false;
    }
}

/// Writes `bytes` to the child's stdin, then closes it.
async fn feed(pipe: Option<ChildStdin>, bytes: Option<Vec<u8>>) -> Result<(), SandboxError> {
    let (Some(mut pipe), Some(bytes)) = (pipe, bytes) else {
        return Ok(());
    };
    match pipe.write_all(&bytes).await {
        // A child may exit or close stdin without reading it all; that is not our failure.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(io_error("writing stdin")(e)),
        _ => Ok(()),
    }
}

/// Kills the child's process group on demand and on drop, but never after the group leader
/// has been reaped: until then its pid (which is the group id) cannot be reused, so `killpg`
/// cannot hit an unrelated group.
#[derive(Debug)]
struct GroupGuard {
    pgid: Pid,
    reaped: Arc<Mutex<bool>>,
}

impl GroupGuard {
    fn new(child: &Child) -> Self {
        Self {
            pgid: Pid::from_raw(child.id() as i32),
            reaped: Arc::new(Mutex::new(false)),
        }
    }

    fn kill(&self) {
        let reaped = lock(&self.reaped);
        if !*reaped {
            // ESRCH (already gone) is the only expected failure, and harmless.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock(reaped: &Mutex<bool>) -> MutexGuard<'_, bool> {
    reaped.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the supervisor thread hands back once the child runs: the guard of its group and
/// its pipes.
#[derive(Debug)]
struct Started {
    group: GroupGuard,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
}

type Finished = io::Result<(ExitStatus, Report)>;

/// Spawns `cmd` on a plain thread that then waits for it (so it is reaped even if the run
/// is cancelled), kills what is left of its group while the leader is still an unreaped
/// zombie, reaps it, and reads the helper's status pipe.
///
/// Spawning on this thread matters for a confined command: the helper's
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked it ends, and this one lives until
/// the helper has been reaped (or the whole process dies, which is when it should fire).
fn spawn_supervisor(
    mut cmd: Command,
    status_w: Option<OwnedFd>,
    status_r: Option<OwnedFd>,
) -> io::Result<(
    oneshot::Receiver<io::Result<Started>>,
    oneshot::Receiver<Finished>,
)> {
    let (start_tx, start_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("sandbox-reaper".into())
        .spawn(move || {
            let spawned = cmd.spawn();
            // Only the helper may hold the write end now, or the pipe never ends.
            drop(status_w);
            drop(cmd);
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    let _ = start_tx.send(Err(e));
                    return;
                }
            };
            let group = GroupGuard::new(&child);
            let (pgid, reaped) = (group.pgid, Arc::clone(&group.reaped));
            let started = Started {
                group,
                stdin: child.stdin.take(),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
            };
            // If the run was cancelled meanwhile, `started` comes back and is dropped here,
            // which kills the group; it is still reaped below.
            drop(start_tx.send(Ok(started)));
            // WNOWAIT: learn that it exited without reaping it yet.
            while waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
                == Err(Errno::EINTR)
            {}
            let mut reaped = lock(&reaped);
            let _ = killpg(pgid, Signal::SIGKILL);
            let status = child.wait();
            *reaped = true;
            drop(reaped);
            let report = status_r.map(read_report).unwrap_or_default();
            // The receiver is gone if the run was cancelled; nobody needs the status then.
            let _ = exit_tx.send(status.map(|s| (s, report)));
        })?;
    Ok((start_rx, exit_rx))
}

/// `program` found on the `PATH` the child will have (the parent's when the child's has
/// none), as std's own lookup would find it; a name containing `/`, one not found, or a
/// `PATH` with a relative entry leaves it as it is (std then looks it up, as before).
fn resolve_program(program: &OsStr, env: &[(OsString, OsString)]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return program.to_owned();
    }
    let path = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // A relative entry is searched from the child's directory: leave such lookups to std.
    if dirs.iter().any(|dir| !dir.is_absolute()) {
        return program.to_owned();
    }
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map_or_else(|| program.to_owned(), PathBuf::into_os_string)
}

/// Whatever is in the (non-blocking) status pipe. The helper's processes wrote their
/// records before they exited, so all that matters is there once the helper is reaped.
fn read_report(pipe: OwnedFd) -> Report {
    let mut file = std::fs::File::from(pipe);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Report::parse(&bytes)
}

/// Lets the child keep `fd` (created close-on-exec, so no other child inherits it) across
/// its `exec`.
#[allow(unsafe_code)]
fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the hook runs in the forked child, where only async-signal-safe work is allowed:
    // one fcntl on a descriptor number copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the child apply `limits` to itself between fork and exec.
#[allow(unsafe_code)]
fn apply_limits(cmd: &mut Command, limits: Limits) {
    let wanted = [
        (Resource::RLIMIT_CPU, limits.cpu_secs),
        (Resource::RLIMIT_AS, limits.address_space_bytes),
        (Resource::RLIMIT_FSIZE, limits.file_size_bytes),
        (Resource::RLIMIT_NPROC, limits.processes),
    ];
    if wanted.iter().all(|(_, value)| value.is_none()) {
        return;
    }
    // SAFETY: the hook runs in the forked child, where only async-signal-safe work is allowed.
    // It reads a copied array and makes getrlimit/setrlimit syscalls; errors become an
    // `io::Error` from a raw errno. Nothing allocates, locks or touches shared state.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, value) in wanted {
                if let Some(value) = value {
                    set_limit(resource, value)?;
                }
            }
            Ok(())
        });
    }
}

/// Sets soft and hard limit to `value`, lowered to the current hard limit (which an
/// unprivileged process cannot raise).
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let (_, hard) = getrlimit(resource)?;
    let value = value.min(hard);
    setrlimit(resource, value, value)?;
    Ok(())
}

#[cfg(test)]
mod tests;
