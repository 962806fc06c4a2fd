//! Content checks on real and generated code, and on the failures they exist to catch.

use pitcrew_core::ErrorKind;
use pitcrew_llm::content::{self, Expect, LOOP_SHARE, LOOP_TOKENS_ALONE, Repetition};

/// Ordinary code: a CPython module, CPython tests full of similar asserts, this crate's own
/// sources, and generated test files of the kind models write (many near-identical tests).
fn ordinary_code() -> Vec<(String, String)> {
    let mut samples = vec![
        (
            "textwrap.py".to_string(),
            include_str!("fixtures/textwrap.py").to_string(),
        ),
        (
            "test_textwrap.py".into(),
            include_str!("fixtures/test_textwrap.py").into(),
        ),
        ("router.rs".into(), include_str!("../src/router.rs").into()),
        ("client.rs".into(), include_str!("../src/client.rs").into()),
        (
            "registry.rs".into(),
            include_str!("../src/registry.rs").into(),
        ),
    ];
    let mut many = String::from("import pytest\nfrom calc import add\n\n");
    for i in 0..120 {
        many += &format!(
            "def test_add_{i}():\n    assert add({i}, {}) == {}\n\n",
            i + 1,
            2 * i + 1
        );
    }
    samples.push(("test_many.py".into(), many));
    let mut one = String::from("def test_parse_many():\n");
    for i in 0..250 {
        let (a, b) = (i * 37 % 1000, i * 91 % 1000);
        one += &format!("    assert parse('{a}+{b}') == Expr.add(Expr.num({a}), Expr.num({b}))\n");
    }
    samples.push(("test_one_big.py".into(), one));
    let mut table = String::from("import pytest\n\n@pytest.mark.parametrize('x, expected', [\n");
    for i in 0..200 {
        table += &format!("    ({i}, {}),\n", i * i);
    }
    table += "])\ndef test_square(x, expected):\n    assert square(x) == expected\n";
    samples.push(("test_param.py".into(), table));
    let mut rust = String::from("#[cfg(test)]\nmod tests {\n    use super::*;\n\n");
    for i in 0..80 {
        rust += &format!(
            "    #[test]\n    fn parses_case_{i}() {{\n        assert_eq!(parse(\"{i}\"), Ok(Value::Int({i})));\n        assert!(parse(\"{i}x\").is_err());\n    }}\n\n"
        );
    }
    rust += "}\n";
    samples.push(("tests_many.rs".into(), rust));
    samples
}

#[test]
fn ordinary_code_is_not_flagged() {
    for (name, text) in ordinary_code() {
        assert!(text.lines().count() >= 200, "{name} is a real-sized sample");
        let fenced = format!("```python path=tests/{name}\n{text}\n```\n");
        assert_eq!(content::check(&text, Expect::Code), Ok(()), "{name}");
        assert_eq!(
            content::check(&fenced, Expect::Code),
            Ok(()),
            "{name} fenced"
        );
        // And not merely under the thresholds: far from them.
        let r = Repetition::measure(&text);
        assert!(
            r.share() < LOOP_SHARE / 2.0 && r.loop_tokens < LOOP_TOKENS_ALONE / 2,
            "{name}: {r:?}"
        );
    }
}

#[test]
fn loops_are_degenerate() {
    let preamble = "Here are the tests:\n```python path=tests/test_calc.py\nfrom calc import add\n\ndef test_add():\n";
    let one_line = format!(
        "{preamble}{}```\n",
        "    assert add(1, 2) == 3\n".repeat(200)
    );
    let block = format!(
        "{preamble}{}",
        "    x = compute(1)\n    y = compute(2)\n    assert x < y\n    assert y - x == 1\n    log(x, y)\n"
            .repeat(40)
    );
    let words = format!("The answer is{}", " the answer".repeat(300));
    // A loop after a long, good reply is still caught by its absolute length.
    let long_tail = format!(
        "{}\n{}",
        include_str!("fixtures/textwrap.py"),
        "        self.assertEqual(wrap(text, 10), expected)\n".repeat(120)
    );
    for (name, text) in [
        ("one line", one_line),
        ("block", block),
        ("words", words),
        ("tail", long_tail),
    ] {
        let failure = content::check(&text, Expect::Code).unwrap_err();
        assert_eq!(
            failure.kind,
            ErrorKind::Degenerate,
            "{name}: {}",
            failure.message
        );
        assert!(failure.message.contains("repeats"), "{}", failure.message);
    }
}

