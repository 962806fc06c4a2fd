//! Confinement: what a confined command may touch ([`Confinement`]) and whether this machine
//! can confine at all ([`confinement_available`]).

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

/// The paths [`Confinement::new`] grants read and execute access beneath: the system's
/// programs and libraries, and from `/etc` only what programs need to start (dynamic
/// linker, users and groups, name resolution, time zone, TLS roots, locale, MIME types,
/// Python's and the terminal's configuration).
///
/// A final `*` matches any name with that prefix in the directory (`/etc/python3*` is
/// `/etc/python3`, `/etc/python3.11`, ...). `/etc/ssl/*` leaves out `/etc/ssl/private`,
/// where private keys live. Paths missing on this machine are skipped.
pub const DEFAULT_READ_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/sys/devices/system/cpu",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/ssl/*",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/alternatives",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/python3*",
    "/etc/inputrc",
    "/etc/terminfo",
];

/// Names a `*` in [`DEFAULT_READ_PATHS`] never matches.
const NEVER_MATCHED: &[&str] = &["private"];

/// Directories that a confined command sees as empty (a fresh tmpfs in its own mount
/// namespace), except for granted paths beneath them, which are bound back in place. Their
/// contents are unreadable under Landlock anyway; this also takes away the unix sockets
/// that live there (databases, Docker, D-Bus, X11, agents), which Landlock before ABI 9 does
/// not stop a program from connecting to by path. The home directory of the process running
/// `run` is hidden too.
pub const HIDDEN_DIRS: &[&str] = &[
    "/run", "/var", "/tmp", "/home", "/root", "/mnt", "/media", "/srv",
];

/// Filesystem confinement for one command, set with [`crate::CommandSpec::confine`].
///
/// A confined command runs in PID, mount and IPC namespaces of its own, with no
/// capabilities (bounding, ambient, effective, permitted and inheritable sets all empty),
/// `no_new_privs`, and a Landlock ruleset that refuses every file access except:
///
/// - read and execute beneath each [`Confinement::read`] path (by default
///   [`DEFAULT_READ_PATHS`]);
/// - full access beneath each [`Confinement::write`] path, and the private `HOME`/`TMPDIR`
///   that [`crate::EnvPolicy::Allowlist`] creates;
/// - reading `/dev/random` and `/dev/urandom`, reading and writing `/dev/null`, `/dev/zero`
///   and `/dev/full`;
/// - reading the namespace's own fresh `/proc` (only the command's processes are in it),
///   and full access to a fresh, private `/dev/shm`.
///
/// Network: with `isolate_network(true)` the command gets an empty network namespace (no
/// interface up, not even loopback) and Landlock refuses TCP bind and connect; otherwise it
/// keeps the machine's network. Either way it cannot connect to abstract unix sockets or
/// signal processes outside its sandbox (Landlock ABI 6 scopes, where the kernel has them).
///
/// [`HIDDEN_DIRS`] (and the home directory of the process calling [`crate::run`]) look
/// empty inside the sandbox, except for granted paths beneath them.
///
/// The command's working directory is *not* granted by itself: grant it with
/// [`Confinement::write`] (or [`Confinement::read`]) if the command should use it. A working
/// directory in a hidden directory must be granted, or the run fails with
/// [`crate::SandboxError::Unconfined`].
///
/// Not contained: the kernel's system calls (no seccomp filter), unix sockets reachable by
/// path outside the hidden directories (Landlock handles `connect` only from ABI 9), the
/// machine's network when it is not isolated (UDP too), resource exhaustion beyond the
/// [`crate::Limits`] and the timeout (no cgroup), and grants of paths that an earlier
/// sandboxed run could have replaced with a symlink (grant nothing below a writable
/// directory).
///
/// When everything the command started is gone: when the command itself exits, the PID
/// namespace's init exits and the kernel kills every process left in the namespace, also
/// those that left the process group (`setsid`). If pitcrew dies, the helper and init die
/// with it (`PR_SET_PDEATHSIG`), and so does the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
}

impl Default for Confinement {
    fn default() -> Self {
        Self::new()
    }
}

impl Confinement {
    /// Read and execute access to [`DEFAULT_READ_PATHS`] that exist on this machine, nothing
    /// writable.
    pub fn new() -> Self {
        Self {
            read: DEFAULT_READ_PATHS
                .iter()
                .flat_map(|p| expand(Path::new(p)))
                .collect(),
            write: Vec::new(),
        }
    }

    /// Also grants reading and executing beneath `path` (a directory or a file). A path that
    /// does not exist when the command starts is skipped.
    #[must_use]
    pub fn read(mut self, path: impl Into<PathBuf>) -> Self {
        self.read.push(path.into());
        self
    }

    /// Also grants full access beneath `path`: read, execute, write, create, remove,
    /// rename and link within it. A path that does not exist when the command starts is
    /// skipped.
    #[must_use]
    pub fn write(mut self, path: impl Into<PathBuf>) -> Self {
        self.write.push(path.into());
        self
    }

