//! What validation saw of a file, so that what is committed can be held to it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A file as validation verified it: its path relative to the worktree and the SHA-256 of
/// its exact bytes. A commit refuses a file whose bytes are no longer these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFile {
    pub path: String,
    pub sha256: String,
}

impl VerifiedFile {
    /// `path` with the SHA-256 of `bytes`.
    pub fn of(path: impl Into<String>, bytes: &[u8]) -> Self {
        VerifiedFile {
            path: path.into(),
            sha256: sha256_hex(bytes),
        }
    }
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(VerifiedFile::of("a.py", b"abc").sha256, sha256_hex(b"abc"));
    }
}
