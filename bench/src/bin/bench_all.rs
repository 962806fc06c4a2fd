//! Runs every benchmark and puts its output into BENCHMARKS.md, so the figures there come
//! from one command.
//!
//! Each run's stdout replaces what stands between the lines `<!-- figures: NAME -->` and
//! `<!-- /figures -->` (as a `text` block); the file is rewritten after every run, so a late
//! failure keeps the earlier figures. Every marker is checked before anything runs. The
//! benchmarks are the binaries built next to this one, `pitcrew` included.
//!
//! ```sh
//! cargo build --release -p pitcrew -p pitcrew-bench
//! target/release/bench_all                              # every benchmark, full size (long)
//! target/release/bench_all --only concurrency,cli_startup
//! target/release/bench_all --smoke --out /tmp/BENCHMARKS.md   # tiny sizes, all at once
//! ```
//!
//! Progress goes to stderr, as does each benchmark's stderr. A failing benchmark does not
//! stop the others; the runner then exits non-zero naming it. `--smoke` checks that every
//! benchmark still runs (bench/tests/smoke.rs): tiny sizes, all benchmarks at once, and only
//! to another file (`--out`), since its figures mean nothing.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pitcrew_bench::find_sibling;

/// One benchmark run and where its figures go.
#[derive(Debug)]
struct Run {
    /// Its marker in BENCHMARKS.md: `<!-- figures: NAME -->`.
    name: &'static str,
    binary: &'static str,
    /// Arguments of the full-size run, as BENCHMARKS.md quotes it.
    full: &'static [&'static str],
    /// Arguments and environment of the tiny run (`--smoke`).
    smoke: &'static [&'static str],
    smoke_env: &'static [(&'static str, &'static str)],
}

const RUNS: &[Run] = &[
    Run {
        name: "engine_overhead_small",
        binary: "engine_overhead",
        full: &["--tasks", "2000", "--workers", "4"],
        smoke: &["--tasks", "2", "--workers", "1"],
        smoke_env: &[],
    },
    Run {
        name: "engine_overhead_stdlib",
        binary: "engine_overhead",
        full: &["--tasks", "300", "--workers", "2", "--stdlib"],
        smoke: &["--tasks", "1", "--workers", "1", "--stdlib"],
        smoke_env: &[],
    },
    Run {
        name: "concurrency",
        binary: "concurrency",
        full: &["--levels", "10,100,1000,2000", "--secs", "10"],
        smoke: &["--levels", "5,20", "--secs", "1"],
        smoke_env: &[],
    },
    Run {
        name: "router_goodput",
        binary: "router_goodput",
        full: &[],
        smoke: &[],
        smoke_env: &[("PITCREW_BENCH_GOODPUT_SECS", "2")],
    },
    Run {
        name: "router_chaos",
        binary: "router_chaos",
        full: &[],
        smoke: &[],
        smoke_env: &[("PITCREW_BENCH_CHAOS_SECS", "2")],
    },
    Run {
        name: "store_throughput",
        binary: "store_throughput",
        full: &[],
        smoke: &["--smoke"],
        smoke_env: &[],
    },
    Run {
        name: "syntax_gate",
        binary: "syntax_gate",
        full: &[],
        smoke: &["--smoke"],
        smoke_env: &[],
    },
    Run {
        name: "sandbox_overhead",
        binary: "sandbox_overhead",
        full: &["--runs", "50"],
        smoke: &["--runs", "2"],
        smoke_env: &[],
    },
    Run {
        name: "mutation_stage",
        binary: "mutation_stage",
        full: &["--runs", "5"],
        smoke: &["--runs", "1", "--modules", "1"],
        smoke_env: &[],
    },
    Run {
        name: "cli_startup",
        binary: "cli_startup",
        full: &["--tasks", "100000", "--runs", "30"],
        smoke: &["--tasks", "200", "--runs", "2"],
        smoke_env: &[],
    },
];

const CLOSE: &str = "<!-- /figures -->";

fn open_marker(name: &str) -> String {
    format!("<!-- figures: {name} -->")
}

/// The byte range of the first line at or after `from` that reads `wanted` (trailing
/// whitespace aside), its line break included.
fn find_line(doc: &str, wanted: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    for line in doc[from..].split_inclusive('\n') {
        let next = at + line.len();
        if line.trim_end() == wanted {
            return Some((at, next));
        }
        at = next;
    }
    None
}

