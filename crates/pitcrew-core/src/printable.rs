//! Text from models and generated code, made safe to print on a terminal.

use std::borrow::Cow;

/// `text` with every control character but newline and tab shown as a visible symbol (C0 as
/// its control picture, `␛` for escape; DEL as `␡`; C1 as `�`) and bidirectional overrides as
/// `<U+202E>`: a reply cannot move the cursor, retitle or clear the terminal, or make code read
/// in another order than it runs.
pub fn printable(text: &str) -> Cow<'_, str> {
    let shown = |c: char| -> Option<String> {
        match c {
            '\n' | '\t' => None,
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).map(String::from),
            '\u{7f}' => Some("␡".into()),
            '\u{80}'..='\u{9f}' => Some("\u{fffd}".into()),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                Some(format!("<U+{:04X}>", c as u32))
            }
            _ => None,
        }
    };
    if !text.chars().any(|c| shown(c).is_some()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match shown(c) {
            Some(symbol) => out.push_str(&symbol),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_text_stays() {
        assert!(matches!(printable("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}[2J\u{7}b\u{0}\r\u{7f}\u{9b}"),
            "a␛[2J␇b␀␍␡\u{fffd}"
        );
        assert_eq!(printable("x\u{202e}y"), "x<U+202E>y");
    }
}