    /// The paths granted read and execute access.
    pub fn read_paths(&self) -> &[PathBuf] {
        &self.read
    }

    /// The paths granted full access.
    pub fn write_paths(&self) -> &[PathBuf] {
        &self.write
    }

    /// The granted paths resolved (symlinks followed, missing ones dropped), `extra_write`
    /// added, and the directories to hide: [`HIDDEN_DIRS`] and `home`, resolved, minus any
    /// that is granted or lies beneath a granted path or another hidden directory.
    pub(crate) fn resolve(
        &self,
        extra_write: Option<&Path>,
        home: Option<&Path>,
    ) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>) {
        let resolve_all = |paths: &mut dyn Iterator<Item = &Path>| -> Vec<PathBuf> {
            let mut out: Vec<PathBuf> = paths.filter_map(|p| p.canonicalize().ok()).collect();
            out.sort();
            out.dedup();
            out
        };
        let read = resolve_all(&mut self.read.iter().map(PathBuf::as_path));
        let write = resolve_all(&mut self.write.iter().map(PathBuf::as_path).chain(extra_write));
        let candidates = resolve_all(
            &mut HIDDEN_DIRS
                .iter()
                .map(Path::new)
                .chain(home.filter(|h| h.is_absolute() && *h != Path::new("/"))),
        );
        let hide = candidates
            .iter()
            .filter(|dir| dir.is_dir())
            .filter(|dir| !read.iter().chain(&write).any(|g| dir.starts_with(g)))
            .filter(|dir| !candidates.iter().any(|o| o != *dir && dir.starts_with(o)))
            .cloned()
            .collect();
        (read, write, hide)
    }
}

/// `path` itself, or for a final component ending in `*` the existing entries of its
/// directory with that prefix (minus [`NEVER_MATCHED`]).
fn expand(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let (Some(name), Some(dir)) = (name, path.parent()) else {
        return vec![path.to_owned()];
    };
    let Some(prefix) = name.strip_suffix('*') else {
        return vec![path.to_owned()];
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) && !NEVER_MATCHED.contains(&name.as_ref())
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Why confined commands cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ConfinementUnavailable {
    /// What is missing, e.g. "this kernel's Landlock ABI is 1; at least 2 (Linux 5.19) is
    /// needed" or "unshare (namespaces): Operation not permitted".
    pub reason: String,
}

impl ConfinementUnavailable {
    pub(crate) fn new(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

/// Whether this machine can run confined commands: Landlock ABI 2 or later, and the
/// namespaces the helper needs (PID, mount, IPC, network; plus user when not root).
///
/// Found out once per process by running the sandbox helper for real: it confines itself
/// exactly as for a command, then checks from inside that it is PID 2 of a fresh PID
/// namespace, that Landlock refuses listing `/` and that no capability is left. Later calls
/// return the cached answer.
pub async fn confinement_available() -> Result<(), ConfinementUnavailable> {
    static AVAILABLE: OnceCell<Result<(), ConfinementUnavailable>> = OnceCell::const_new();
    AVAILABLE
        .get_or_init(|| async {
            let result = crate::run::probe().await;
            match &result {
                Ok(()) => tracing::debug!("confinement available"),
                Err(e) => tracing::warn!(reason = %e, "confinement is unavailable on this machine"),
            }
            result
        })
        .await
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_grant_no_secrets_from_etc() {
        let conf = Confinement::new();
        for path in conf.read_paths() {
            assert!(
                !path.starts_with("/etc/ssl/private")
                    && path != Path::new("/etc")
                    && path != Path::new("/etc/shadow"),
                "{}",
                path.display()
            );
        }
        assert!(conf.read_paths().contains(&PathBuf::from("/usr")));
        assert!(conf.write_paths().is_empty());
    }

    #[test]
    fn a_star_matches_a_prefix_in_its_directory() {
        let dir = tempfile::TempDir::new().unwrap();
        for name in ["python3", "python3.11", "private", "other"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let names = |pattern: &str| -> Vec<String> {
            expand(&dir.path().join(pattern))
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("python3*"), ["python3", "python3.11"]);
        assert_eq!(names("*"), ["other", "python3", "python3.11"]);
        assert_eq!(names("other"), ["other"]);
        assert!(expand(Path::new("/no/such/dir/x*")).is_empty());
    }

    #[test]
    fn hidden_dirs_skip_granted_ones_and_nested_ones() {
        let conf = Confinement::new().read("/tmp").write("/no/such/path");
        let (read, write, hide) = conf.resolve(None, Some(Path::new("/root")));
        assert!(read.contains(&PathBuf::from("/tmp")));
        assert!(write.is_empty(), "missing paths are dropped: {write:?}");
        assert!(!hide.contains(&PathBuf::from("/tmp")), "{hide:?}");
        if Path::new("/run").is_dir() {
            assert!(hide.contains(&PathBuf::from("/run")), "{hide:?}");
        }
        let conf = Confinement::new();
        let (_, _, hide) = conf.resolve(None, Some(Path::new("/")));
        assert!(!hide.contains(&PathBuf::from("/")));
    }
}
