//! Reading the base commit from the repository: trusted git, run in the repository's root and
//! never in the worktree (whose files the task wrote), with hooks and fsmonitor off and the
//! caller's (scrubbed) environment rather than the sandbox's.

use std::path::Path;
use std::time::Duration;

use pitcrew_sandbox::{CommandSpec, EnvPolicy, Output};

use crate::error::ValidateError;

/// Variables that would point git at another repository (set inside git hooks).
const REDIRECTING: [&str; 4] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
];

async fn run(spec: CommandSpec, timeout: Duration) -> Result<Output, ValidateError> {
    let spec = spec
        .env_policy(EnvPolicy::InheritScrubbed {
            remove: REDIRECTING.map(String::from).to_vec(),
        })
        .timeout(timeout);
    let describe = format!("{spec:?}");
    pitcrew_sandbox::run(spec)
        .await
        .map_err(|source| ValidateError::Sandbox {
            command: describe,
            source,
        })
}

fn git(repo: &Path) -> CommandSpec {
    CommandSpec::new("git", repo).args([
        "--literal-pathspecs",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
    ])
}

/// Writes `commit`'s tree into `dest` (through the tar file `tar`).
pub(crate) async fn export(
    repo: &Path,
    commit: &str,
    dest: &Path,
    tar: &Path,
    timeout: Duration,
) -> Result<(), ValidateError> {
    std::fs::create_dir_all(dest).map_err(|source| ValidateError::Io {
        context: "creating the base checkout".into(),
        source,
    })?;
    let steps = [
        git(repo)
            .args(["archive", "--format=tar", "-o"])
            .arg(tar)
            .arg(commit),
        CommandSpec::new("tar", dest).arg("-xf").arg(tar),
    ];
    for spec in steps {
        let out = run(spec, timeout).await?;
        if !out.success() {
            return Err(ValidateError::Baseline {
                commit: commit.to_string(),
                message: format!(
                    "exporting the commit failed ({}): {}",
                    out.describe_status(),
                    out.combined_tail(5)
                ),
            });
        }
    }
    Ok(())
}

/// The text of each of `paths` in `commit`: `None` for a path that is not a file there.
pub(crate) async fn files_at(
    repo: &Path,
    commit: &str,
    paths: &[&str],
    timeout: Duration,
) -> Result<Vec<Option<String>>, ValidateError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let failed = |what: &str, out: &Output| ValidateError::Baseline {
        commit: commit.to_string(),
        message: format!(
            "{what} failed ({}): {}",
            out.describe_status(),
            out.combined_tail(5)
        ),
    };
    let listed = run(
        git(repo)
            .args(["ls-tree", "-z", commit, "--"])
            .args(paths.iter().copied())
            .output_limit(16 * 1024 * 1024),
        timeout,
    )
    .await?;
    if !listed.success() {
        return Err(failed("listing files of the base commit", &listed));
    }
    // `<mode> <type> <id>\t<path>` per entry: only blobs are files.
    let present: Vec<&str> = listed
        .stdout
        .split('\0')
        .filter_map(|entry| entry.split_once('\t'))
        .filter(|(meta, _)| meta.split(' ').nth(1) == Some("blob"))
        .map(|(_, path)| path)
        .collect();
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        if !present.contains(path) {
            contents.push(None);
            continue;
        }
        let object = format!("{commit}:{path}");
        let out = run(
            git(repo)
                .args(["cat-file", "blob", &object])
                .output_limit(64 * 1024 * 1024),
            timeout,
        )
        .await?;
        if !out.success() || out.stdout_truncated {
            return Err(failed(
                &format!("reading `{path}` at the base commit"),
                &out,
            ));
        }
        contents.push(Some(out.stdout));
    }
    Ok(contents)
}
