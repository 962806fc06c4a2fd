//! What the mutation stage (`kills_mutants`) costs on real code: three modules of the Python
//! standard library (`colorsys`, `textwrap`, `statistics`, copied into a package of a fresh
//! repository with one existing test) and a hand-written test file for each, accepted by the
//! whole pipeline. Each file is validated with the default settings and with `kills_mutants`
//! disabled, alternating, after one untimed run that fills the baseline cache; the figures are
//! the median wall time of a whole validation, the mutation stage's own time, and the ratio.
//!
//! `cargo run --release -p pitcrew-bench --bin mutation_stage [-- --runs N] [--modules N]`
//! (`--modules 1`: only the first module, for a smoke test)

#![allow(clippy::print_stdout)]

use std::time::Instant;

use pitcrew_bench::{arg, median};
use pitcrew_core::TaskKind;
use pitcrew_testkit::TempRepo;
use pitcrew_validate::{Outcome, ValidationRequest, ValidationSettings, validate};

const COLORSYS_TESTS: &str = r#"import pytest

from pkg import colorsys


@pytest.mark.parametrize("rgb", [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.2, 0.4, 0.6), (0.9, 0.1, 0.3)])
def test_hsv_round_trip(rgb):
    back = colorsys.hsv_to_rgb(*colorsys.rgb_to_hsv(*rgb))
    assert back == pytest.approx(rgb)


def test_rgb_to_hsv_values():
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == pytest.approx((0.0, 1.0, 1.0))
    assert colorsys.rgb_to_hsv(0.0, 1.0, 0.0) == pytest.approx((1 / 3, 1.0, 1.0))
    assert colorsys.rgb_to_hsv(0.0, 0.0, 1.0) == pytest.approx((2 / 3, 1.0, 1.0))
    assert colorsys.rgb_to_hsv(0.5, 0.5, 0.5) == pytest.approx((0.0, 0.0, 0.5))


def test_hls_values():
    assert colorsys.rgb_to_hls(1.0, 0.0, 0.0) == pytest.approx((0.0, 0.5, 1.0))
    assert colorsys.rgb_to_hls(0.2, 0.2, 0.2) == pytest.approx((0.0, 0.2, 0.0))
    assert colorsys.rgb_to_hls(0.8, 0.6, 0.4) == pytest.approx((1 / 12, 0.6, 0.5))
    assert colorsys.hls_to_rgb(0.0, 0.5, 1.0) == pytest.approx((1.0, 0.0, 0.0))
    assert colorsys.hls_to_rgb(0.5, 0.25, 0.5) == pytest.approx((0.125, 0.375, 0.375))
    assert colorsys.hls_to_rgb(0.5, 0.75, 0.5) == pytest.approx((0.625, 0.875, 0.875))


def test_yiq_values():
    assert colorsys.rgb_to_yiq(1.0, 1.0, 1.0) == pytest.approx((1.0, 0.0, 0.0))
    assert colorsys.yiq_to_rgb(*colorsys.rgb_to_yiq(0.2, 0.4, 0.6)) == pytest.approx((0.2, 0.4, 0.6))
    assert colorsys.yiq_to_rgb(1.0, 1.0, 1.0) == pytest.approx((1.0, 0.0895212745, 1.0))
    assert colorsys.yiq_to_rgb(0.0, -1.0, -1.0) == pytest.approx((0.0, 0.9104787255, 0.0))
"#;

const TEXTWRAP_TESTS: &str = r#"from pkg import textwrap


def test_wrap_and_fill():
    text = "The quick brown fox jumps over the lazy dog"
    assert textwrap.wrap(text, width=10) == ["The quick", "brown fox", "jumps over", "the lazy", "dog"]
    assert textwrap.fill(text, width=20) == "The quick brown fox\njumps over the lazy\ndog"
    assert textwrap.wrap("", width=5) == []


def test_long_words_and_hyphens():
    assert textwrap.wrap("abcdefghij", width=4) == ["abcd", "efgh", "ij"]
    assert textwrap.wrap("abcdefghij", width=4, break_long_words=False) == ["abcdefghij"]
    assert textwrap.wrap("well-known thing", width=6) == ["well-", "known", "thing"]


def test_indents_and_limits():
    assert textwrap.fill("a b c d", width=5, initial_indent="> ", subsequent_indent="  ") == "> a b\n  c d"
    assert textwrap.wrap("one two three four", width=9, max_lines=2, placeholder="...") == ["one two", "three..."]


def test_shorten():
    assert textwrap.shorten("Hello  world!", width=12) == "Hello world!"
    assert textwrap.shorten("Hello world!", width=11) == "Hello [...]"
    assert textwrap.shorten("Hello world", width=10, placeholder="...") == "Hello..."


def test_dedent_and_indent():
    assert textwrap.dedent("    a\n      b\n    c\n") == "a\n  b\nc\n"
    assert textwrap.dedent("  a\n\n  b") == "a\n\nb"
    assert textwrap.indent("a\n\nb\n", "> ") == "> a\n\n> b\n"
    assert textwrap.indent("a\n\nb\n", "> ", lambda line: True) == "> a\n> \n> b\n"
"#;

const STATISTICS_TESTS: &str = r#"import pytest

from pkg import statistics


