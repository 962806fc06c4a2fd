//! `bench_all --smoke`: every benchmark runs at tiny sizes and its section of a BENCHMARKS.md
//! template gets its output. Nothing is timed; this checks that the benchmarks still run and
//! that the runner finds and fills every marker.

use std::path::Path;
use std::process::Command;

/// The marker of every run `bench_all` makes, as BENCHMARKS.md must carry them.
const MARKERS: [&str; 10] = [
    "engine_overhead_small",
    "engine_overhead_stdlib",
    "concurrency",
    "router_goodput",
    "router_chaos",
    "store_throughput",
    "syntax_gate",
    "sandbox_overhead",
    "mutation_stage",
    "cli_startup",
];

const PLACEHOLDER: &str = "figures go here";

fn template() -> String {
    let mut doc = String::from("# Benchmarks\n\n");
    for name in MARKERS {
        doc += &format!(
            "## {name}\n\ntext before\n\n<!-- figures: {name} -->\n{PLACEHOLDER}\n<!-- /figures -->\n\ntext after\n\n"
        );
    }
    doc
}

/// What stands between `name`'s markers in `doc`.
fn section<'a>(doc: &'a str, name: &str) -> &'a str {
    let open = format!("<!-- figures: {name} -->\n");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("{name}: marker lost"))
        + open.len();
    let len = doc[start..]
        .find("<!-- /figures -->")
        .unwrap_or_else(|| panic!("{name}: closing marker lost"));
    &doc[start..start + len]
}

#[test]
fn every_benchmark_runs_at_tiny_sizes_and_fills_its_section() {
    let runner = Path::new(env!("CARGO_BIN_EXE_bench_all"));
    let pitcrew = runner.with_file_name("pitcrew");
    assert!(
        pitcrew.is_file(),
        "{} is missing; several benchmarks drive the CLI: build it first \
         (`cargo build -p pitcrew`, or `cargo test --workspace`, which builds it for its tests)",
        pitcrew.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("BENCHMARKS.md");
    std::fs::write(&path, template()).expect("template written");

    let out = Command::new(runner)
        .args(["--smoke", "--out"])
        .arg(&path)
        .output()
        .expect("bench_all runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench_all --smoke failed:\n{stderr}");

    let doc = std::fs::read_to_string(&path).expect("output readable");
    for name in MARKERS {
        let figures = section(&doc, name);
        let text = figures
            .strip_prefix("```text\n")
            .and_then(|f| f.strip_suffix("```\n"))
            .unwrap_or_else(|| panic!("{name}: not a text block: {figures:?}"));
        assert!(!text.trim().is_empty(), "{name}: empty figures");
        assert!(!text.contains(PLACEHOLDER), "{name}: not replaced");
    }
    assert_eq!(doc.matches("text before").count(), MARKERS.len());
    assert_eq!(doc.matches("text after").count(), MARKERS.len());
}
