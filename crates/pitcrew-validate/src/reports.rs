//! Readers for the reports test runners and coverage tools write: JUnit XML, coverage.py
//! JSON, Cobertura XML and lcov. Lenient about what they do not need, strict about what they
//! do: a report that lacks it is an error, never an empty result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::settings::CoverageFormat;

/// A report that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable {format} report: {message}")]
pub struct ReportError {
    format: &'static str,
    message: String,
}

fn report_error(format: &'static str, message: impl fmt::Display) -> ReportError {
    ReportError {
        format,
        message: message.to_string(),
    }
}

/// The largest report read back from a tool: the test run writes it, and the test run is
/// code a model wrote.
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a report a tool wrote, refusing one larger than [`MAX_REPORT_BYTES`].
pub(crate) fn read_report(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is larger than {MAX_REPORT_BYTES} bytes, the most pitcrew reads of a report",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(std::io::Error::other)
}

/// One `<testcase>` of a JUnit report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub classname: String,
    pub name: String,
    /// pytest's `xunit1` family writes the file relative to its rootdir.
    pub file: Option<String>,
    /// 1-based (pytest writes 0-based lines; they are converted here).
    pub line: Option<u32>,
    /// How long it ran (setup and teardown included), from the report's `time`.
    pub duration_ms: Option<u64>,
    pub result: CaseResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    Passed,
    /// An assertion or exception in the test body.
    Failed {
        message: String,
        details: String,
    },
    /// A failure outside the test body: a fixture, setup, teardown or collection.
    Errored {
        message: String,
        details: String,
    },
    /// Skipped, or (`xfail`) expected to fail and failed.
    Skipped {
        message: String,
        xfail: bool,
    },
}

/// The test cases of a JUnit XML report, in document order, from `<testsuites>` or a bare
/// `<testsuite>`.
pub fn parse_junit(xml: &str) -> Result<Vec<TestCase>, ReportError> {
    const FORMAT: &str = "JUnit XML";
    let doc = roxmltree::Document::parse(xml).map_err(|e| report_error(FORMAT, e))?;
    let root = doc.root_element();
    if !matches!(root.tag_name().name(), "testsuites" | "testsuite") {
        return Err(report_error(
            FORMAT,
            format!("root element is <{}>", root.tag_name().name()),
        ));
    }
    let cases = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
            let message = |n: roxmltree::Node| n.attribute("message").unwrap_or("").to_string();
            let details = |n: roxmltree::Node| n.text().unwrap_or("").to_string();
            let result = if let Some(n) = child("failure") {
                CaseResult::Failed {
                    message: message(n),
                    details: details(n),
                }
            } else if let Some(n) = child("error") {
                CaseResult::Errored {
                    message: message(n),
                    details: details(n),
                }
            } else if let Some(n) = child("skipped") {
                CaseResult::Skipped {
                    message: message(n),
                    xfail: n.attribute("type") == Some("pytest.xfail"),
                }
            } else {
                CaseResult::Passed
            };
            TestCase {
                classname: case.attribute("classname").unwrap_or("").to_string(),
                name: case.attribute("name").unwrap_or("").to_string(),
                file: case.attribute("file").map(str::to_string),
                line: case
                    .attribute("line")
                    .and_then(|l| l.parse::<u32>().ok())
                    .and_then(|l| l.checked_add(1)),
                duration_ms: case
                    .attribute("time")
                    .and_then(|t| t.parse::<f64>().ok())
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| (t * 1000.0).round() as u64),
                result,
            }
        })
        .collect();
    Ok(cases)
}

/// The line coverage of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCoverage {
    /// Executable lines that ran.
    pub executed: BTreeSet<u32>,
    /// Executable lines that did not.
    pub missing: BTreeSet<u32>,
}

/// Coverage by file path, as the report names files (relative or absolute).
pub type Coverage = BTreeMap<String, FileCoverage>;

/// Reads a coverage report of `format`.
pub fn parse_coverage(format: CoverageFormat, text: &str) -> Result<Coverage, ReportError> {
    match format {
        CoverageFormat::CoverageJson => parse_coverage_json(text),
        CoverageFormat::Cobertura => parse_cobertura(text),
        CoverageFormat::Lcov => parse_lcov(text),
    }
}

