//! Network isolation: whether this machine lets an unprivileged run enter a network namespace
//! of its own, found out once per process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::OnceCell;

/// The ways of entering a new network namespace, most direct first: plain `--net` needs
/// `CAP_SYS_ADMIN` (root); `--map-root-user` adds a user namespace, which unprivileged users
/// may create where the kernel allows it.
const VARIANTS: [&[&str]; 2] = [&["--net"], &["--net", "--map-root-user"]];

/// How long the probe may take; `unshare` of a namespace is milliseconds when it works.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The program and leading arguments that run a command without network, or `None` when
/// this machine allows no way to. Probed on first use, then cached for the process; the
/// first `None` logs the one warning.
pub(crate) async fn isolation_prefix() -> Option<&'static [OsString]> {
    static PREFIX: OnceCell<Option<Vec<OsString>>> = OnceCell::const_new();
    PREFIX
        .get_or_init(|| async {
            let prefix = probe().await;
            if prefix.is_none() {
                tracing::warn!(
                    "network isolation is unavailable on this machine (`unshare --net` failed); \
                     sandboxed commands run with network access"
                );
            }
            prefix
        })
        .await
        .as_deref()
}

/// Whether commands asking for [`crate::CommandSpec::isolate_network`] really run without
/// network on this machine.
pub async fn network_isolation_available() -> bool {
    isolation_prefix().await.is_some()
}

async fn probe() -> Option<Vec<OsString>> {
    // An absolute path, so a command whose allowlisted PATH lacks it still gets isolated.
    let unshare = find_on_path("unshare")?;
    for variant in VARIANTS {
        let mut prefix: Vec<OsString> = vec![unshare.clone().into_os_string()];
        prefix.extend(variant.iter().map(OsString::from));
        let status = tokio::process::Command::new(&prefix[0])
            .args(&prefix[1..])
            .args(["--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        if let Ok(Ok(status)) = tokio::time::timeout(PROBE_TIMEOUT, status).await
            && status.success()
        {
            tracing::debug!(?prefix, "network isolation available");
            return Some(prefix);
        }
    }
    None
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
