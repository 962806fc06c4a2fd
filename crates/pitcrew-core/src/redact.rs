//! Redaction: secret values replaced by [`REDACTED`] in every text that leaves a run (logs,
//! terminal output, the store, prompts). A [`Redactor`] holds the values; one process-wide
//! instance is filled as secrets become known ([`register_secret`], [`register_env`]) and
//! applied with [`redact`] and [`redact_json`].

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, RwLock};

use aho_corasick::{AhoCorasick, Input, MatchKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::is_secret_name;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values this long (in characters) or longer are replaced wherever they occur.
const MIN_ANYWHERE: usize = 8;
/// Values shorter than this are never replaced: they would match everywhere.
const MIN_TOKEN: usize = 3;
/// Short values that are settings rather than secrets, compared case-insensitively.
const COMMON_VALUES: [&str; 8] = ["true", "false", "yes", "no", "on", "off", "none", "null"];

/// Everything but RFC 3986's unreserved characters is percent-encoded: how a password is
/// written in a URL's userinfo or query.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One value to replace.
#[derive(Clone)]
struct Pattern {
    value: String,
    /// Replaced only where it stands as a whole token (no alphanumeric character on either
    /// side).
    whole_token: bool,
}

/// A set of secret values and the replacement of them in text.
///
/// Rules, applied to each value (surrounding whitespace trimmed) and to each of its encoded
/// forms:
///
/// - a value of at least 8 characters is replaced wherever it occurs, inside words too;
/// - a value of 3 to 7 characters is replaced only as a whole token, i.e. where neither the
///   character before nor the one after is alphanumeric (`abc` in `x abc.` but not in
///   `abcd`), and never when it is a common non-secret value: `true`, `false`, `yes`, `no`,
///   `on`, `off`, `none`, `null` (any case) or digits only;
/// - a value under 3 characters is ignored.
///
/// The encoded forms registered with each value are its percent-decoded form (when the value
/// is percent-encoded: `p%40ss` also registers `p@ss`), its percent-encoded form (`p@ss` also
/// registers `p%40ss`, as it appears in a URL) and its JSON-escaped form (`a"b\c` also
/// registers `a\"b\\c`, as it appears inside serialized JSON), each under the same rules.
///
/// Matching is one pass over the text (Aho–Corasick, leftmost-longest), so an unchanged text
/// costs one scan and no allocation.
#[derive(Clone, Default)]
pub struct Redactor {
    patterns: Vec<Pattern>,
    matcher: Option<AhoCorasick>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values are the secrets: never shown.
        f.debug_struct("Redactor")
            .field("values", &self.patterns.len())
            .finish()
    }
}

/// How a value is matched, or `None` when the rules ignore it.
fn rule_for(value: &str) -> Option<bool> {
    let chars = value.chars().count();
    if chars >= MIN_ANYWHERE {
        return Some(false);
    }
    let common = COMMON_VALUES.iter().any(|c| c.eq_ignore_ascii_case(value))
        || value.chars().all(|c| c.is_ascii_digit());
    (chars >= MIN_TOKEN && !common).then_some(true)
}

