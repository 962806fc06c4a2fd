//! The properties pitcrew's parsers of untrusted text must keep, one function per fuzz
//! target. Each takes arbitrary bytes and panics when a property fails, so the same checks
//! run under libFuzzer (`fuzz/run`, coverage-guided) and in the stable replay test
//! (`tests/replay.rs`: the kept corpus plus random mutations of it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pitcrew_config::batch::{BatchFormat, parse_batch};
use pitcrew_config::{Environment, LoadedConfig};
use pitcrew_llm::{ChatRequest, Endpoint, MAX_REPLY_BYTES, StreamDecoder};
use pitcrew_runtime::{extract_files, normalize, resolve_inside};
use pitcrew_validate::{CoverageFormat, parse_coverage, parse_junit};

/// A property check: panics when `data` breaks it.
pub type Check = fn(&[u8]);

/// The targets by name, as `fuzz/run` and the corpus directories name them.
pub const TARGETS: &[(&str, Check)] = &[
    ("stream", stream),
    ("reply", reply),
    ("batch", batch),
    ("config", config),
    ("junit", junit),
    ("coverage", coverage),
];

/// What decoding a stream came to, without its timings.
#[derive(Debug, PartialEq)]
enum Decoded {
    Reply {
        text: String,
        finish_reason: Option<String>,
        tokens: (u64, u64),
    },
    Error(String),
}

fn decode(chunks: &[&[u8]]) -> (Decoded, String) {
    let endpoint = Endpoint {
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: None,
        api_key_env: "FUZZ_API_KEY".into(),
    };
    let request = ChatRequest {
        model: "fuzz/model".into(),
        messages: Vec::new(),
        temperature: 0.0,
        max_tokens: 1000,
    };
    let mut deltas = String::new();
    let mut on_delta = |d: &str| deltas.push_str(d);
    let mut decoder = StreamDecoder::new(&endpoint, &request);
    let mut result = Ok(());
    for chunk in chunks {
        if let Err(e) = decoder.push(chunk, &mut on_delta) {
            result = Err(e);
            break;
        }
        if decoder.is_done() {
            break;
        }
    }
    let decoded = match result.and_then(|()| decoder.finish(&mut on_delta)) {
        Ok(c) => Decoded::Reply {
            text: c.text,
            finish_reason: c.finish_reason,
            tokens: (c.usage.tokens_in, c.usage.tokens_out),
        },
        Err(e) => Decoded::Error(format!("{}: {}", e.kind, e.message)),
    };
    (decoded, deltas)
}

/// An SSE body read in one piece and in arbitrary chunks gives the same reply or the same
/// error; the text handed out piece by piece is the reply; no reply passes the size limit.
/// The first 8 bytes choose where the body is cut.
pub fn stream(data: &[u8]) {
    let (seed, body) = data.split_at(data.len().min(8));
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..seed.len()].copy_from_slice(seed);
    let mut rng = fastrand::Rng::with_seed(u64::from_le_bytes(seed_bytes));
    let mut chunks = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rng.usize(1..=rest.len().min(64)));
        chunks.push(chunk);
        rest = tail;
    }
    let (whole, whole_deltas) = decode(&[body]);
    let (pieces, piece_deltas) = decode(&chunks);
    assert_eq!(whole, pieces, "the chunking changed the result");
    assert_eq!(
        whole_deltas, piece_deltas,
        "the chunking changed the deltas"
    );
    if let Decoded::Reply { text, .. } = &whole {
        assert_eq!(text, &whole_deltas, "the deltas are not the reply");
        assert!(text.len() <= MAX_REPLY_BYTES);
    }
}

/// A worktree with the traps a reply may aim at: `.git`, a symlink leading out, a symlink
/// leading in, a dangling one, a loop, a directory.
fn worktree() -> &'static Path {
    static WORKTREE: OnceLock<tempfile::TempDir> = OnceLock::new();
    WORKTREE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let root = dir.path();
            std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
            std::fs::create_dir_all(root.join("src/pkg")).unwrap();
            std::fs::write(root.join("src/pkg/mod.py"), "x = 1\n").unwrap();
            let link = |target: &str, name: &str| {
                std::os::unix::fs::symlink(target, root.join(name)).unwrap();
            };
            link("/tmp", "out");
            link("src", "in");
            link("missing", "dangling");
            link("loop", "loop");
            link(".git", "git");
            dir
        })
        .path()
}

