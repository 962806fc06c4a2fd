//! A lenient server-sent-events reader for chat-completion streams.
//!
//! Each `data:` line is one event. The SSE standard joins consecutive `data:` lines up to a
//! blank line, but no chat-completions server sends multi-line data, while some do forget
//! the blank line between events; treating lines separately reads both correctly. Comment
//! lines (`: OPENROUTER PROCESSING`) and the other fields (`event:`, `id:`, `retry:`) carry
//! nothing a completion needs and are skipped.

/// Splits a byte stream into the payloads of its `data:` lines.
#[derive(Debug, Default)]
pub(crate) struct SseReader {
    /// Bytes of a line not yet terminated. Lines are decoded only once complete, so a UTF-8
    /// character split across network chunks is never garbled.
    partial: Vec<u8>,
}

impl SseReader {
    /// Feeds the next chunk of the body; returns the data payloads of the lines it completes.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut payloads = Vec::new();
        for &byte in bytes {
            if byte == b'\n' || byte == b'\r' {
                payloads.extend(self.take_line());
            } else {
                self.partial.push(byte);
            }
        }
        payloads
    }

    /// The payload of a last line that the body ended without terminating.
    pub(crate) fn finish(&mut self) -> Option<String> {
        self.take_line()
    }

    fn take_line(&mut self) -> Option<String> {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        let data = line.strip_prefix("data:")?;
        Some(data.strip_prefix(' ').unwrap_or(data).to_string())
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
        assert_eq!(got, ["{\"a\":1}"]);
        assert_eq!(reader.finish().as_deref(), Some("[DONE]"));
        assert_eq!(reader.finish(), None);
    }

    #[test]
    fn a_character_split_between_chunks_survives() {
        let mut reader = SseReader::default();
        let bytes = "data: héllo\n".as_bytes();
        let mut got = reader.push(&bytes[..8]);
        got.extend(reader.push(&bytes[8..]));
        assert_eq!(got, ["héllo"]);
    }
}
