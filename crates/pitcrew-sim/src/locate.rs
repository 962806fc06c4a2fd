//! A field's place in `sim.toml`: how it is named in errors, and the line that sets it.

use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `models."sim/coder".errors` or `script[2]`. Kept as segments, not a dotted
/// string, because model ids may contain dots.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn root() -> FieldPath {
        FieldPath::default()
    }

    pub(crate) fn key(&self, key: &str) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The 1-based line of `text` (a TOML document) where the deepest segment that exists is
    /// set; `None` when not even the first does (the field took its default).
    pub(crate) fn line_in(&self, text: &str) -> Option<usize> {
        let document = DeTable::parse(text).ok()?;
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        let mut offset = None;
        for segment in &self.0 {
            let found = match (segment, value.map(Spanned::get_ref)) {
                (Segment::Key(key), None) => find_key(document.get_ref(), key),
                (Segment::Key(key), Some(DeValue::Table(table))) => find_key(table, key),
                (Segment::Index(index), Some(DeValue::Array(items))) => {
                    items.get(*index).map(|item| (item.span().start, item))
                }
                _ => None,
            };
            let Some((start, item)) = found else {
                break;
            };
            offset = Some(start);
            value = Some(item);
        }
        offset.map(|offset| text[..offset.min(text.len())].matches('\n').count() + 1)
    }
}

fn find_key<'t, 'i>(
    table: &'t DeTable<'i>,
    wanted: &str,
) -> Option<(usize, &'t Spanned<DeValue<'i>>)> {
    table
        .iter()
        .find(|(key, _)| key.get_ref() == wanted)
        .map(|(key, value)| (key.span().start, value))
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FieldPath;

    #[test]
    fn fields_are_named_and_found_by_line() {
        let text = "seed = 1\nscript = [\n  { reply = \"a\" },\n  { status = 99 },\n]\n\n\
                    [models.\"sim/a.b\"]\nrpm = 0\n[models.\"sim/a.b\".errors]\n\"5x\" = 1\n";
        let root = FieldPath::root();
        let rpm = root.key("models").key("sim/a.b").key("rpm");
        assert_eq!(rpm.to_string(), "models.\"sim/a.b\".rpm");
        assert_eq!(rpm.line_in(text), Some(8));
        let step = root.key("script").index(1);
        assert_eq!(step.to_string(), "script[1]");
        assert_eq!(step.line_in(text), Some(4));
        let error = root.key("models").key("sim/a.b").key("errors").key("5x");
        assert_eq!(error.line_in(text), Some(10));
        assert_eq!(root.key("replies_dir").line_in(text), None);
        // A field left to its default is blamed on the nearest line that exists.
        let latency = root.key("models").key("sim/a.b").key("latency");
        assert_eq!(latency.line_in(text), Some(7));
    }
}