/// Where `name`'s figures go in `doc`: the byte range between its two marker lines.
fn section(doc: &str, name: &str) -> Result<(usize, usize), String> {
    let open = open_marker(name);
    let (_, start) =
        find_line(doc, &open, 0).ok_or_else(|| format!("no `{open}` line (for {name})"))?;
    let (end, _) =
        find_line(doc, CLOSE, start).ok_or_else(|| format!("no `{CLOSE}` after `{open}`"))?;
    if doc[start..end].contains("<!-- figures:") {
        return Err(format!("`{open}` is not closed before the next marker"));
    }
    Ok((start, end))
}

/// `doc` with `name`'s section holding `figures` in a `text` block.
fn replace_figures(doc: &str, name: &str, figures: &str) -> Result<String, String> {
    let (start, end) = section(doc, name)?;
    let mut out = doc[..start].to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out += "```text\n";
    out += figures.trim_end();
    out += "\n```\n";
    out += &doc[end..];
    Ok(out)
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    smoke: bool,
    out: Option<PathBuf>,
    only: Option<Vec<String>>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        smoke: false,
        out: None,
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} wants a value"));
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--out" => options.out = Some(PathBuf::from(value()?)),
            "--only" => {
                options.only = Some(value()?.split(',').map(|n| n.trim().to_string()).collect());
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --smoke, --out PATH, --only NAME,..."
                ));
            }
        }
    }
    if options.smoke && options.out.is_none() {
        return Err("--smoke figures are not for BENCHMARKS.md: give --out PATH".into());
    }
    Ok(options)
}

/// The runs `only` names (all when `None`), in the order of [`RUNS`].
fn select(only: Option<&[String]>) -> Result<Vec<&'static Run>, String> {
    let Some(names) = only else {
        return Ok(RUNS.iter().collect());
    };
    if let Some(unknown) = names.iter().find(|n| !RUNS.iter().any(|r| r.name == *n)) {
        let known: Vec<&str> = RUNS.iter().map(|r| r.name).collect();
        return Err(format!(
            "--only: no benchmark named {unknown:?}; known: {}",
            known.join(", ")
        ));
    }
    Ok(RUNS
        .iter()
        .filter(|r| names.iter().any(|n| n == r.name))
        .collect())
}

/// Every binary the runs need (`pitcrew` too), or what is missing and how to build it.
fn check_binaries(runs: &[&Run]) -> Result<(), String> {
    let mut names: Vec<&str> = runs.iter().map(|r| r.binary).collect();
    names.push("pitcrew");
    names.sort_unstable();
    names.dedup();
    let missing: Vec<String> = names
        .into_iter()
        .filter_map(|name| find_sibling(name).err())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

/// Runs one benchmark; its stdout, or why it failed.
fn run(bench: &Run, smoke: bool) -> Result<String, String> {
    let binary = find_sibling(bench.binary)?;
    let args = if smoke { bench.smoke } else { bench.full };
    let mut command = Command::new(&binary);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (var, value) in bench.smoke_env {
        // A size left in the environment must not shrink a full run.
        if smoke {
            command.env(var, value);
        } else {
            command.env_remove(var);
        }
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!("{} {}", bench.binary, out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{} printed non-UTF-8", bench.binary))
}

/// Says on stderr that `bench` starts, as the `i`th of `total`, and how it is run.
fn announce(i: usize, total: usize, bench: &Run, smoke: bool) {
    let mut words: Vec<String> = Vec::new();
    if smoke {
        words.extend(
            bench
                .smoke_env
                .iter()
                .map(|(var, value)| format!("{var}={value}")),
        );
    }
    words.push(bench.binary.to_string());
    words.extend(
        (if smoke { bench.smoke } else { bench.full })
            .iter()
            .map(|a| a.to_string()),
    );
    eprintln!(
        "bench_all: [{}/{total}] {}: {}",
        i + 1,
        bench.name,
        words.join(" ")
    );
}

/// [`run`], and how long it took.
fn timed(bench: &Run, smoke: bool) -> (Result<String, String>, Duration) {
    let started = Instant::now();
    (run(bench, smoke), started.elapsed())
}

/// Puts a successful run's figures into `path`, or adds a failed one to `failed`.
fn record(
    bench: &Run,
    (result, took): (Result<String, String>, Duration),
    path: &Path,
    failed: &mut Vec<String>,
) -> Result<(), String> {
    match result {
        Ok(figures) => {
            let doc = replace_figures(&read(path)?, bench.name, &figures)?;
            std::fs::write(path, doc)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "bench_all: {} done in {:.1} s",
                bench.name,
                took.as_secs_f64()
            );
        }
        Err(why) => {
            eprintln!("bench_all: {} FAILED: {why}", bench.name);
            failed.push(bench.name.to_string());
        }
    }
    Ok(())
}

/// Runs `runs` and rewrites `path` with each success; the names of those that failed. Full
/// runs go one at a time, so none disturbs another's figures; smoke runs all at once, since
/// their figures are not read and most of them wait on timers.
fn run_all(runs: &[&Run], smoke: bool, path: &Path) -> Result<Vec<String>, String> {
    let mut failed = Vec::new();
    if !smoke {
        for (i, bench) in runs.iter().enumerate() {
            announce(i, runs.len(), bench, smoke);
            record(bench, timed(bench, smoke), path, &mut failed)?;
        }
        return Ok(failed);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .enumerate()
            .map(|(i, bench)| {
                announce(i, runs.len(), bench, smoke);
                scope.spawn(move || timed(bench, smoke))
            })
            .collect();
        for (bench, handle) in runs.iter().zip(handles) {
            let outcome = handle.join().expect("a runner thread panicked");
            record(bench, outcome, path, &mut failed)?;
        }
        Ok(failed)
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn main_result() -> Result<Vec<String>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse_options(&args)?;
    let runs = select(options.only.as_deref())?;
    let path = options
        .out
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md"));
    let doc = read(&path)?;
    let problems: Vec<String> = runs
        .iter()
        .filter_map(|r| section(&doc, r.name).err())
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "{} lacks figure markers:\n  {}",
            path.display(),
            problems.join("\n  ")
        ));
    }
    check_binaries(&runs)?;
    run_all(&runs, options.smoke, &path)
}

