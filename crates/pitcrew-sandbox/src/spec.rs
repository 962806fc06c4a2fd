//! What to run and under which rules: [`CommandSpec`], [`EnvPolicy`], [`Limits`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use pitcrew_core::is_secret_name;
use tokio::sync::mpsc::UnboundedSender;

use crate::confine::Confinement;

/// One command to run: program, arguments, working directory and the rules it runs under.
///
/// Built with [`CommandSpec::new`] or [`CommandSpec::shell`] and the chained setters; run
/// with [`crate::run`].
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: PathBuf,
    pub(crate) env: EnvPolicy,
    pub(crate) timeout: Duration,
    pub(crate) output_limit: usize,
    pub(crate) limits: Limits,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) isolate_network: bool,
    pub(crate) parent_env: Option<Vec<(OsString, OsString)>>,
    pub(crate) confinement: Option<Confinement>,
    pub(crate) stdout_lines: Option<UnboundedSender<String>>,
    pub(crate) connect_ports: Option<Vec<u16>>,
    pub(crate) terminals: bool,
}

impl CommandSpec {
    /// `program` (looked up on the child's `PATH` unless it contains a `/`) run in `cwd`.
    ///
    /// Defaults: 60 s timeout, 64 KiB kept per output stream,
    /// `EnvPolicy::InheritScrubbed { remove: vec![] }`, no resource limits, empty stdin,
    /// network access, the environment built from this process's, no confinement.
    pub fn new(program: impl Into<OsString>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: EnvPolicy::InheritScrubbed { remove: Vec::new() },
            timeout: Duration::from_secs(60),
            output_limit: 64 * 1024,
            limits: Limits::default(),
            stdin: None,
            isolate_network: false,
            parent_env: None,
            confinement: None,
            stdout_lines: None,
            connect_ports: None,
            terminals: false,
        }
    }

    /// `sh -c command` run in `cwd`.
    pub fn shell(command: &str, cwd: impl Into<PathBuf>) -> Self {
        Self::new("sh", cwd).arg("-c").arg(command)
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets how the child's environment is built.
    #[must_use]
    pub fn env_policy(mut self, policy: EnvPolicy) -> Self {
        self.env = policy;
        self
    }

    /// Sets the wall-clock limit after which the whole process group is killed.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many bytes of each of stdout and stderr are kept (head and tail; the middle
    /// is replaced by a marker line).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Sets the resource limits applied to the child (and inherited by its children).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Feeds `bytes` to the child's stdin, then closes it. Without this stdin is `/dev/null`.
    #[must_use]
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// Runs the command in a network namespace of its own, where no interface (not even
    /// loopback) is up, so it can reach nothing. It runs through `unshare --net` (plus
    /// `--map-root-user` when only that works), which execs the program in place: same pid,
    /// same process group. Where the machine allows neither, the command runs with the
    /// machine's network, a warning is logged once per process, and
    /// [`crate::Output::network_isolated`] says so. When isolated, a program that cannot be
    /// started is reported by `unshare` (exit code 127 and its message on stderr), not as
    /// [`crate::SandboxError::Spawn`]. A [confined](CommandSpec::confine) command is isolated
    /// by the sandbox helper instead, with no fallback.
    #[must_use]
    pub fn isolate_network(mut self, isolate: bool) -> Self {
        self.isolate_network = isolate;
        self
    }

    /// Runs the command confined (see [`Confinement`]): in PID, mount and IPC namespaces of
    /// its own, without capabilities, and under Landlock with access to `confinement`'s
    /// paths only. With [`CommandSpec::isolate_network`] it also gets an empty network
    /// namespace, created by the sandbox itself (no `unshare` program, never a fallback).
    ///
    /// Never a silent fallback: where the machine cannot confine
    /// ([`crate::confinement_available`]) [`crate::run`] returns
    /// [`crate::SandboxError::Unconfined`] instead of running the command.
    #[must_use]
    pub fn confine(mut self, confinement: Confinement) -> Self {
        self.confinement = Some(confinement);
        self
    }

    /// Also sends every line of stdout to `tx` as it is read, so a caller can follow a
    /// long-running command (an agent's event stream) and stop it early by dropping the
    /// [`crate::run`] future, which kills its process group like a timeout does.
    ///
    /// Each line is sent without its `\n` (and a `\r` before it), decoded as lossy UTF-8;
    /// a line longer than [`MAX_STREAMED_LINE`] bytes is cut there (the rest of it is not
    /// sent). A last line without a newline is sent at end of file. The captured
    /// [`crate::Output::stdout`] is unchanged. A closed receiver is ignored: the command
    /// runs on and its output is still captured.
    #[must_use]
    pub fn stdout_lines(mut self, tx: UnboundedSender<String>) -> Self {
        self.stdout_lines = Some(tx);
        self
    }

    /// For a [confined](CommandSpec::confine) command that keeps the network
    /// (`isolate_network(false)`): Landlock allows it TCP `connect` only to these ports and
    /// no TCP `bind` at all. Landlock filters by port only, not by address: a port allowed
    /// here is reachable on every address, loopback and remote alike. UDP and other
    /// protocols are not filtered (see [`Confinement`]).
    ///
    /// Needs Landlock ABI 4 (Linux 6.7); on an older kernel the run fails with
    /// [`crate::SandboxError::Unconfined`] rather than run with more network than asked,
    /// and so does an unconfined command given this. With `isolate_network(true)` the
    /// command has no network anyway and this adds nothing.
    #[must_use]
    pub fn connect_only_to(mut self, ports: Vec<u16>) -> Self {
        self.connect_ports = Some(ports);
        self
    }

    /// Lets a confined command open pseudo-terminals (an agent's shell runs in one): it gets
    /// a `devpts` instance of its own on `/dev/pts`, with its `ptmx` on `/dev/ptmx`, so the
    /// terminals it opens are its own and the machine's (a user's shell, where injected
    /// input would run) stay out of its sight and reach. Without it, opening `/dev/ptmx` is
    /// refused. Only for confined commands (an unconfined one has the machine's anyway).
    #[must_use]
    pub fn terminals(mut self, allow: bool) -> Self {
        self.terminals = allow;
        self
    }

    /// The variables the child's environment is built from (see [`EnvPolicy`]) instead of
    /// this process's, e.g. to prove in a test that a secret in the parent never reaches the
    /// child without mutating the real environment.
    #[must_use]
    pub fn parent_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.parent_env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }
}

