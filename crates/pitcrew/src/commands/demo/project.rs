//! The demo's directory: the example project (committed with git), its pitcrew.toml, and the
//! simulator's script and the tasks in `.pitcrew/demo/`; and the removal of its worktrees.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pitcrew_runtime::Repo;

use crate::output::usage;

/// The example project, committed as it is.
const PROJECT: &[(&str, &str)] = &[
    ("README.md", include_str!("project/README.md")),
    ("pyproject.toml", include_str!("project/pyproject.toml")),
    (
        "textstats/__init__.py",
        include_str!("project/textstats/__init__.py"),
    ),
    (
        "textstats/words.py",
        include_str!("project/textstats/words.py"),
    ),
    (
        "textstats/sentences.py",
        include_str!("project/textstats/sentences.py"),
    ),
    (
        "textstats/readability.py",
        include_str!("project/textstats/readability.py"),
    ),
];

/// pitcrew.toml, committed with the project once it names the simulator's address.
const CONFIG: &str = include_str!("project/pitcrew.toml");
const CONFIG_ADDRESS: &str = "{sim_base_url}";

/// The simulator's script and the tasks, in `.pitcrew/demo/` (which git ignores).
const SCRIPT: &[(&str, &str)] = &[
    ("sim.toml", include_str!("script/sim.toml")),
    ("tasks.toml", include_str!("script/tasks.toml")),
    ("replies/prose.md", include_str!("script/replies/prose.md")),
    (
        "replies/words_tests.md",
        include_str!("script/replies/words_tests.md"),
    ),
    (
        "replies/sentences_tests.md",
        include_str!("script/replies/sentences_tests.md"),
    ),
    (
        "replies/readability_wrong.md",
        include_str!("script/replies/readability_wrong.md"),
    ),
];

/// Where the demo's files are.
#[derive(Debug)]
pub struct DemoFiles {
    /// The repository root.
    pub root: PathBuf,
    pub config: PathBuf,
    /// The simulator's configuration.
    pub sim_config: PathBuf,
    /// The batch of tasks to submit.
    pub tasks: PathBuf,
}

/// The directory to make the demo in: DIR, which must be new or empty, or a new temporary
/// directory. Either is kept when the demo ends, to be looked at.
pub fn directory(keep: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
            if entries.next().is_some() {
                return Err(usage(format!(
                    "--keep {}: the directory is not empty; the demo makes its project in a new \
                     or empty directory",
                    dir.display()
                )));
            }
            dir.to_path_buf()
        }
        None => tempfile::Builder::new()
            .prefix("pitcrew-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep(),
    };
    // As git names it (symbolic links resolved), so stored paths match the repository's.
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// Writes the project and its pitcrew.toml (pointing at the simulator at `sim_base_url`) into
/// `root`, commits them, and writes the script and the tasks into `.pitcrew/demo/`.
pub async fn create(root: &Path, sim_base_url: &str) -> anyhow::Result<DemoFiles> {
    let config = CONFIG.replace(CONFIG_ADDRESS, sim_base_url);
    for (path, text) in PROJECT.iter().copied().chain([("pitcrew.toml", &*config)]) {
        write(&root.join(path), text)?;
    }
    git(root, &["init", "--quiet", "--initial-branch=main"]).await?;
    git(root, &["add", "--all"]).await?;
    git(
        root,
        &[
            "commit",
            "--quiet",
            "--message",
            "textstats: an example project for `pitcrew demo`",
        ],
    )
    .await?;
    let script_dir = Repo::at(root).state_dir()?.join("demo");
    for (path, text) in SCRIPT {
        write(&script_dir.join(path), text)?;
    }
    Ok(DemoFiles {
        root: root.to_path_buf(),
        config: root.join("pitcrew.toml"),
        sim_config: script_dir.join("sim.toml"),
        tasks: script_dir.join("tasks.toml"),
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `git args…` in `root`, with an environment of PATH only: no variable of the user's shell
/// (GIT_DIR, GIT_WORK_TREE…) can point it at another repository, and no global or system git
/// configuration (hooks, signing, templates) applies to the demo's commit.
async fn git(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(root)
        .env_clear()
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=pitcrew demo",
            "-c",
            "user.email=demo@pitcrew.invalid",
        ])
        .args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let out = command
        .output()
        .await
        .context("cannot run git; the demo needs git installed")?;
    if !out.status.success() {
        anyhow::bail!(
            "`git {}` in {} failed: {}",
            args.join(" "),
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the demo's worktrees from pitcrew's cache: they were scratch space for its
/// attempts, and the demo leaves nothing of its own behind there.
pub async fn remove_worktrees(repo: &Repo) -> anyhow::Result<()> {
    let dir = repo.worktrees_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            repo.remove_worktree(&entry.path()).await?;
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}
