//! Where a mistake is: the line of a field in the configuration file, and the names close to a
//! misspelt one.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// How far (in edits) a name may be from a valid one to be suggested.
const MAX_DISTANCE: usize = 2;

/// Levenshtein distance between `a` and `b`, ignoring ASCII case.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The valid names within two edits of `given`, closest first (ties in the order given).
pub fn suggest<'a>(given: &str, valid: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut close: Vec<(usize, &str)> = Vec::new();
    for name in valid {
        let d = distance(given, name);
        if d <= MAX_DISTANCE
            && !name.eq_ignore_ascii_case(given)
            && !close.iter().any(|(_, n)| *n == name)
        {
            close.push((d, name));
        }
    }
    close.sort_by_key(|(d, _)| *d);
    close.into_iter().map(|(_, name)| name).collect()
}

/// ` did you mean `a`?` (or `` `a` or `b` ``) for the names close to `given`; empty when none
/// is.
pub fn did_you_mean<S: AsRef<str>>(given: &str, valid: &[S]) -> String {
    let close = suggest(given, valid.iter().map(AsRef::as_ref));
    match close.as_slice() {
        [] => String::new(),
        [one] => format!("did you mean `{one}`?"),
        [most @ .., last] => format!(
            "did you mean {} or `{last}`?",
            most.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `message` with a did-you-mean for `given` among `valid` appended, when one is close.
pub fn with_suggestion<S: AsRef<str>>(message: &str, given: &str, valid: &[S]) -> String {
    let hint = did_you_mean(given, valid);
    if hint.is_empty() {
        message.to_string()
    } else {
        format!("{message}; {hint}")
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line in `text` (a TOML document) that sets the dotted `field`, e.g.
/// `presets.local.provider`, or `webhooks[1].url` for a field of an array's entry. When
/// `value` is given and `field` is a table or an array, the line of the string (or key) inside
/// it equal to `value` is preferred: the bad entry of `fallback = [...]` rather than the
/// array's first line.
pub fn line_of(text: &str, field: &str, value: Option<&str>) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = document.get_ref();
    let mut found: Option<(usize, &Spanned<DeValue<'_>>)> = None;
    for segment in field.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, index)) => (name, Some(index.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (segment, None),
        };
        let (key, mut item) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        let mut start = key.span().start;
        if let Some(index) = index {
            let DeValue::Array(items) = item.get_ref() else {
                return None;
            };
            item = items.get(index)?;
            start = item.span().start;
        }
        found = Some((start, item));
        match item.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    let (key_start, item) = found?;
    let inner = value.and_then(|v| find_value(item, v));
    Some(line_at(text, inner.unwrap_or(key_start)))
}

/// The offset of the first string equal to `wanted` inside `item` (or of a key equal to it).
fn find_value(item: &Spanned<DeValue<'_>>, wanted: &str) -> Option<usize> {
    match item.get_ref() {
        DeValue::String(s) if &**s == wanted => Some(item.span().start),
        DeValue::Array(items) => items.iter().find_map(|i| find_value(i, wanted)),
        DeValue::Table(table) => table.iter().find_map(|(k, v)| {
            if k.get_ref() == wanted {
                Some(k.span().start)
            } else {
                find_value(v, wanted)
            }
        }),
        _ => None,
    }
}

/// The first `` `quoted` `` word of `message`: the value an error is about.
pub(crate) fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_closest_first() {
        let valid = ["local", "ollama", "openai", "openrouter", "loca"];
        assert_eq!(suggest("locall", valid), ["local", "loca"]);
        assert_eq!(suggest("OPENAI", valid), Vec::<&str>::new());
        assert_eq!(suggest("xyz", valid), Vec::<&str>::new());
        assert_eq!(
            did_you_mean(
                "PITCREW_WORKER_COUNT",
                &["PITCREW_WORKERS_COUNT", "PITCREW_STORE_URL"]
            ),
            "did you mean `PITCREW_WORKERS_COUNT`?"
        );
        assert_eq!(
            did_you_mean("opena", &["openai", "open", "other"]),
            "did you mean `openai` or `open`?"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
    }

    #[test]
    fn fields_and_values_are_found_by_line() {
        let text = "[models]\ndefault = \"x\"\n\n[presets.local]\nprovider = \"p\"\n\
                    [registry]\nfallback = [\n  \"a\",\n  \"b\",\n]\n\
                    [[registry.models]]\nname = \"m\"\n";
        assert_eq!(line_of(text, "models.default", None), Some(2));
        assert_eq!(line_of(text, "presets.local.provider", Some("p")), Some(5));
        assert_eq!(line_of(text, "registry.fallback", Some("b")), Some(9));
        assert_eq!(line_of(text, "registry", Some("b")), Some(9));
        assert_eq!(line_of(text, "registry.models", Some("m")), Some(12));
        assert_eq!(line_of(text, "registry.fallback", Some("zz")), Some(7));
        assert_eq!(line_of(text, "workers.count", None), None);
        assert_eq!(line_of("not = toml = at all", "a", None), None);
        assert_eq!(quoted("unknown model `b/c`; valid"), Some("b/c"));
        let hooks = "[store]\nurl = \"sqlite:q.db\"\n\n[[webhooks]]\nurl = \"https://a\"\n\
                     \n[[webhooks]]\nurl = \"https://b\"\nevents = [\"task.done\"]\n";
        assert_eq!(line_of(hooks, "webhooks[0].url", None), Some(5));
        assert_eq!(line_of(hooks, "webhooks[1].url", None), Some(8));
        assert_eq!(
            line_of(hooks, "webhooks[1].events", Some("task.done")),
            Some(9)
        );
        assert_eq!(line_of(hooks, "webhooks[2].url", None), None);
        assert_eq!(line_of(hooks, "webhooks[x].url", None), None);
    }
}
