//! Token counts and reply text. The simulator has no tokenizer: a token is taken to be four
//! characters, OpenAI's rule of thumb, which is close enough for quotas and costs.

use serde_json::Value;

const CHARS_PER_TOKEN: usize = 4;

const FILLER_WORDS: &[&str] = &[
    "the",
    "simulated",
    "model",
    "writes",
    "this",
    "reply",
    "so",
    "that",
    "load",
    "tests",
    "have",
    "something",
    "to",
    "read",
    "while",
    "quotas",
    "latency",
    "and",
    "faults",
    "are",
    "exercised",
    "by",
    "pitcrew",
    "sim",
    "nothing",
    "here",
    "is",
    "real",
    "output",
    "a",
    "stream",
    "of",
    "words",
];

/// Tokens in `text`: a quarter of its characters, rounded up.
pub(crate) fn estimate_tokens(text: &str) -> u64 {
    text.chars().count().div_ceil(CHARS_PER_TOKEN) as u64
}

/// The prompt of a chat-completions request: every message's text (string content, or the
/// `text` of content parts), joined by newlines.
pub fn prompt_text(request: &Value) -> String {
    let Some(messages) = request["messages"].as_array() else {
        return String::new();
    };
    let mut texts = Vec::new();
    for message in messages {
        match &message["content"] {
            Value::String(text) => texts.push(text.as_str()),
            Value::Array(parts) => {
                texts.extend(parts.iter().filter_map(|part| part["text"].as_str()))
            }
            _ => {}
        }
    }
    texts.join("\n")
}

/// Sentences of plain words, about `tokens` tokens long, drawn from `rng`.
pub(crate) fn filler(rng: &mut fastrand::Rng, tokens: u32) -> String {
    let wanted = tokens as usize * CHARS_PER_TOKEN;
    let mut text = String::new();
    let mut sentence_start = true;
    while text.len() < wanted {
        let word = FILLER_WORDS[rng.usize(..FILLER_WORDS.len())];
        if !text.is_empty() {
            text.push(' ');
        }
        if sentence_start {
            let mut chars = word.chars();
            text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            text.push_str(chars.as_str());
        } else {
            text.push_str(word);
        }
        sentence_start = rng.u8(..8) == 0;
        if sentence_start {
            text.push('.');
        }
    }
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The first `tokens` tokens of `text`, and whether anything was cut.
pub(crate) fn first_tokens(text: &str, tokens: u64) -> (&str, bool) {
    let chars = usize::try_from(tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(CHARS_PER_TOKEN);
    match text.char_indices().nth(chars) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// `text` in pieces of `tokens_per_piece` tokens (the last may be shorter); no piece for
/// empty text.
pub(crate) fn pieces(text: &str, tokens_per_piece: u32) -> Vec<&str> {
    let size = (tokens_per_piece as usize).max(1) * CHARS_PER_TOKEN;
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.char_indices().nth(size).map_or(rest.len(), |(i, _)| i);
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_a_quarter_of_the_characters() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("éééé"), 1);
        assert_eq!(first_tokens("abcdefghij", 2), ("abcdefgh", true));
        assert_eq!(first_tokens("abc", 2), ("abc", false));
        assert_eq!(pieces("abcdéfghij", 1), ["abcd", "éfgh", "ij"]);
        assert!(pieces("", 1).is_empty());
    }

    #[test]
    fn the_prompt_is_every_message_text() {
        let request = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "image_url"}]},
            {"role": "assistant", "content": null},
        ]});
        assert_eq!(prompt_text(&request), "sys\npart");
        assert_eq!(prompt_text(&json!({})), "");
    }

    #[test]
    fn filler_is_repeatable_and_about_the_length_asked() {
        let a = filler(&mut fastrand::Rng::with_seed(7), 50);
        let b = filler(&mut fastrand::Rng::with_seed(7), 50);
        assert_eq!(a, b);
        let tokens = estimate_tokens(&a);
        assert!((50..60).contains(&tokens), "{tokens} tokens: {a}");
        assert!(a.ends_with('.'));
        assert_eq!(filler(&mut fastrand::Rng::with_seed(7), 0), "");
    }
}