/// coverage.py's `coverage json`: `files.<path>.executed_lines` and `.missing_lines`.
fn parse_coverage_json(text: &str) -> Result<Coverage, ReportError> {
    const FORMAT: &str = "coverage.py JSON";
    #[derive(serde::Deserialize)]
    struct Report {
        files: BTreeMap<String, File>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        executed_lines: Vec<u32>,
        missing_lines: Vec<u32>,
    }
    let report: Report = serde_json::from_str(text).map_err(|e| report_error(FORMAT, e))?;
    Ok(report
        .files
        .into_iter()
        .map(|(path, file)| {
            let executed: BTreeSet<u32> = file.executed_lines.into_iter().collect();
            // As in the other formats, a line that ran anywhere counts as executed.
            let missing = (file.missing_lines.into_iter())
                .filter(|line| !executed.contains(line))
                .collect();
            (path, FileCoverage { executed, missing })
        })
        .collect())
}

/// Cobertura XML: `<class filename="…"><lines><line number="…" hits="…"/>`. A file split
/// over several classes (nested classes in Java) is merged.
fn parse_cobertura(text: &str) -> Result<Coverage, ReportError> {
    const FORMAT: &str = "Cobertura XML";
    let doc = roxmltree::Document::parse(text).map_err(|e| report_error(FORMAT, e))?;
    if !doc.root_element().has_tag_name("coverage") {
        return Err(report_error(FORMAT, "root element is not <coverage>"));
    }
    let mut coverage = Coverage::new();
    for class in doc.descendants().filter(|n| n.has_tag_name("class")) {
        let file = class
            .attribute("filename")
            .ok_or_else(|| report_error(FORMAT, "<class> without filename"))?;
        let entry = coverage.entry(file.to_string()).or_default();
        // Only the class's own <lines>: <methods> repeat the same lines.
        let lines = class
            .children()
            .filter(|n| n.has_tag_name("lines"))
            .flat_map(|n| n.children())
            .filter(|n| n.has_tag_name("line"));
        for line in lines {
            let number = attribute_u64(line, "number", FORMAT)?;
            let hits = attribute_u64(line, "hits", FORMAT)?;
            record(entry, number, hits, FORMAT)?;
        }
    }
    Ok(coverage)
}

fn attribute_u64(
    node: roxmltree::Node,
    name: &str,
    format: &'static str,
) -> Result<u64, ReportError> {
    let value = node
        .attribute(name)
        .ok_or_else(|| report_error(format, format!("<line> without {name}")))?;
    value
        .parse()
        .map_err(|_| report_error(format, format!("<line {name}=\"{value}\"> is not a number")))
}

/// Adds one line's hit count; a line hit anywhere counts as executed.
fn record(
    file: &mut FileCoverage,
    line: u64,
    hits: u64,
    format: &'static str,
) -> Result<(), ReportError> {
    let line = u32::try_from(line).map_err(|_| report_error(format, "line number too large"))?;
    if hits > 0 {
        file.missing.remove(&line);
        file.executed.insert(line);
    } else if !file.executed.contains(&line) {
        file.missing.insert(line);
    }
    Ok(())
}

/// lcov tracefiles: `SF:<path>`, `DA:<line>,<hits>[,<checksum>]`, `end_of_record`.
fn parse_lcov(text: &str) -> Result<Coverage, ReportError> {
    const FORMAT: &str = "lcov";
    let mut coverage = Coverage::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let bad = |what: &str| report_error(FORMAT, format!("line {}: {what}", i + 1));
        if let Some(path) = line.strip_prefix("SF:") {
            coverage.entry(path.to_string()).or_default();
            current = Some(path.to_string());
        } else if let Some(data) = line.strip_prefix("DA:") {
            let file = current.as_ref().ok_or_else(|| bad("DA before SF"))?;
            let mut fields = data.split(',');
            let (Some(number), Some(hits)) = (fields.next(), fields.next()) else {
                return Err(bad("DA needs a line and a hit count"));
            };
            let number = number.parse().map_err(|_| bad("bad line number"))?;
            // Some tools write negative or fractional counts for "not executable"; only
            // zero versus positive matters here.
            let hits = hits.parse::<f64>().map_err(|_| bad("bad hit count"))?;
            let entry = coverage.get_mut(file).expect("SF inserted the entry");
            record(entry, number, u64::from(hits > 0.0), FORMAT)?;
        } else if line == "end_of_record" {
            current = None;
        }
    }
    Ok(coverage)
}

#[cfg(test)]
mod tests;