#[test]
fn empty_prose_and_placeholders() {
    for empty in ["", "  \n\t\n"] {
        assert_eq!(
            content::check(empty, Expect::Text).unwrap_err().kind,
            ErrorKind::EmptyReply
        );
    }
    let prose = "I'd be happy to help! To test this module you should write tests that cover \
                 the edge cases, such as empty input and very long words.\n\nLet me know if you \
                 need anything else.";
    assert_eq!(
        content::check(prose, Expect::Code).unwrap_err().kind,
        ErrorKind::ProseOnly
    );
    assert_eq!(content::check(prose, Expect::Text), Ok(()));
    for lazy in [
        "```python path=src/calc.py\ndef add(a, b):\n    return a + b\n\n# ... existing code ...\n```",
        "```rust path=src/lib.rs\nfn main() {\n    // rest of the code unchanged\n}\n```",
        "```python path=tests/test_calc.py\ndef test_add():\n    pass  # TODO: implement\n```",
    ] {
        let failure = content::check(lazy, Expect::Code).unwrap_err();
        assert_eq!(failure.kind, ErrorKind::Placeholder, "{lazy}");
    }
}

/// Measures the degeneracy metric over every Python and Rust file this machine has (CPython's
/// standard library and tests under pyenv, the cargo registry, this repository) in 300-line
/// windows, and prints the distribution: the figures behind the thresholds in
/// `content.rs`. Run with `cargo test -p pitcrew-llm --test content -- --ignored --nocapture`.
#[test]
#[ignore = "reads corpora outside the repository; prints measurements"]
#[allow(clippy::print_stdout)]
fn calibration() {
    let home = std::env::var("HOME").unwrap_or_default();
    let roots = [
        ("Python stdlib", "/usr/lib/python3.11".to_string(), "py"),
        (
            "CPython tests",
            format!("{home}/.pyenv/versions/3.12.1/lib/python3.12/test"),
            "py",
        ),
        ("Rust crates", format!("{home}/.cargo/registry/src"), "rs"),
        (
            "pitcrew",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../..").to_string(),
            "rs",
        ),
    ];
    for (label, root, ext) in roots {
        let mut files = Vec::new();
        collect(std::path::Path::new(&root), ext, &mut files);
        let mut windows = Vec::new();
        let mut flagged = Vec::new();
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            for chunk in lines.chunks(300) {
                let window = chunk.join("\n");
                let r = Repetition::measure(&window);
                if r.total_tokens < 100 {
                    continue;
                }
                if let Err(f) = content::check(&window, Expect::Code) {
                    flagged.push(format!("{}: {}", file.display(), f.message));
                }
                windows.push(r);
            }
        }
        if windows.is_empty() {
            println!("{label}: no files under {root}");
            continue;
        }
        let mut tokens: Vec<usize> = windows.iter().map(|r| r.loop_tokens).collect();
        let mut shares: Vec<f64> = windows.iter().map(Repetition::share).collect();
        tokens.sort_unstable();
        shares.sort_by(f64::total_cmp);
        let q = |p: f64| ((windows.len() - 1) as f64 * p) as usize;
        println!(
            "{label}: {} files, {} windows; longest run p50 {} p99 {} p99.9 {} max {}; share p99 {:.3} p99.9 {:.3} max {:.3}; flagged by check(): {}",
            files.len(),
            windows.len(),
            tokens[q(0.5)],
            tokens[q(0.99)],
            tokens[q(0.999)],
            tokens[windows.len() - 1],
            shares[q(0.99)],
            shares[q(0.999)],
            shares[windows.len() - 1],
            flagged.len()
        );
        for f in flagged.iter().take(12) {
            println!("    {f}");
        }
    }
}

fn collect(dir: &std::path::Path, ext: &str, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("target") {
            collect(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}
