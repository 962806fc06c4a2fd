//! What `run` tells the re-executed sandbox helper ([`Policy`], carried in one argument) and
//! what the helper tells `run` back ([`Report`], lines on a status pipe).
//!
//! The policy travels in argv, never in the environment: the command's environment is
//! exactly what its [`crate::EnvPolicy`] built. It is a length-prefixed binary record written
//! as lowercase hex, so any path (any bytes but NUL) survives and the argument holds no NUL.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::spec::Limits;

/// The first argument that turns a binary linking this crate into the sandbox helper.
/// Versioned: a helper only ever runs the protocol of the binary it is part of, since `run`
/// re-executes its own image (`/proc/self/exe`).
pub(crate) const HELPER_ARG: &str = "--pitcrew-sandbox-helper-v1";

/// Everything the helper needs besides the program and its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The pid of the process running `run`; the helper refuses to start under any other
    /// parent (it would outlive pitcrew otherwise).
    pub(crate) parent_pid: u32,
    /// The write end of the status pipe in the helper, or -1 to report on stderr (manual use).
    pub(crate) report_fd: i32,
    /// Keep the machine's network (no network namespace, no Landlock TCP rules unless
    /// `connect_ports`).
    pub(crate) network: bool,
    /// With `network`: Landlock handles TCP bind and connect and allows connecting to these
    /// ports only (`CommandSpec::connect_only_to`).
    pub(crate) connect_ports: Option<Vec<u16>>,
    /// Give the command pseudo-terminals of its own: a private `devpts` instance on
    /// `/dev/pts`, its `ptmx` on `/dev/ptmx`.
    pub(crate) terminals: bool,
    /// Run the self-check instead of the program (see `confinement_available`).
    pub(crate) probe: bool,
    pub(crate) limits: Limits,
    /// Read and execute beneath these.
    pub(crate) read: Vec<PathBuf>,
    /// Full access beneath these.
    pub(crate) write: Vec<PathBuf>,
    /// Directories covered by an empty tmpfs in the sandbox's mount namespace (granted paths
    /// beneath them are bound back), so unix sockets there cannot be reached by path.
    pub(crate) hide: Vec<PathBuf>,
}

impl Policy {
    pub(crate) fn encode(&self) -> String {
        let mut buf = Vec::new();
        put_u64(&mut buf, u64::from(self.parent_pid));
        put_u64(&mut buf, self.report_fd as i64 as u64);
        put_u64(
            &mut buf,
            u64::from(self.network)
                | u64::from(self.probe) << 1
                | u64::from(self.connect_ports.is_some()) << 2
                | u64::from(self.terminals) << 3,
        );
        for limit in limit_values(&self.limits) {
            put_u64(&mut buf, limit.map_or(u64::MAX, |v| v.min(u64::MAX - 1)));
        }
        for paths in [&self.read, &self.write, &self.hide] {
            put_u64(&mut buf, paths.len() as u64);
            for path in paths {
                let bytes = path.as_os_str().as_bytes();
                put_u64(&mut buf, bytes.len() as u64);
                buf.extend_from_slice(bytes);
            }
        }
        let ports = self.connect_ports.as_deref().unwrap_or_default();
        put_u64(&mut buf, ports.len() as u64);
        for &port in ports {
            put_u64(&mut buf, u64::from(port));
        }
        let mut hex = String::with_capacity(buf.len() * 2);
        for byte in buf {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 15)]));
        }
        hex
    }

    pub(crate) fn decode(hex: &[u8]) -> Option<Self> {
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Vec<u8> = hex
            .chunks(2)
            .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
            .collect::<Option<_>>()?;
        let mut r = Reader(&bytes);
        let parent_pid = u32::try_from(r.u64()?).ok()?;
        let report_fd = i32::try_from(r.u64()? as i64).ok()?;
        let flags = r.u64()?;
        let mut limit = || {
            let v = r.u64()?;
            Some((v != u64::MAX).then_some(v))
        };
        let limits = Limits {
            cpu_secs: limit()?,
            address_space_bytes: limit()?,
            file_size_bytes: limit()?,
            processes: limit()?,
        };
        let mut paths = || -> Option<Vec<PathBuf>> {
            let n = r.u64()?;
            (0..n)
                .map(|_| {
                    let len = usize::try_from(r.u64()?).ok()?;
                    Some(PathBuf::from(OsString::from_vec(r.take(len)?.to_vec())))
                })
                .collect()
        };
        let (read, write, hide) = (paths()?, paths()?, paths()?);
        let n_ports = r.u64()?;
        let ports: Vec<u16> = (0..n_ports)
            .map(|_| u16::try_from(r.u64()?).ok())
            .collect::<Option<_>>()?;
        let restricted = flags & 4 != 0;
        if flags >> 4 != 0 || (!restricted && !ports.is_empty()) {
            return None;
        }
        r.0.is_empty().then_some(Self {
            parent_pid,
            report_fd,
            network: flags & 1 != 0,
            connect_ports: restricted.then_some(ports),
            terminals: flags & 8 != 0,
            probe: flags & 2 != 0,
            limits,
            read,
            write,
            hide,
        })
    }
}