/// How the child's environment is built from the parent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvPolicy {
    /// The parent's environment minus every secret-like name (see [`is_secret_name`]) and the
    /// listed names (exact, case-sensitive).
    InheritScrubbed { remove: Vec<String> },
    /// Only `PATH`, `LANG`, `LC_ALL`, `LC_CTYPE`, `TZ` and `TERM` copied from the parent (when
    /// set), plus the `pass` names copied from the parent (a secret-like name in `pass` is
    /// refused, never passed), plus the `set` pairs as given. `TMPDIR` always points to a
    /// fresh temporary directory that is removed after the run, and so does `HOME` unless
    /// `set` gives one (a program whose state should outlive the run, e.g. in a directory
    /// the caller keeps; a confined command must also be granted it).
    Allowlist {
        pass: Vec<String>,
        set: Vec<(String, String)>,
    },
}

/// Resource limits set with `setrlimit` in the child before it executes the program.
///
/// Each limit becomes both the soft and the hard limit, so the child cannot raise it again;
/// a value above the current hard limit is lowered to it. Children inherit the limits, and
/// each process counts against them on its own, except `processes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds per process (`RLIMIT_CPU`); the process is killed with `SIGKILL` past it.
    pub cpu_secs: Option<u64>,
    /// Virtual memory per process (`RLIMIT_AS`); allocations past it fail.
    pub address_space_bytes: Option<u64>,
    /// Largest file a process may write (`RLIMIT_FSIZE`); a larger write gets `SIGXFSZ`.
    pub file_size_bytes: Option<u64>,
    /// `RLIMIT_NPROC`: counts *all* processes of the real user, not just this run's, and is
    /// not enforced for root.
    pub processes: Option<u64>,
}

/// The longest stdout line [`CommandSpec::stdout_lines`] sends, in bytes (1 MiB).
pub const MAX_STREAMED_LINE: usize = 1024 * 1024;

/// Names [`EnvPolicy::Allowlist`] copies from the parent without being asked.
const BASE_NAMES: [&str; 6] = ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"];

/// The child's environment under `policy`, built from `parent` (the parent's variables;
/// injectable so tests need not mutate the real environment). `HOME`/`TMPDIR` for
/// `Allowlist` are added by the caller, which owns the temporary directory.
pub(crate) fn child_env(
    policy: &EnvPolicy,
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    match policy {
        EnvPolicy::InheritScrubbed { remove } => parent
            .into_iter()
            .filter(|(name, _)| {
                let name = name.to_string_lossy();
                !is_secret_name(&name) && !remove.iter().any(|r| *r == name)
            })
            .collect(),
        EnvPolicy::Allowlist { pass, set } => {
            for name in pass.iter().filter(|n| is_secret_name(n)) {
                tracing::warn!(%name, "refusing to pass a secret-like variable to a sandboxed command");
            }
            let wanted = |name: &str| {
                BASE_NAMES.contains(&name) || pass.iter().any(|p| p == name && !is_secret_name(p))
            };
            let mut env: Vec<(OsString, OsString)> = parent
                .into_iter()
                .filter(|(name, _)| name.to_str().is_some_and(wanted))
                .collect();
            env.extend(set.iter().map(|(k, v)| (k.into(), v.into())));
            env
        }
    }
}
