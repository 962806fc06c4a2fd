//! What a run produced: [`Output`], and the size-capped capture of one output stream.

use std::collections::VecDeque;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The result of a finished (or killed) run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code, when the process exited on its own.
    pub code: Option<i32>,
    /// The signal that ended the process, when one did (`9` after a timeout).
    pub signal: Option<i32>,
    /// Captured stdout, UTF-8 lossy, cut in the middle past the output limit.
    pub stdout: String,
    /// Captured stderr, UTF-8 lossy, cut in the middle past the output limit.
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Whether the timeout expired and the process group was killed.
    pub timed_out: bool,
    /// Wall-clock time from spawn until the process was reaped and its output drained.
    pub duration: Duration,
    /// Whether the command ran in a network namespace of its own (asked for with
    /// [`crate::CommandSpec::isolate_network`] and available on this machine).
    pub network_isolated: bool,
    /// Whether the command ran confined (see [`crate::CommandSpec::confine`]). Always true
    /// when confinement was asked for: a command that cannot be confined does not run.
    pub confined: bool,
}

impl Output {
    /// Exit code 0 within the timeout.
    pub fn success(&self) -> bool {
        !self.timed_out && self.code == Some(0)
    }

    /// One line saying how the run ended: `exit code 1`, `killed by signal 9 (SIGKILL)`,
    /// `timed out after 5.0s`.
    pub fn describe_status(&self) -> String {
        if self.timed_out {
            return format!("timed out after {:.1?}", self.duration);
        }
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => format!("killed by signal {sig} ({name})"),
                Err(_) => format!("killed by signal {sig}"),
            },
            (None, None) => "ended without an exit code or signal".to_owned(),
        }
    }

    /// The last `max_lines` lines of stderr followed by stdout (empty streams skipped), for
    /// error messages: tools put their complaint on stderr, test runners their summary at
    /// the end of stdout.
    pub fn combined_tail(&self, max_lines: usize) -> String {
        let lines: Vec<&str> = [self.stderr.as_str(), self.stdout.as_str()]
            .into_iter()
            .flat_map(|s| s.trim_end().lines())
            .collect();
        lines[lines.len().saturating_sub(max_lines)..].join("\n")
    }
}

/// Keeps the first and last bytes of a stream, `limit` bytes in all, and counts the rest.
#[derive(Debug)]
pub(crate) struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: usize,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        let head_cap = limit / 2;
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: limit - head_cap,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let to_head = bytes.len().min(self.head_cap - self.head.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        // Only the last `tail_cap` bytes of this chunk can survive; skip the rest up front.
        bytes = &bytes[bytes.len().saturating_sub(self.tail_cap)..];
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// The kept text and whether anything was cut.
    pub(crate) fn finish(self) -> (String, bool) {
        let cut = self.total - self.head.len() - self.tail.len();
        let head = String::from_utf8_lossy(&self.head);
        let tail = Vec::from(self.tail);
        let tail = String::from_utf8_lossy(&tail);
        if cut == 0 {
            return (format!("{head}{tail}"), false);
        }
        let sep = if head.is_empty() || head.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        (format!("{head}{sep}[… {cut} bytes cut …]\n{tail}"), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(code: Option<i32>, signal: Option<i32>, timed_out: bool) -> Output {
        Output {
            code,
            signal,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            timed_out,
            duration: Duration::from_millis(5000),
            network_isolated: false,
            confined: false,
        }
    }

    #[test]
    fn capture_keeps_everything_up_to_the_limit() {
        let mut c = Capture::new(10);
        c.push(b"hello");
        c.push(b"world");
        assert_eq!(c.finish(), ("helloworld".to_owned(), false));
    }

    #[test]
    fn capture_keeps_head_and_tail_with_a_marker() {
        let mut c = Capture::new(8);
        for chunk in [&b"abc"[..], b"defghij", b"klmnop", b"qrstuvwxyz"] {
            c.push(chunk);
        }
        assert_eq!(
            c.finish(),
            ("abcd\n[… 18 bytes cut …]\nwxyz".to_owned(), true)
        );
    }

    #[test]
    fn capture_with_zero_limit_only_counts() {
        let mut c = Capture::new(0);
        c.push(b"abc\n");
        assert_eq!(c.finish(), ("[… 4 bytes cut …]\n".to_owned(), true));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            output(Some(1), None, false).describe_status(),
            "exit code 1"
        );
        assert_eq!(
            output(None, Some(9), false).describe_status(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            output(None, Some(9), true).describe_status(),
            "timed out after 5.0s"
        );
        assert!(output(Some(0), None, false).success());
        assert!(!output(Some(0), None, true).success());
        assert!(!output(None, Some(15), false).success());
    }

    #[test]
    fn combined_tail_is_stderr_then_stdout_last_lines() {
        let mut out = output(Some(1), None, false);
        out.stderr = "e1\ne2\n".to_owned();
        out.stdout = "o1\no2\no3\n".to_owned();
        assert_eq!(out.combined_tail(4), "e2\no1\no2\no3");
        assert_eq!(out.combined_tail(10), "e1\ne2\no1\no2\no3");
        out.stderr.clear();
        assert_eq!(out.combined_tail(1), "o3");
    }
}