pub(crate) fn limit_values(limits: &Limits) -> [Option<u64>; 4] {
    [
        limits.cpu_secs,
        limits.address_space_bytes,
        limits.file_size_bytes,
        limits.processes,
    ]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// What the helper reported on the status pipe. Each record is one line written with a
/// single `write` (shorter than `PIPE_BUF`, so never interleaved):
///
/// - `E <stage> <errno> <message>`: setting up the sandbox or starting the program failed
///   at `stage`; the program did not run.
/// - `S <wait status>`: the program ended with this raw wait status (written by the
///   namespace's init, which reaped it).
/// - `I <wait status>`: the namespace's init ended this way (written by the outer helper);
///   only telling when there is no `S`, i.e. init was killed.
/// - `P <abi>`: the self-check passed under Landlock ABI `abi`.
///
/// Only the helper's own processes hold the pipe: the program's copy is close-on-exec, and
/// it cannot reach the others' descriptors (they are outside its PID namespace or
/// undumpable and outside its Landlock domain). So `S` cannot be forged by the program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) error: Option<StartError>,
    pub(crate) status: Option<i32>,
    pub(crate) init_status: Option<i32>,
    pub(crate) probe_abi: Option<i32>,
}

/// A failure inside the helper before the program ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartError {
    /// What was being done: `unshare`, `mount /proc`, `landlock`, `exec`, ...
    pub(crate) stage: String,
    /// The OS error, 0 when there is none.
    pub(crate) errno: i32,
    pub(crate) message: String,
}

/// Stage name of a failed `execvp`: the one failure that means "cannot start the program"
/// rather than "cannot confine it".
pub(crate) const STAGE_EXEC: &str = "exec";

impl Report {
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let mut report = Self::default();
        for line in String::from_utf8_lossy(bytes).lines() {
            let mut fields = line.splitn(4, '\t');
            match (fields.next(), fields.next()) {
                (Some("E"), Some(stage)) if report.error.is_none() => {
                    report.error = Some(StartError {
                        stage: stage.to_owned(),
                        errno: fields.next().and_then(|e| e.parse().ok()).unwrap_or(0),
                        message: fields.next().unwrap_or_default().to_owned(),
                    });
                }
                (Some("S"), Some(raw)) => report.status = raw.parse().ok(),
                (Some("I"), Some(raw)) => report.init_status = raw.parse().ok(),
                (Some("P"), Some(abi)) => report.probe_abi = abi.parse().ok(),
                _ => {}
            }
        }
        report
    }
}

/// One `E` record.
pub(crate) fn error_record(stage: &str, errno: i32, message: &str) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let mut line = format!("E\t{}\t{errno}\t{}", clean(stage), clean(message));
    // Stay well under PIPE_BUF (4096) so the write is atomic.
    if line.len() > 2000 {
        let mut cut = 2000;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.push('\n');
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_any_path_bytes() {
        let policy = Policy {
            parent_pid: 4242,
            report_fd: 7,
            network: true,
            connect_ports: Some(vec![0, 8080, u16::MAX]),
            terminals: true,
            probe: true,
            limits: Limits {
                cpu_secs: Some(3),
                address_space_bytes: None,
                file_size_bytes: Some(u64::MAX),
                processes: Some(0),
            },
            read: vec![
                "/usr".into(),
                PathBuf::from(OsString::from_vec(b"/a\tb\n\xff c".to_vec())),
            ],
            write: vec![],
            hide: vec!["/run".into()],
        };
        let hex = policy.encode();
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let back = Policy::decode(hex.as_bytes()).unwrap();
        // u64::MAX is the "no limit" marker; a limit that large is the largest real one.
        let mut expected = policy.clone();
        expected.limits.file_size_bytes = Some(u64::MAX - 1);
        assert_eq!(back, expected);

        let unreported = Policy {
            report_fd: -1,
            ..Policy::default()
        };
        assert_eq!(
            Policy::decode(unreported.encode().as_bytes()),
            Some(unreported)
        );

        // No port list and an empty one are different policies: all TCP versus none.
        let none_allowed = Policy {
            network: true,
            connect_ports: Some(vec![]),
            ..Policy::default()
        };
        let back = Policy::decode(none_allowed.encode().as_bytes()).unwrap();
        assert_eq!(back.connect_ports, Some(vec![]));
        assert_eq!(
            Policy::decode(Policy::default().encode().as_bytes())
                .unwrap()
                .connect_ports,
            None
        );
    }

    #[test]
    fn malformed_policies_are_refused() {
        let hex = Policy::default().encode();
        assert_eq!(Policy::decode(&hex.as_bytes()[..hex.len() - 2]), None);
        assert_eq!(Policy::decode(format!("{hex}00").as_bytes()), None);
        assert_eq!(
            Policy::decode(hex.to_uppercase().replace('0', "G").as_bytes()),
            None
        );
        assert_eq!(Policy::decode(b"abc"), None);

        // Ports without the flag that says they restrict anything: refused, not dropped.
        let restricted = Policy {
            network: true,
            connect_ports: Some(vec![5]),
            ..Policy::default()
        }
        .encode();
        // The flags are the third u64; their low byte is hex digits 32..34.
        assert_eq!(&restricted[32..34], "05");
        let unflagged = format!("{}01{}", &restricted[..32], &restricted[34..]);
        assert_eq!(Policy::decode(unflagged.as_bytes()), None);
        // A port number past u16.
        let len = restricted.len();
        let too_big = format!(
            "{}000001{}",
            &restricted[..len - 16],
            &restricted[len - 10..]
        );
        assert_eq!(Policy::decode(too_big.as_bytes()), None);
    }

    #[test]
    fn report_records_parse() {
        let mut bytes = error_record("mount /proc", 1, "Operation\tnot\npermitted");
        bytes.extend_from_slice(b"S\t256\nI\t0\nP\t7\ngarbage\n");
        let report = Report::parse(&bytes);
        assert_eq!(
            report.error,
            Some(StartError {
                stage: "mount /proc".into(),
                errno: 1,
                message: "Operation not permitted".into()
            })
        );
        assert_eq!(
            (report.status, report.init_status, report.probe_abi),
            (Some(256), Some(0), Some(7))
        );
        assert_eq!(Report::parse(b""), Report::default());
    }
}