/// `value` and the encoded forms it may appear in.
fn forms(value: &str) -> Vec<String> {
    let mut bases = vec![value.to_string()];
    if let Ok(decoded) = percent_decode_str(value).decode_utf8()
        && decoded != value
    {
        bases.push(decoded.into_owned());
    }
    let mut forms: Vec<String> = Vec::new();
    for base in bases {
        let encoded = utf8_percent_encode(&base, URL_ENCODE).to_string();
        let json = serde_json::to_string(&base).expect("a string serializes");
        let json = json[1..json.len() - 1].to_string();
        for form in [base, encoded, json] {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// Whether the text around `start..end` leaves the match a whole token.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

impl Redactor {
    /// A redactor that knows no secrets (and changes nothing).
    pub const fn new() -> Self {
        Redactor {
            patterns: Vec::new(),
            matcher: None,
        }
    }

    /// Adds `value` and its encoded forms (see the type's rules); returns whether anything
    /// new was added.
    pub fn add(&mut self, value: &str) -> bool {
        self.add_all([value])
    }

    /// Adds every value of `values` (and their encoded forms); returns whether anything new
    /// was added.
    pub fn add_all<I>(&mut self, values: I) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut added = false;
        for value in values {
            for form in forms(value.as_ref().trim()) {
                let Some(whole_token) = rule_for(&form) else {
                    continue;
                };
                if self.patterns.iter().any(|p| p.value == form) {
                    continue;
                }
                self.patterns.push(Pattern {
                    value: form,
                    whole_token,
                });
                added = true;
            }
        }
        if added {
            self.matcher = Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(self.patterns.iter().map(|p| &p.value))
                    .expect("a few short literal patterns always build"),
            );
        }
        added
    }

    /// How many values (encoded forms included) are replaced.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        let mut out = String::new();
        // Copied up to here.
        let mut copied = 0;
        // Searching from here.
        let mut at = 0;
        while at < text.len() {
            let Some(found) = matcher.find(Input::new(text).range(at..)) else {
                break;
            };
            let pattern = &self.patterns[found.pattern().as_usize()];
            if pattern.whole_token && !stands_alone(text, found.start(), found.end()) {
                // Another value may still start inside this one.
                at = found.start() + 1;
                continue;
            }
            out.push_str(&text[copied..found.start()]);
            out.push_str(REDACTED);
            copied = found.end();
            at = found.end();
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Replaces secrets in `text` itself; returns whether it changed.
    pub fn redact_string(&self, text: &mut String) -> bool {
        match self.redact(text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(clean) => {
                *text = clean;
                true
            }
        }
    }

    /// Replaces secrets in every string of `value`, object keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.matcher.is_none() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                self.redact_string(s);
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.redact_json(item);
                }
            }
            serde_json::Value::Object(fields) => {
                let renamed: Vec<String> = fields
                    .keys()
                    .filter(|k| matches!(self.redact(k), Cow::Owned(_)))
                    .cloned()
                    .collect();
                for key in renamed {
                    if let Some(v) = fields.remove(&key) {
                        fields.insert(self.redact(&key).into_owned(), v);
                    }
                }
                for item in fields.values_mut() {
                    self.redact_json(item);
                }
            }
            _ => {}
        }
    }
}

/// The process-wide redactor: every secret pitcrew learns of is added here.
static GLOBAL: RwLock<Redactor> = RwLock::new(Redactor::new());
/// Held while a registration builds the next redactor, so that two registrations never lose
/// each other's values; readers only wait for the swap.
static REGISTERING: Mutex<()> = Mutex::new(());

fn global() -> std::sync::RwLockReadGuard<'static, Redactor> {
    GLOBAL
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `value` (and its encoded forms) with the process-wide redactor, under the rules
/// of [`Redactor`].
pub fn register_secret(value: &str) {
    register_secrets([value]);
}

/// Registers every value of `values` with the process-wide redactor.
pub fn register_secrets<I>(values: I)
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let _registering = REGISTERING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Built outside the lock readers take: nothing that can fail happens while it is held.
    let mut next = global().clone();
    if next.add_all(values) {
        *GLOBAL
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
    }
}

/// Registers the value of every variable in `vars` whose name looks secret
/// ([`is_secret_name`]) with the process-wide redactor.
pub fn register_env<I, K, V>(vars: I)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let values: Vec<String> = vars
        .into_iter()
        .filter(|(name, _)| is_secret_name(name.as_ref()))
        .map(|(_, value)| value.as_ref().to_string())
        .collect();
    register_secrets(values);
}

/// `text` with every registered secret replaced by [`REDACTED`]; borrowed when nothing
/// matched (or nothing is registered).
pub fn redact(text: &str) -> Cow<'_, str> {
    global().redact(text)
}

