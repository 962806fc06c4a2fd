//! How fast the in-process syntax gate (`pitcrew_validate::check_syntax`, tree-sitter) is on
//! real source, next to the toolchain gate it precedes, `python3 -m py_compile`.
//!
//! - Corpora: every `.py` file of the Python standard library (`sysconfig`'s `stdlib`
//!   path, without `site-packages`) and every `.rs` file of this repository.
//! - In process: one thread checks every file of a corpus; files/s and MB/s, median of
//!   7 runs.
//! - `py_compile`: a sample of 100 stdlib files (every n-th, so sizes are typical),
//!   once as one `python3 -m py_compile FILE` process per file (what a per-file gate
//!   costs) and once as one process for the whole sample (how `toolchain` runs it); median
//!   of 3 runs, bytecode written to a temporary directory. The in-process gate is
//!   timed on the same sample for the ratio.
//!
//! `cargo run --release -p pitcrew-bench --bin syntax_gate` (`--smoke`: a few files, one run
//! each, to check that it works)

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pitcrew_bench::{flag, median, rate, report};
use pitcrew_validate::{SyntaxCheck, check_syntax};

/// How much work each measurement does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// In-process passes over each corpus.
    runs: usize,
    /// `py_compile` runs over the sample.
    py_runs: usize,
    /// Stdlib files in the `py_compile` sample.
    sample: usize,
    /// Files kept of each corpus (`None`: all).
    max_files: Option<usize>,
}

const FULL: Sizes = Sizes {
    runs: 7,
    py_runs: 3,
    sample: 100,
    max_files: None,
};

/// `--smoke`: every code path, in seconds.
const SMOKE: Sizes = Sizes {
    runs: 1,
    py_runs: 1,
    sample: 3,
    max_files: Some(30),
};

type Error = Box<dyn std::error::Error>;

struct Source {
    path: String,
    text: String,
}

fn collect(dir: &Path, extension: &str, skip: &[&str], out: &mut Vec<Source>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if skip.contains(&name) {
            continue;
        }
        if path.is_dir() {
            collect(&path, extension, skip, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
            // A few stdlib test files are deliberately not UTF-8; they are not source.
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.push(Source {
                    path: path.to_string_lossy().into_owned(),
                    text,
                });
            }
        }
    }
}

fn megabytes(files: &[&Source]) -> f64 {
    files.iter().map(|f| f.text.len()).sum::<usize>() as f64 / 1e6
}

/// Files/s and MB/s of the in-process gate over `files`, medians of `runs` runs.
fn gate(files: &[&Source], runs: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let mb = megabytes(files);
    let (mut per_file, mut per_mb) = (Vec::new(), Vec::new());
    let mut invalid = 0;
    for _ in 0..runs {
        let started = Instant::now();
        invalid = files
            .iter()
            .filter(|f| matches!(check_syntax(&f.path, &f.text), SyntaxCheck::Invalid { .. }))
            .count();
        let elapsed = started.elapsed();
        per_file.push(rate(files.len() as u64, elapsed));
        per_mb.push(mb / elapsed.as_secs_f64());
    }
    (per_file, per_mb, invalid)
}

fn print_gate(name: &str, files: &[&Source], runs: usize) {
    let (mut per_file, mut per_mb, invalid) = gate(files, runs);
    println!(
        "{name}: {} files, {:.1} MB ({invalid} rejected)",
        files.len(),
        megabytes(files)
    );
    // Named, so a rejection of valid source (a grammar gap) shows up here.
    for file in files
        .iter()
        .filter(|f| matches!(check_syntax(&f.path, &f.text), SyntaxCheck::Invalid { .. }))
    {
        println!("  rejected: {}", file.path);
    }
    report(&format!("  {name} in process"), "files/s", &mut per_file);
    report(&format!("  {name} in process"), "MB/s", &mut per_mb);
}

fn py_compile(files: &[&Source], one_process: bool, cache: &Path) -> Result<f64, Error> {
    let run = |paths: &[&str]| -> Result<(), Error> {
        let status = Command::new("python3")
            .args(["-m", "py_compile"])
            .args(paths)
            .env("PYTHONPYCACHEPREFIX", cache)
            .status()?;
        // The sample holds only files the gate accepted; py_compile must too.
        if !status.success() {
            return Err(format!("py_compile failed on {paths:?}").into());
        }
        Ok(())
    };
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let started = Instant::now();
    if one_process {
        run(&paths)?;
    } else {
        for path in &paths {
            run(&[path])?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<(), Error> {
    let sizes = if flag("--smoke") { SMOKE } else { FULL };
    let stdlib = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()?;
    let stdlib = PathBuf::from(String::from_utf8(stdlib.stdout)?.trim());
    let mut python = Vec::new();
    collect(&stdlib, "py", &["site-packages"], &mut python);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut rust = Vec::new();
    collect(&repo, "rs", &["target", ".git"], &mut rust);
    if let Some(max) = sizes.max_files {
        python.truncate(max);
        rust.truncate(max);
    }
    if python.is_empty() || rust.is_empty() {
        return Err("no source found: is python3 installed?".into());
    }
    println!("python3 stdlib: {}", stdlib.display());

    let python_refs: Vec<&Source> = python.iter().collect();
    let rust_refs: Vec<&Source> = rust.iter().collect();
    print_gate("python stdlib", &python_refs, sizes.runs);
    print_gate("pitcrew rust", &rust_refs, sizes.runs);

    let valid: Vec<&Source> = python
        .iter()
        .filter(|f| matches!(check_syntax(&f.path, &f.text), SyntaxCheck::Valid { .. }))
        .collect();
    let step = (valid.len() / sizes.sample).max(1);
    let sample: Vec<&Source> = valid
        .iter()
        .step_by(step)
        .take(sizes.sample)
        .copied()
        .collect();
    let mb = megabytes(&sample);
    println!(
        "py_compile sample: {} stdlib files, {mb:.2} MB",
        sample.len()
    );
    let cache = tempfile::tempdir()?;
    // KB/s here: one process per file is too slow for MB/s to show a digit.
    let kb = mb * 1000.0;
    let (mut gate_files, gate_mb, _) = gate(&sample, sizes.runs);
    let mut gate_kb: Vec<f64> = gate_mb.iter().map(|v| v * 1000.0).collect();
    let (mut each_files, mut each_kb, mut all_files, mut all_kb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.py_runs {
        let each = py_compile(&sample, false, cache.path())?;
        each_files.push(sample.len() as f64 / each);
        each_kb.push(kb / each);
        let all = py_compile(&sample, true, cache.path())?;
        all_files.push(sample.len() as f64 / all);
        all_kb.push(kb / all);
    }
    report("  sample in process", "files/s", &mut gate_files);
    report("  sample in process", "KB/s", &mut gate_kb);
    report(
        "  py_compile, one process per file",
        "files/s",
        &mut each_files,
    );
    report("  py_compile, one process per file", "KB/s", &mut each_kb);
    report(
        "  py_compile, one process for all",
        "files/s",
        &mut all_files,
    );
    report("  py_compile, one process for all", "KB/s", &mut all_kb);
    let ratio = |fast: &mut [f64], slow: &mut [f64]| {
        median(fast).unwrap_or(0.0) / median(slow).unwrap_or(f64::INFINITY)
    };
    println!(
        "  in process vs py_compile: {:.0}x one process per file, {:.0}x one process for all",
        ratio(&mut gate_files, &mut each_files),
        ratio(&mut gate_files, &mut all_files)
    );
    Ok(())
}