fn main() -> ExitCode {
    match main_result() {
        Ok(failed) if failed.is_empty() => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("bench_all: failed: {}", failed.join(", "));
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("bench_all: {why}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_replace_what_stands_between_the_markers() {
        let doc = "# B\n<!-- figures: a -->\nold\nlines\n<!-- /figures -->\ntail\n\
                   <!-- figures: b -->\n<!-- /figures -->\n";
        let once = replace_figures(doc, "a", "x: 1\n\n").unwrap();
        assert_eq!(
            once,
            "# B\n<!-- figures: a -->\n```text\nx: 1\n```\n<!-- /figures -->\ntail\n\
             <!-- figures: b -->\n<!-- /figures -->\n"
        );
        // Idempotent in shape: running again replaces the block, not nests it.
        assert_eq!(replace_figures(&once, "a", "x: 1").unwrap(), once);
        let both = replace_figures(&once, "b", "y").unwrap();
        assert!(both.ends_with("<!-- figures: b -->\n```text\ny\n```\n<!-- /figures -->\n"));
    }

    #[test]
    fn missing_or_unclosed_markers_are_named() {
        let err = replace_figures("nothing here\n", "concurrency", "x").unwrap_err();
        assert!(err.contains("<!-- figures: concurrency -->"), "{err}");
        let unclosed = "<!-- figures: a -->\n<!-- figures: b -->\n<!-- /figures -->\n";
        assert!(section(unclosed, "a").unwrap_err().contains("not closed"));
        assert!(section("<!-- figures: a -->\n", "a").is_err());
    }

    #[test]
    fn options_need_an_output_for_smoke_runs_and_known_names() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_options(&args(&["--smoke"])).is_err());
        let options =
            parse_options(&args(&["--smoke", "--out", "/tmp/B.md", "--only", "a, b"])).unwrap();
        assert_eq!(options.only.as_deref(), Some(&["a".into(), "b".into()][..]));
        assert!(parse_options(&args(&["--fast"])).is_err());
        assert!(select(Some(&["nope".into()])).is_err());
        let picked = select(Some(&["cli_startup".into(), "concurrency".into()])).unwrap();
        let names: Vec<&str> = picked.iter().map(|r| r.name).collect();
        assert_eq!(names, ["concurrency", "cli_startup"]);
        assert_eq!(select(None).unwrap().len(), RUNS.len());
    }

    #[test]
    fn marker_names_are_unique() {
        let mut names: Vec<&str> = RUNS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RUNS.len());
    }
}
