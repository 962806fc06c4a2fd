//! Every command explains itself.

#[test]
fn every_command_has_help_and_aliases_resolve() {
    let pitcrew = || assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
    let top = pitcrew().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout).into_owned();
    assert!(top.status.success());
    assert!(text.contains("Exit codes: 0"), "{text}");
    for command in [
        "init", "submit", "status", "list", "queue", "cancel", "retry", "show", "run",
    ] {
        assert!(text.contains(command), "`{command}` missing from --help");
        let out = pitcrew().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(help.contains("Usage: pitcrew"), "{help}");
    }
    for (alias, flag) in [
        ("submit-task", "--idempotency-key"),
        ("get-status", "--json"),
        ("queue-stats", "--json"),
        ("run-engine", "--workers"),
    ] {
        let out = pitcrew().args([alias, "--help"]).output().unwrap();
        assert!(out.status.success(), "{alias}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{alias} --help lacks {flag}"
        );
    }
    pitcrew().arg("frobnicate").assert().code(2);
}
