use pitcrew_testkit::TempRepo;

#[test]
fn with_files_commits_them_on_main_with_local_identity() {
    let repo = TempRepo::with_files(&[
        ("src/lib.py", "def add(a, b):\n    return a + b\n"),
        ("README.md", "hi\n"),
    ]);
    assert_eq!(repo.git(&["branch", "--show-current"]), "main");
    assert_eq!(repo.git(&["log", "--format=%s"]), "initial");
    assert_eq!(repo.git(&["ls-files"]), "README.md\nsrc/lib.py");
    assert_eq!(
        repo.git(&["config", "--local", "user.name"]),
        "Pitcrew Test"
    );
    assert_eq!(repo.git(&["config", "--local", "commit.gpgsign"]), "false");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn commit_returns_the_new_sha() {
    let repo = TempRepo::with_files(&[("a.txt", "1\n")]);
    let initial = repo.git(&["rev-parse", "HEAD"]);
    repo.write("deep/nested/b.txt", "2\n");
    assert!(repo.path().join("deep/nested/b.txt").is_file());

    let sha = repo.commit("add b");
    assert_eq!(sha.len(), 40);
    assert_eq!(repo.git(&["rev-parse", "HEAD^"]), initial);
    assert_eq!(
        repo.git(&["show", "--format=%an <%ae>", "--no-patch", &sha]),
        "Pitcrew Test <test@pitcrew.invalid>"
    );
}

#[test]
#[should_panic(expected = "git checkout no-such-branch failed")]
fn git_failures_panic_with_the_command() {
    TempRepo::new().git(&["checkout", "no-such-branch"]);
}
