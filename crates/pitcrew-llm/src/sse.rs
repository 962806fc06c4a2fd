//! A lenient server-sent-events reader for chat-completion streams.
//!
//! Each `data:` line is one event. The SSE standard joins consecutive `data:` lines up to a
//! blank line, but no chat-completions server sends multi-line data, while some do forget
//! the blank line between events; treating lines separately reads both correctly. Comment
//! lines (`: OPENROUTER PROCESSING`) and the other fields (`event:`, `id:`, `retry:`) carry
//! nothing a completion needs and are skipped.

/// The longest event line read: one chunk never holds more than a whole reply (JSON
/// escaping can double it).
const MAX_LINE_BYTES: usize = 2 * crate::client::MAX_REPLY_BYTES;

/// Why the rest of a stream cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SseError {
    /// A line passed [`MAX_LINE_BYTES`] without ending.
    LineTooLong(usize),
    /// A `data:` line is not UTF-8, so it is not JSON: decoding it leniently would change
    /// what the model sent.
    NotUtf8,
}

/// Splits a byte stream into the payloads of its `data:` lines.
#[derive(Debug, Default)]
pub(crate) struct SseReader {
    /// Bytes of a line not yet terminated. Lines are decoded only once complete, so a UTF-8
    /// character split across network chunks is never garbled.
    partial: Vec<u8>,
}

impl SseReader {
    /// Feeds the next chunk of the body; returns, in order, the data payloads of the lines it
    /// completes, or why one cannot be read (the caller stops there: the stream may have
    /// ended before, at `[DONE]`).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Result<String, SseError>> {
        let mut payloads = Vec::new();
        for &byte in bytes {
            if byte == b'\n' || byte == b'\r' {
                payloads.extend(self.take_line().transpose());
            } else if self.partial.len() >= MAX_LINE_BYTES {
                payloads.push(Err(SseError::LineTooLong(MAX_LINE_BYTES)));
                break;
            } else {
                self.partial.push(byte);
            }
        }
        payloads
    }

    /// The payload of a last line that the body ended without terminating.
    pub(crate) fn finish(&mut self) -> Result<Option<String>, SseError> {
        self.take_line()
    }

    fn take_line(&mut self) -> Result<Option<String>, SseError> {
        let line = std::mem::take(&mut self.partial);
        let Some(data) = line.strip_prefix(b"data:") else {
            return Ok(None);
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        String::from_utf8(data.to_vec())
            .map(Some)
            .map_err(|_| SseError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_across_chunk_boundaries() {
        let mut reader = SseReader::default();
        let mut got = reader.push(b": OPENROUTER PROCESSING\n\ndata: {\"a\":");
        got.extend(reader.push(b"1}\r\n\r\nevent: x\nid: 3\ndata:[DONE]"));
        assert_eq!(got, [Ok("{\"a\":1}".to_string())]);
        assert_eq!(reader.finish(), Ok(Some("[DONE]".to_string())));
        assert_eq!(reader.finish(), Ok(None));
    }

    #[test]
    fn a_character_split_between_chunks_survives() {
        let mut reader = SseReader::default();
        let bytes = "data: héllo\n".as_bytes();
        let mut got = reader.push(&bytes[..8]);
        got.extend(reader.push(&bytes[8..]));
        assert_eq!(got, [Ok("héllo".to_string())]);
    }

    #[test]
    fn a_data_line_that_is_not_utf8_is_an_error_and_a_comment_is_not() {
        let mut reader = SseReader::default();
        assert_eq!(reader.push(b": \xff keep-alive\n"), []);
        assert_eq!(
            reader.push(b"data: {\"a\": \"\xff\"}\n"),
            [Err(SseError::NotUtf8)]
        );
    }
}
