//! Token counts as the prompt budget measures them.

use std::sync::OnceLock;

/// Tokens in `text` as OpenAI's cl100k encoding counts them (a close estimate for most
/// models' tokenizers).
pub fn count_tokens(text: &str) -> usize {
    static ENCODING: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    ENCODING
        .get_or_init(|| tiktoken_rs::cl100k_base().expect("the embedded cl100k vocabulary loads"))
        .encode_ordinary(text)
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_with_a_real_tokenizer() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello world"), 2);
        assert!(count_tokens("def f(x):\n    return x * 2\n") > 5);
    }
}
