//! Spawning, timing out, reaping and capturing one command.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use crate::output::{Capture, Output};
use crate::spec::{CommandSpec, EnvPolicy, Limits, child_env};

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
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Runs `spec` to completion, timeout or failure to start.
///
/// The command runs in its own process group. When the timeout expires the whole group is
/// killed with `SIGKILL` (`timed_out` is set); when the command exits, whatever is left of
/// its group is killed too; and if this future is dropped, the group is killed as well.
pub async fn run(spec: CommandSpec) -> Result<Output, SandboxError> {
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
        env.push(("HOME".into(), home.path().into()));
        env.push(("TMPDIR".into(), home.path().into()));
    }

    let isolation = if spec.isolate_network {
        crate::net::isolation_prefix().await
    } else {
        None
    };
    let mut cmd = match isolation {
        Some(prefix) => {
            let mut cmd = Command::new(&prefix[0]);
            cmd.args(&prefix[1..]).arg("--").arg(&spec.program);
            cmd
        }
        None => Command::new(&spec.program),
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
    apply_limits(&mut cmd, spec.limits);

    tracing::debug!(
        program = ?spec.program,
        args = ?spec.args,
        cwd = %spec.cwd.display(),
        "running sandboxed command"
    );
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: spec.program.to_string_lossy().into_owned(),
        cwd: spec.cwd.clone(),
        source,
    })?;
    let group = GroupGuard::new(&child);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut exit_rx =
        spawn_reaper(child, &group).map_err(io_error("starting the reaper thread"))?;
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
                pump(stdout, &mut out, "reading stdout"),
                pump(stderr, &mut err, "reading stderr"),
                feed(stdin, spec.stdin),
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
    let status = exit
        .unwrap_or_else(|_| Err(io::Error::other("reaper thread ended without a status")))
        .map_err(io_error("waiting for the command"))?;
    io_result?;
    let (stdout, stdout_truncated) = out.finish();
    let (stderr, stderr_truncated) = err.finish();
    Ok(Output {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        timed_out,
        duration: started.elapsed(),
        network_isolated: isolation.is_some(),
    })
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Io { context, source }
}

/// Reads `pipe` to its end into `capture`.
async fn pump(
    pipe: Option<impl AsyncRead + Unpin>,
    capture: &mut Capture,
    context: &'static str,
) -> Result<(), SandboxError> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = pipe.read(&mut buf).await.map_err(io_error(context))?;
        if n == 0 {
            return Ok(());
        }
        capture.push(&buf[..n]);
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

/// Waits for the child on a plain thread (so it is reaped even if the run is cancelled),
/// kills what is left of its group while the leader is still an unreaped zombie, then reaps.
fn spawn_reaper(
    mut child: Child,
    group: &GroupGuard,
) -> io::Result<oneshot::Receiver<io::Result<ExitStatus>>> {
    let (tx, rx) = oneshot::channel();
    let (pgid, reaped) = (group.pgid, Arc::clone(&group.reaped));
    std::thread::Builder::new()
        .name("sandbox-reaper".into())
        .spawn(move || {
            // WNOWAIT: learn that it exited without reaping it yet.
            while waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
                == Err(Errno::EINTR)
            {}
            let mut reaped = lock(&reaped);
            let _ = killpg(pgid, Signal::SIGKILL);
            let status = child.wait();
            *reaped = true;
            drop(reaped);
            // The receiver is gone if the run was cancelled; nobody needs the status then.
            let _ = tx.send(status);
        })?;
    Ok(rx)
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
