//! Reading files out of a model's reply: every fenced code block annotated with a path is a
//! file. The annotation may sit in the fence's info string (```` ```python path=a/b.py ````,
//! ```` ```a/b.py ````, ```` ```python:a/b.py ````), on the line just before the fence
//! (`**a/b.py**`, `` `a/b.py` ``, `### a/b.py`, `File: a/b.py`), or in a first-line comment
//! (`# file: a/b.py`). Blocks without a path are ignored with a warning.

use pitcrew_core::Finding;

/// A file the reply asks to write, before any safety or syntax check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyFile {
    /// The path exactly as the model wrote it (checked later).
    pub path: String,
    pub content: String,
    /// The reply line where the block opened (1-based), for messages.
    pub line: usize,
}

/// Everything read from a reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    pub files: Vec<ReplyFile>,
    /// Blocks that could not be used, and why.
    pub findings: Vec<Finding>,
}

const RULE: &str = "code_block";
const PATH_KEYS: &[&str] = &["path", "file", "filename", "title", "name"];

struct Fence {
    marker: char,
    len: usize,
    info: String,
}

/// A line opening or closing a fence: up to 3 spaces, then 3+ backticks or tildes.
fn fence(line: &str) -> Option<Fence> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let marker = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.chars().take_while(|c| *c == marker).count();
    if len < 3 {
        return None;
    }
    let info = rest[len..].trim().to_string();
    // A backtick fence's info string may not contain backticks (CommonMark).
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some(Fence { marker, len, info })
}

fn closes(line: &str, open: &Fence) -> bool {
    fence(line).is_some_and(|f| f.marker == open.marker && f.len >= open.len && f.info.is_empty())
}

/// Whether `token` reads as a file path rather than a language name.
fn looks_like_path(token: &str) -> bool {
    if token.is_empty() || token.contains(char::is_whitespace) || token.starts_with("http") {
        return false;
    }
    if token.contains('/') || token.contains('\\') {
        return true;
    }
    // `name.ext` or a dotfile like `.gitignore`.
    match token.rsplit_once('.') {
        Some((stem, ext)) => {
            (!stem.is_empty() || token.len() > 1)
                && !ext.is_empty()
                && ext.len() <= 10
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
                && (stem.is_empty() || !stem.chars().all(|c| c.is_ascii_digit() || c == '.'))
        }
        None => false,
    }
}

fn unquote(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'' || c == '`')
}

fn path_from_info(info: &str) -> Option<String> {
    for token in info.split_whitespace() {
        if let Some((key, value)) = token.split_once('=') {
            if PATH_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                return Some(unquote(value).to_string());
            }
            continue;
        }
        // `python:src/a.py`
        if let Some((language, path)) = token.split_once(':')
            && language.chars().all(|c| c.is_ascii_alphanumeric())
            && looks_like_path(path)
        {
            return Some(unquote(path).to_string());
        }
        if looks_like_path(token) {
            return Some(unquote(token).to_string());
        }
    }
    None
}

/// A path named by a line standing alone before a fence, e.g. `**src/a.py**` or `File: a.py`.
fn path_from_heading(line: &str) -> Option<String> {
    let mut text = line.trim().trim_start_matches('#').trim();
    text = text.trim_matches(|c| c == '*' || c == '_').trim();
    for label in ["file:", "path:", "filename:"] {
        // `get`, not indexing: the heading is the model's text, and may split a character.
        if text
            .get(..label.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(label))
        {
            text = text[label.len()..].trim();
        }
    }
    let text = unquote(
        text.trim_matches(|c| c == '*' || c == '_')
            .trim_end_matches(':')
            .trim(),
    );
    looks_like_path(text).then(|| text.to_string())
}

