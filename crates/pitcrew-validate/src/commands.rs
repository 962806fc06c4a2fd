//! Rules that are commands: the toolchain gate per language and the project's own command
//! rules. A command that fails is a finding quoting its output and, where the output names
//! a written file and line, located there.

use std::path::Path;

use pitcrew_core::{Finding, Severity};
use pitcrew_sandbox::Output;

use crate::Language;
use crate::error::ValidateError;
use crate::rules::Rule;
use crate::sandbox::{Sandbox, quote_all};
use crate::settings::CommandRule;
use crate::testfns::Written;

/// Lines of a failing command's output quoted in its finding.
const TAIL_LINES: usize = 30;

/// Runs each language's toolchain command on the parsed files of that language. `None` when
/// no written file has a language with a configured command.
pub(crate) async fn toolchain(
    sandbox: &Sandbox<'_>,
    worktree: &Path,
    files: &[Written],
) -> Result<Option<Vec<Finding>>, ValidateError> {
    let settings = &sandbox.settings().toolchain;
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for file in files.iter().filter(|f| f.tree.is_some()) {
        let command = match file.language {
            Some(Language::Python) => &settings.python,
            Some(Language::Rust) => &settings.rust,
            Some(Language::JavaScript) => &settings.javascript,
            Some(Language::TypeScript | Language::Tsx) => &settings.typescript,
            Some(Language::Go) => &settings.go,
            None => continue,
        };
        if command.trim().is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(c, _)| *c == command.as_str()) {
            Some((_, paths)) => paths.push(&file.path),
            None => groups.push((command, vec![&file.path])),
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let mut findings = Vec::new();
    for (command, paths) in groups {
        let quoted = quote_all(paths.iter().copied());
        let command = if command.contains("{files}") {
            command.replace("{files}", &quoted)
        } else {
            format!("{command} {quoted}")
        };
        let out = sandbox
            .shell(worktree, &command, &sandbox.bytecode_elsewhere())
            .await?;
        findings.extend(failure(
            Rule::Toolchain.as_str(),
            Severity::Error,
            &command,
            &out,
            &paths,
        ));
    }
    Ok(Some(findings))
}

/// Runs one project command rule; `{files}` becomes the written files.
pub(crate) async fn command_rule(
    sandbox: &Sandbox<'_>,
    worktree: &Path,
    rule: &CommandRule,
    paths: &[&str],
) -> Result<Vec<Finding>, ValidateError> {
    let command = rule
        .command
        .replace("{files}", &quote_all(paths.iter().copied()));
    let out = sandbox
        .shell(worktree, &command, &sandbox.bytecode_elsewhere())
        .await?;
    Ok(failure(&rule.id, rule.severity, &command, &out, paths)
        .into_iter()
        .collect())
}

fn failure(
    rule: &str,
    severity: Severity,
    command: &str,
    out: &Output,
    paths: &[&str],
) -> Option<Finding> {
    if out.success() {
        return None;
    }
    let message = format!(
        "`{command}` failed ({}):\n{}",
        out.describe_status(),
        out.combined_tail(TAIL_LINES)
    );
    let mut finding = Finding::new(rule, severity, message);
    if let Some((file, line)) = locate(&format!("{}\n{}", out.stderr, out.stdout), paths) {
        finding = finding.in_file(file).at_line(line);
    }
    Some(finding)
}

/// The first place in `output` naming one of `paths` with a line: `path:12` (most tools) or
/// `File "path", line 12` (Python).
fn locate<'p>(output: &str, paths: &[&'p str]) -> Option<(&'p str, u32)> {
    for line in output.lines() {
        for &path in paths {
            let Some(at) = line.find(path) else { continue };
            let rest = &line[at + path.len()..];
            let digits = rest
                .strip_prefix(':')
                .or_else(|| rest.strip_prefix("\", line "))
                .map(|r| {
                    r.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                });
            if let Some(number) = digits.and_then(|d| d.parse().ok()) {
                return Some((path, number));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_reads_python_and_compiler_style_locations() {
        let paths = ["tests/test_a.py", "src/lib.rs"];
        let py = "  File \"tests/test_a.py\", line 7\n    def f(:\nSyntaxError: invalid syntax";
        assert_eq!(locate(py, &paths), Some(("tests/test_a.py", 7)));
        let rustc = "error[E0425]: cannot find value\n --> src/lib.rs:12:5";
        assert_eq!(locate(rustc, &paths), Some(("src/lib.rs", 12)));
        assert_eq!(locate("all good", &paths), None);
    }
}