/// Every path the reply parser hands on, once checked, is relative, stays inside the
/// worktree (symlinks followed), is not under `.git` (in any letter case), and carries no
/// pattern characters or pathspec magic; checking is idempotent.
pub fn reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    let extraction = extract_files(&text);
    let root = worktree().canonicalize().unwrap();
    for file in extraction.files {
        assert!(
            file.line >= 1 && file.line <= lines + 1,
            "line {}",
            file.line
        );
        let Ok(normal) = normalize(&file.path) else {
            continue;
        };
        assert_eq!(normalize(&normal).as_ref(), Ok(&normal), "not idempotent");
        assert!(!normal.starts_with('/'), "{normal:?} is absolute");
        for part in normal.split('/') {
            assert!(
                !part.is_empty() && part != "." && part != "..",
                "{normal:?}"
            );
            assert!(
                !part.eq_ignore_ascii_case(".git"),
                "{normal:?} reaches .git"
            );
            assert!(!part.starts_with(':'), "{normal:?} has pathspec magic");
        }
        assert!(!normal.contains(['*', '?', '[', ']', '\\']), "{normal:?}");
        assert!(!normal.chars().any(char::is_control), "{normal:?}");
        let Ok(resolved) = resolve_inside(worktree(), &file.path) else {
            continue;
        };
        assert_inside(&root, &resolved, &file.path);
    }
}

/// `resolved`, and every part of it that exists, lies inside `root` and outside `.git`.
fn assert_inside(root: &Path, resolved: &Path, asked: &str) {
    assert!(resolved.starts_with(root), "{asked:?} → {resolved:?}");
    assert_ne!(resolved, root, "{asked:?} names the worktree itself");
    let mut existing: PathBuf = resolved.to_path_buf();
    while !existing.exists() {
        existing.pop();
    }
    let real = existing.canonicalize().unwrap();
    assert!(real.starts_with(root), "{asked:?} leads to {real:?}");
    assert!(
        !real.starts_with(root.join(".git")),
        "{asked:?} leads into .git through {real:?}"
    );
    assert!(
        !resolved.is_dir() && !resolved.is_symlink(),
        "{asked:?} names a directory or a symlink"
    );
}

/// A batch file of any content is read entry by entry, each with a line number inside the
/// file; a JSON-lines file has one entry per line that is not blank or a comment.
pub fn batch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    let entries = parse_batch("batch.jsonl", &text, BatchFormat::JsonLines).unwrap();
    let expected = text
        .lines()
        .map(str::trim)
        .filter(|t| !(t.is_empty() || t.starts_with("//") || t.starts_with('#')))
        .count();
    assert_eq!(entries.len(), expected);
    for (line, entry) in &entries {
        assert!((1..=lines).contains(line), "line {line} of {lines}");
        if let Err(problem) = entry {
            assert!(problem.starts_with("column "), "{problem}");
        }
    }
    match parse_batch("batch.toml", &text, BatchFormat::Toml) {
        Ok(entries) => {
            for (line, _) in entries {
                assert!((1..=lines).contains(&line), "line {line} of {lines}");
            }
        }
        Err(problem) => assert!(problem.starts_with("batch.toml: "), "{problem}"),
    }
}

/// A configuration file of any content loads, or fails with a message naming the file.
pub fn config(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pitcrew.toml"), data).unwrap();
    let loaded = LoadedConfig::load(dir.path(), None, Environment::from_vars([]));
    if let Err(e) = loaded {
        let message = e.to_string();
        assert!(message.contains("pitcrew.toml"), "names no file: {message}");
    }
}

/// A JUnit report of any content is read or refused; lines are 1-based.
pub fn junit(data: &[u8]) {
    if let Ok(cases) = parse_junit(&String::from_utf8_lossy(data)) {
        for case in cases {
            assert!(case.line.is_none_or(|l| l >= 1), "{case:?}");
        }
    }
}

/// A coverage report of any content (the first byte picks the format) is read or refused;
/// no line is both executed and missing.
pub fn coverage(data: &[u8]) {
    let Some((&pick, report)) = data.split_first() else {
        return;
    };
    let format = match pick % 3 {
        0 => CoverageFormat::CoverageJson,
        1 => CoverageFormat::Cobertura,
        _ => CoverageFormat::Lcov,
    };
    if let Ok(files) = parse_coverage(format, &String::from_utf8_lossy(report)) {
        for (path, file) in files {
            let both: BTreeSet<_> = file.executed.intersection(&file.missing).collect();
            assert!(
                both.is_empty(),
                "{path}: lines {both:?} both ran and did not"
            );
        }
    }
}