/// A first-line comment naming the file, e.g. `# file: src/a.py` or `// path: a.ts`.
fn path_from_comment(line: &str) -> Option<String> {
    let text = line.trim();
    let body = ["#", "//", "--", "<!--", "/*"]
        .iter()
        .find_map(|p| text.strip_prefix(p))?
        .trim()
        .trim_end_matches("-->")
        .trim_end_matches("*/")
        .trim();
    let lower = body.to_ascii_lowercase();
    ["file:", "path:", "filename:"]
        .iter()
        .find_map(|label| {
            lower
                .starts_with(label)
                .then(|| unquote(body[label.len()..].trim()).to_string())
        })
        .filter(|p| looks_like_path(p))
}

/// Reads the files out of `reply`.
pub fn extract_files(reply: &str) -> Extraction {
    let lines: Vec<&str> = reply.lines().collect();
    let mut out = Extraction::default();
    let mut i = 0;
    while i < lines.len() {
        let Some(open) = fence(lines[i]) else {
            i += 1;
            continue;
        };
        let start = i;
        let mut end = None;
        let mut j = i + 1;
        while j < lines.len() {
            if closes(lines[j], &open) {
                end = Some(j);
                break;
            }
            j += 1;
        }
        let mut body: Vec<&str> = lines[start + 1..end.unwrap_or(lines.len())].to_vec();
        let heading = lines[..start]
            .iter()
            .rev()
            .take(2)
            .find(|l| !l.trim().is_empty())
            .and_then(|l| path_from_heading(l));
        let comment = body.first().and_then(|l| path_from_comment(l));
        let path = path_from_info(&open.info).or(heading).or_else(|| {
            let p = comment.clone();
            if p.is_some() {
                // The annotation is our protocol, not part of the file.
                body.remove(0);
            }
            p
        });
        let line_no = start + 1;
        match (path, end) {
            (None, _) => out.findings.push(Finding::warning(
                RULE,
                format!(
                    "code block at reply line {line_no} names no file path; ignored \
                     (open it with e.g. ```python path=tests/test_example.py)"
                ),
            )),
            (Some(path), None) => out.findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "code block for `{path}` opened at reply line {line_no} is never closed; \
                         the reply looks cut off, so the file is not written"
                    ),
                )
                .in_file(path),
            ),
            (Some(path), Some(_)) => {
                let mut content = body.join("\n");
                if content.trim().is_empty() {
                    out.findings.push(
                        Finding::error(RULE, format!("code block for `{path}` is empty"))
                            .in_file(path),
                    );
                } else {
                    content.push('\n');
                    if let Some(previous) = out.files.iter().position(|f| f.path == path) {
                        out.findings.push(
                            Finding::warning(
                                RULE,
                                format!(
                                    "`{path}` appears twice (reply lines {} and {line_no}); the later block is used",
                                    out.files[previous].line
                                ),
                            )
                            .in_file(path.clone()),
                        );
                        out.files.remove(previous);
                    }
                    out.files.push(ReplyFile {
                        path,
                        content,
                        line: line_no,
                    });
                }
            }
        }
        i = end.map_or(lines.len(), |e| e + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitcrew_core::Severity;

    fn paths(reply: &str) -> Vec<(String, String)> {
        extract_files(reply)
            .files
            .into_iter()
            .map(|f| (f.path, f.content))
            .collect()
    }

    #[test]
    fn a_heading_whose_characters_straddle_a_label_s_length_is_read_without_panicking() {
        // Found by the `reply` fuzz target: byte 5 of `out/é` is inside the `é`.
        let reply = "### out/\u{e9}x.py\n```python\ny = 2\n```\n";
        assert_eq!(paths(reply), [("out/\u{e9}x.py".into(), "y = 2\n".into())]);
        let reply = "\u{e9}\u{e9}\u{e9}\n```python\ny = 2\n```\n";
        assert!(paths(reply).is_empty());
    }

    #[test]
    fn reads_path_from_the_info_string_in_every_spelling() {
        for info in [
            "python path=tests/test_a.py",
            "python file=\"tests/test_a.py\"",
            "tests/test_a.py",
            "python tests/test_a.py",
            "python:tests/test_a.py",
            "py title=tests/test_a.py",
        ] {
            let reply = format!(
                "Here you go:\n\n```{info}\nimport a\n\ndef test_x():\n    assert a.f() == 1\n```\n"
            );
            assert_eq!(
                paths(&reply),
                [(
                    "tests/test_a.py".to_string(),
                    "import a\n\ndef test_x():\n    assert a.f() == 1\n".to_string()
                )],
                "info string `{info}`"
            );
        }
    }

    #[test]
    fn reads_path_from_a_heading_line_or_a_first_line_comment() {
        for heading in [
            "**tests/test_a.py**",
            "`tests/test_a.py`",
            "### tests/test_a.py",
            "File: tests/test_a.py",
            "tests/test_a.py:",
        ] {
            let reply = format!("{heading}\n```python\nx = 1\n```");
            assert_eq!(
                paths(&reply),
                [("tests/test_a.py".into(), "x = 1\n".into())],
                "heading `{heading}`"
            );
        }
        let reply = "```python\n# file: tests/test_a.py\nx = 1\n```";
        assert_eq!(paths(reply), [("tests/test_a.py".into(), "x = 1\n".into())]);
        let reply = "```ts\n// path: src/a.ts\nlet x = 1;\n```";
        assert_eq!(paths(reply), [("src/a.ts".into(), "let x = 1;\n".into())]);
    }

    #[test]
    fn language_names_and_versions_are_not_paths() {
        for info in [
            "python",
            "rust",
            "c++",
            "3.11",
            "objective-c",
            "https://example.com/x.py",
        ] {
            assert!(!looks_like_path(info), "{info}");
        }
        for path in [
            "a.py",
            ".gitignore",
            "src/x",
            "Makefile.am",
            "tests/test_a.py",
        ] {
            assert!(looks_like_path(path), "{path}");
        }
    }

    #[test]
    fn blocks_without_a_path_are_ignored_with_a_warning() {
        let e = extract_files("Example:\n```python\nprint(1)\n```\n");
        assert!(e.files.is_empty());
        assert_eq!(e.findings.len(), 1);
        assert_eq!(e.findings[0].severity, Severity::Warning);
        assert!(e.findings[0].message.contains("reply line 2"));
    }

    #[test]
    fn several_files_nested_fences_and_tildes() {
        let reply = "````markdown path=docs/a.md\n# Title\n```python\nx = 1\n```\n````\n\n~~~python path=b.py\ny = 2\n~~~\n";
        assert_eq!(
            paths(reply),
            [
                (
                    "docs/a.md".into(),
                    "# Title\n```python\nx = 1\n```\n".into()
                ),
                ("b.py".into(), "y = 2\n".into())
            ]
        );
    }

    #[test]
    fn an_unclosed_block_is_an_error_and_writes_nothing() {
        let e = extract_files("```python path=a.py\ndef f(:\n");
        assert!(e.files.is_empty());
        assert!(e.findings[0].is_error());
        assert!(e.findings[0].message.contains("never closed"));
    }

    #[test]
    fn empty_blocks_are_errors_and_duplicates_keep_the_last() {
        let e = extract_files("```python path=a.py\n\n```\n");
        assert!(e.files.is_empty());
        assert!(e.findings[0].is_error() && e.findings[0].message.contains("empty"));
        let e = extract_files("```python path=a.py\nx = 1\n```\n```python path=a.py\nx = 2\n```\n");
        assert_eq!(e.files.len(), 1);
        assert_eq!(e.files[0].content, "x = 2\n");
        assert_eq!(e.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn keeps_unsafe_paths_verbatim_for_the_path_check() {
        assert_eq!(
            paths("```python path=../outside.py\nx = 1\n```")[0].0,
            "../outside.py"
        );
        assert_eq!(
            paths("```python path=/etc/passwd\nx\n```")[0].0,
            "/etc/passwd"
        );
    }
}
