//! Once per repository and run: removing worktrees left by attempts that no longer run, and
//! creating result branches a crash prevented.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use pitcrew_core::{Task, TaskFilter, TaskStatus};
use pitcrew_runtime::{POOL_PREFIX, Repo, RepoIdentity, WorktreePool, existing_clone};
use pitcrew_store::Rescued;
use tokio::sync::mpsc;

use crate::{Engine, Event};

impl Engine {
    /// Tidies, at the start of a run, every repository on this machine with finished tasks:
    /// a result branch a crash kept from being made is restored even when no task is left
    /// to run there.
    pub(crate) async fn tidy_finished(&self, events: &mpsc::UnboundedSender<Event>) {
        let mut repos = BTreeSet::new();
        for status in [TaskStatus::Completed, TaskStatus::PossibleBug] {
            let filter = TaskFilter {
                status: Some(status),
                ..TaskFilter::default()
            };
            match self.store.list(&filter).await {
                Ok(tasks) => repos.extend(tasks.iter().filter_map(|t| self.clone_of(t))),
                Err(e) => {
                    let _ = events.send(Event::Warning(format!(
                        "could not list {status} tasks: {e}"
                    )));
                    return;
                }
            }
        }
        for root in repos {
            self.tidy(&Repo::at(root), events).await;
        }
    }

    /// Removes the worktrees that workers which died left on this machine: in the
    /// repositories of the tasks whose leases were just rescued, and in those this run works
    /// on.
    pub(crate) async fn sweep_abandoned_worktrees(
        &self,
        rescued: &[Rescued],
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let mut roots: BTreeSet<PathBuf> = (self.tidied.lock().expect("not poisoned").iter())
            .cloned()
            .collect();
        for rescued in rescued {
            if let Ok(task) = self.store.find(&rescued.id.to_string()).await
                && let Some(root) = self.clone_of(&task)
            {
                roots.insert(root);
            }
        }
        for root in roots {
            let repo = Repo::at(root);
            for problem in WorktreePool::sweep_abandoned(&repo, &repo.worktrees_dir()).await {
                let _ = events.send(Event::Warning(problem));
            }
        }
    }

    /// The clone of `task`'s repository on this machine, if there is one already.
    fn clone_of(&self, task: &Task) -> Option<PathBuf> {
        let identity = RepoIdentity {
            path: &task.repo,
            url: task.repo_url.as_deref(),
            base_commit: &task.base_commit,
        };
        existing_clone(identity, &self.repos)
    }

    pub(crate) async fn tidy(&self, repo: &Repo, events: &mpsc::UnboundedSender<Event>) {
        if !self
            .tidied
            .lock()
            .expect("not poisoned")
            .insert(repo.root().to_path_buf())
        {
            return;
        }
        let warn = |message: String| {
            let _ = events.send(Event::Warning(message));
        };
        for problem in WorktreePool::sweep_abandoned(repo, &repo.worktrees_dir()).await {
            warn(problem);
        }
        if !self.settings.keep_worktrees {
            let dirs = [repo.worktrees_dir(), repo.legacy_worktrees_dir()];
            let entries = dirs
                .iter()
                .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Pooled worktrees (and their locks) are the pool's: swept above.
                if name.starts_with(POOL_PREFIX) {
                    continue;
                }
                let still_running = match name.rsplit_once('-') {
                    Some((id, attempt)) => match self.store.find(id).await {
                        Ok(t) => {
                            t.status == TaskStatus::Running && t.attempts.to_string() == attempt
                        }
                        Err(_) => false,
                    },
                    None => false,
                };
                if !still_running && let Err(e) = repo.remove_worktree(&entry.path()).await {
                    warn(format!(
                        "could not remove stale worktree {}: {e}",
                        entry.path().display()
                    ));
                }
            }
        }
        let existing: HashSet<String> = match repo.branches_with_prefix("pitcrew/").await {
            Ok(b) => b.into_iter().collect(),
            Err(e) => return warn(format!("could not list pitcrew branches: {e}")),
        };
        for status in [
            TaskStatus::Completed,
            TaskStatus::PossibleBug,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            let finished = match self
                .store
                .list(&TaskFilter {
                    status: Some(status),
                    ..TaskFilter::default()
                })
                .await
            {
                Ok(tasks) => tasks,
                Err(e) => return warn(format!("could not list {status} tasks: {e}")),
            };
            let here = |t: &&Task| self.clone_of(t).is_some_and(|c| c == repo.root());
            for task in finished.iter().filter(here) {
                let name = task.id.branch_name();
                if matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
                    // A worker killed between making the branch and recording the result
                    // left it; the task ended without a result since.
                    if existing.contains(&name) {
                        self.remove_unkept_branch(repo, &name, &warn).await;
                    }
                    continue;
                }
                let (Some(commit), false) = (
                    &task.result_commit,
                    existing.contains(&task.id.branch_name()),
                ) else {
                    continue;
                };
                // The commit lives in this clone only if this machine ran the task.
                if repo.resolve_commit(commit).await.is_err() {
                    continue;
                }
                if let Err(e) = repo.create_branch(&task.id.branch_name(), commit).await {
                    warn(format!(
                        "could not restore branch {}: {e}",
                        task.id.branch_name()
                    ));
                }
            }
        }
    }

    async fn remove_unkept_branch(&self, repo: &Repo, name: &str, warn: &impl Fn(String)) {
        let removed = match repo.branch_commit(name).await {
            Ok(Some(commit)) => repo.move_branch_from(name, &commit, None).await,
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        match removed {
            Ok(true) => warn(format!(
                "removed branch {name}: its task ended without a result, the branch was left \
                 by a worker that died while finishing an earlier attempt"
            )),
            Ok(false) => {}
            Err(e) => warn(format!("could not remove branch {name}: {e}")),
        }
    }
}