/// Replaces every registered secret in `text` itself; returns whether it changed.
pub fn redact_string(text: &mut String) -> bool {
    global().redact_string(text)
}

/// Replaces every registered secret in every string of `value`.
pub fn redact_json(value: &mut serde_json::Value) {
    global().redact_json(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(values: &[&str]) -> Redactor {
        let mut r = Redactor::new();
        r.add_all(values);
        r
    }

    #[test]
    fn nothing_registered_changes_nothing_and_borrows() {
        let r = Redactor::new();
        assert!(matches!(r.redact("sk-anything"), Cow::Borrowed(_)));
        let r = with(&["sk-live-0123456789"]);
        assert!(matches!(r.redact("no secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_values_are_replaced_anywhere() {
        let r = with(&["sk-live-0123456789"]);
        assert_eq!(
            r.redact("key=sk-live-0123456789, again:xsk-live-0123456789y"),
            "key=[REDACTED], again:x[REDACTED]y"
        );
        // Exactly eight characters counts as long.
        let r = with(&["abcdefgh"]);
        assert_eq!(r.redact("xxabcdefghxx"), "xx[REDACTED]xx");
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // Seven characters, more than eight bytes: a short value.
        let r = with(&["pässwör"]);
        assert_eq!(r.redact("a pässwör b"), "a [REDACTED] b");
        assert_eq!(r.redact("apässwörb"), "apässwörb");
    }

    #[test]
    fn short_values_are_replaced_only_as_whole_tokens() {
        let r = with(&["hunter2"]);
        assert_eq!(r.redact("pw hunter2."), "pw [REDACTED].");
        assert_eq!(r.redact("hunter2"), "[REDACTED]");
        assert_eq!(r.redact("(hunter2)"), "([REDACTED])");
        assert_eq!(
            r.redact("hunter22 xhunter2 hunter2x"),
            "hunter22 xhunter2 hunter2x"
        );
        // A token further on is still found after a rejected one.
        assert_eq!(r.redact("xhunter2 hunter2"), "xhunter2 [REDACTED]");
        let r = with(&["abc"]);
        assert_eq!(
            r.redact("abcabc abc_x abc"),
            "abcabc [REDACTED]_x [REDACTED]"
        );
    }

    #[test]
    fn common_values_and_tiny_values_are_never_registered() {
        let mut r = Redactor::new();
        for value in [
            "true", "FALSE", "yes", "no", "on", "Off", "none", "null", "1234567", "42", "ab", "",
            "  ",
        ] {
            assert!(!r.add(value), "{value:?} was registered");
        }
        assert!(r.is_empty());
        assert_eq!(r.redact("true yes 1234567 ab"), "true yes 1234567 ab");
        // Digits-only values of eight or more are secrets like any other.
        assert!(r.add("12345678"));
        assert_eq!(r.redact("pin 12345678"), "pin [REDACTED]");
    }

    #[test]
    fn values_are_trimmed() {
        let r = with(&["  sk-live-0123456789\n"]);
        assert_eq!(r.redact("[sk-live-0123456789]"), "[[REDACTED]]");
    }

    #[test]
    fn percent_encoded_and_decoded_forms_are_registered() {
        let r = with(&["p@ss/w:rd-42"]);
        assert_eq!(
            r.redact("postgres://u:p%40ss%2Fw%3Ard-42@h/db"),
            "postgres://u:[REDACTED]@h/db"
        );
        let r = with(&["p%40ss%2Fw%3Ard-42"]);
        assert_eq!(r.redact("decoded p@ss/w:rd-42"), "decoded [REDACTED]");
        assert_eq!(r.redact("raw p%40ss%2Fw%3Ard-42"), "raw [REDACTED]");
    }

    #[test]
    fn json_escaped_forms_are_registered() {
        let secret = "quo\"te\\back-slash";
        let r = with(&[secret]);
        let serialized = serde_json::to_string(&json!({ "k": secret })).unwrap();
        assert_eq!(r.redact(&serialized), r#"{"k":"[REDACTED]"}"#);
    }

    #[test]
    fn overlapping_values_prefer_the_longest() {
        let r = with(&["sk-live-0123", "sk-live-0123456789"]);
        assert_eq!(r.redact("a sk-live-0123456789 b"), "a [REDACTED] b");
        assert_eq!(r.redact("a sk-live-0123 b"), "a [REDACTED] b");
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = with(&["sk-live-0123456789"]);
        let mut value = json!({
            "error": "rejected sk-live-0123456789",
            "iterations": [{"findings": [{"message": "echo sk-live-0123456789"}]}],
            "sk-live-0123456789": 1,
            "n": 3,
        });
        r.redact_json(&mut value);
        assert_eq!(
            value,
            json!({
                "error": "rejected [REDACTED]",
                "iterations": [{"findings": [{"message": "echo [REDACTED]"}]}],
                "[REDACTED]": 1,
                "n": 3,
            })
        );
    }

    #[test]
    fn the_debug_form_shows_no_value() {
        let r = with(&["sk-live-0123456789"]);
        let shown = format!("{r:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
    }

    #[test]
    fn the_process_wide_redactor_takes_secret_names_only() {
        // Values unique to this test: the global instance is shared by the whole binary.
        register_env([
            ("GLOBAL_TEST_API_KEY", "global-test-key-5e8c1d"),
            ("GLOBAL_TEST_HOME", "global-test-home-9a7b3f"),
        ]);
        register_secret("global-test-direct-44c2");
        assert_eq!(
            redact("k=global-test-key-5e8c1d h=global-test-home-9a7b3f d=global-test-direct-44c2"),
            "k=[REDACTED] h=global-test-home-9a7b3f d=[REDACTED]"
        );
        let mut value = json!(["global-test-key-5e8c1d"]);
        redact_json(&mut value);
        assert_eq!(value, json!(["[REDACTED]"]));
        let mut text = String::from("x global-test-direct-44c2");
        assert!(redact_string(&mut text));
        assert_eq!(text, "x [REDACTED]");
    }

    #[test]
    fn reports_and_health_are_redacted_but_not_the_patch() {
        use crate::{AttemptReport, Finding, ModelHealth};
        const S: &str = "report-test-secret-3f9a";
        register_secret(S);
        let mut report = AttemptReport {
            error: Some(format!("HTTP 401: bad key {S}")),
            findings: vec![Finding::error("cmd", format!("`cat f` failed:\n{S}")).in_file(S)],
            patch: Some(format!("+KEY = \"{S}\"\n")),
            commit: Some("0123abcd".into()),
            details: json!({"iterations": [{"findings": [{"message": S}]}]}),
            ..AttemptReport::default()
        };
        report.redact_secrets();
        assert_eq!(
            report.error.as_deref(),
            Some("HTTP 401: bad key [REDACTED]")
        );
        assert_eq!(report.findings[0].message, "`cat f` failed:\n[REDACTED]");
        assert_eq!(report.findings[0].file.as_deref(), Some("[REDACTED]"));
        assert_eq!(
            report.details,
            json!({"iterations": [{"findings": [{"message": "[REDACTED]"}]}]})
        );
        assert_eq!(report.patch, Some(format!("+KEY = \"{S}\"\n")));

        let mut health = ModelHealth {
            model: "m".into(),
            consecutive_failures: 1,
            circuit_open_until: None,
            cooldown_until: None,
            cooldown_reason: Some(format!("auth: rejected {S}")),
            success_rate: 1.0,
            latency_ms: 0.0,
            quality: 0.0,
            samples: 0,
            updated_at: chrono::Utc::now(),
        };
        health.redact_secrets();
        assert_eq!(
            health.cooldown_reason.as_deref(),
            Some("auth: rejected [REDACTED]")
        );
    }
}