def test_mean_median_mode():
    assert statistics.mean([1, 2, 3, 4, 4]) == pytest.approx(2.8)
    assert statistics.median([1, 3, 5]) == 3
    assert statistics.median([1, 3, 5, 7]) == 4.0
    assert statistics.median_low([1, 3, 5, 7]) == 3
    assert statistics.median_high([1, 3, 5, 7]) == 5
    assert statistics.mode([1, 1, 2, 3, 3, 3]) == 3
    assert statistics.multimode("aabbbbccddddeeffffgg") == ["b", "d", "f"]


def test_spread():
    data = [2.75, 1.75, 1.25, 0.25, 0.5, 1.25, 3.5]
    assert statistics.pvariance(data) == pytest.approx(1.1760204081632653)
    assert statistics.variance(data) == pytest.approx(1.3720238095238095)
    assert statistics.stdev([1.5, 2.5, 2.5, 2.75, 3.25, 4.75]) == pytest.approx(1.0810874155219827)
    assert statistics.pstdev([1.5, 2.5, 2.5, 2.75, 3.25, 4.75]) == pytest.approx(0.986893273527251)


def test_errors():
    with pytest.raises(statistics.StatisticsError):
        statistics.mean([])
    with pytest.raises(statistics.StatisticsError):
        statistics.median([])
    with pytest.raises(statistics.StatisticsError):
        statistics.variance([1])


def test_other_means():
    assert statistics.fmean([3.5, 4.0, 5.25]) == pytest.approx(4.25)
    assert statistics.geometric_mean([54, 24, 36]) == pytest.approx(36.0)
    assert statistics.harmonic_mean([40, 60]) == pytest.approx(48.0)
"#;

fn stdlib_source(module: &str) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}; print({module}.__file__)")])
        .output()
        .expect("python3 runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: usize = arg("--runs", 5);
    let modules: usize = arg("--modules", 3);
    let repo = TempRepo::new();
    repo.write("pkg/__init__.py", "");
    for module in ["colorsys", "textwrap", "statistics"] {
        repo.write(&format!("pkg/{module}.py"), &stdlib_source(module));
    }
    repo.write(
        "tests/test_existing.py",
        "from pkg import colorsys\n\n\ndef test_grey():\n    assert colorsys.rgb_to_hsv(0.5, 0.5, 0.5) == (0.0, 0.0, 0.5)\n",
    );
    repo.commit("a package of real modules");
    let base = repo.git(&["rev-parse", "HEAD"]);
    let cache = tempfile::tempdir().expect("a cache directory");
    let with = ValidationSettings::default();
    let mut without = ValidationSettings::default();
    without.rules.disable.push("kills_mutants".into());

    println!(
        "{runs} runs of each, alternating; medians (min–max) of wall time in seconds\n\n\
         | module | validation without mutants | with mutants | mutation stage | ratio | mutants killed/tried |\n\
         |---|---|---|---|---|---|"
    );
    for (module, tests) in [
        ("colorsys", COLORSYS_TESTS),
        ("textwrap", TEXTWRAP_TESTS),
        ("statistics", STATISTICS_TESTS),
    ]
    .into_iter()
    .take(modules)
    {
        let test_file = format!("tests/test_{module}_new.py");
        repo.write(&test_file, tests);
        let request = ValidationRequest {
            worktree: repo.path().to_path_buf(),
            repo: repo.path().to_path_buf(),
            kind: TaskKind::UnitTest,
            targets: vec![format!("pkg/{module}.py")],
            files: vec![test_file.clone()],
            base_commit: base.clone(),
            cache_dir: cache.path().to_path_buf(),
            parent_env: None,
        };
        // Fills the baseline cache; not timed.
        let warm = validate(&with, &request).await.expect("validation runs");
        assert_eq!(
            warm.outcome,
            Outcome::Accepted,
            "the {module} tests must be accepted: {:#?}",
            warm.findings
        );
        let (mut plain, mut full, mut stage) = (Vec::new(), Vec::new(), Vec::new());
        let mut kills = String::new();
        for _ in 0..runs {
            let started = Instant::now();
            let report = validate(&without, &request).await.expect("validation runs");
            assert_eq!(report.outcome, Outcome::Accepted);
            plain.push(started.elapsed().as_secs_f64());
            let started = Instant::now();
            let report = validate(&with, &request).await.expect("validation runs");
            assert_eq!(report.outcome, Outcome::Accepted);
            full.push(started.elapsed().as_secs_f64());
            let ms = report
                .evidence
                .stages
                .iter()
                .find(|s| s.stage.starts_with("mutants"))
                .map_or(0, |s| s.ms);
            stage.push(ms as f64 / 1000.0);
            let m = &report.evidence.mutation[0];
            kills = format!("{}/{}", m.killed, m.tried);
        }
        let summary = |samples: &mut Vec<f64>| {
            let mid = median(samples).unwrap_or(0.0);
            (
                mid,
                format!(
                    "{mid:.2} ({:.2}–{:.2})",
                    samples[0],
                    samples[samples.len() - 1]
                ),
            )
        };
        let (plain_mid, plain_text) = summary(&mut plain);
        let (full_mid, full_text) = summary(&mut full);
        let (_, stage_text) = summary(&mut stage);
        println!(
            "| {module} | {plain_text} | {full_text} | {stage_text} | {:.2}× | {kills} |",
            full_mid / plain_mid
        );
        std::fs::remove_file(repo.path().join(&test_file)).expect("removable");
    }
}
