//! The static rules: everything that can be judged by reading the written files, in process.

mod assertions;
mod imports;
mod integrity;
mod naming;
mod placeholders;

use std::path::Path;

use pitcrew_core::Finding;

use crate::rules::Rule;
use crate::syntax::{SyntaxCheck, check_syntax, parse};
use crate::testfns::Written;

pub(crate) use assertions::assertions;
pub(crate) use imports::imports_target;
pub(crate) use integrity::test_integrity;
pub(crate) use naming::test_naming;
pub(crate) use placeholders::no_placeholders;

/// The written files as found in the worktree, with `file_exists` and `not_empty` findings.
/// Files missing, unreadable or empty are left out of the returned list: no later rule can
/// judge them.
pub(crate) fn read_files(
    worktree: &Path,
    paths: &[String],
) -> (Vec<Written>, Vec<Finding>, Vec<Finding>) {
    let (mut files, mut missing, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    let exists = Rule::FileExists.as_str();
    for path in paths {
        let full = worktree.join(path);
        if !full.is_file() {
            let what = if full.is_dir() {
                "is a directory, not a file"
            } else {
                "does not exist in the worktree"
            };
            missing
                .push(Finding::error(exists, format!("`{path}` {what}: write it")).in_file(path));
            continue;
        }
        let source = match std::fs::read(&full).map(String::from_utf8) {
            Ok(Ok(source)) => source,
            Ok(Err(_)) => {
                missing.push(
                    Finding::error(exists, format!("`{path}` is not UTF-8 text")).in_file(path),
                );
                continue;
            }
            Err(e) => {
                missing.push(
                    Finding::error(exists, format!("`{path}` cannot be read: {e}")).in_file(path),
                );
                continue;
            }
        };
        if source.trim().is_empty() {
            empty.push(
                Finding::error(
                    Rule::NotEmpty.as_str(),
                    format!("`{path}` is empty: write its complete content"),
                )
                .in_file(path),
            );
            continue;
        }
        files.push(Written {
            language: crate::Language::from_path(path),
            path: path.clone(),
            source,
            tree: None,
        });
    }
    (files, missing, empty)
}

/// The tree-sitter gate on every file. Files that parse get their tree, which the later
/// static rules read; files that do not are judged by no later rule.
pub(crate) fn syntax(files: &mut [Written]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files {
        let verdict = check_syntax(&file.path, &file.source);
        if let SyntaxCheck::Valid { language } = verdict {
            file.tree = Some(parse(language, &file.source));
        }
        findings.extend(verdict.to_finding(&file.path));
    }
    findings
}

/// `1-3, 7, 9-10` for messages about line numbers.
pub(crate) fn line_ranges(lines: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests;
