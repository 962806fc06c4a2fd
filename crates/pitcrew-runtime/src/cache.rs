//! The opt-in reply cache (`pitcrew run --cache`): a model's reply to an identical request is
//! kept on disk, keyed by a hash of the model id and everything sent, so re-running a batch
//! after a crash or a configuration fix does not pay twice for the same call. A cached reply
//! costs nothing and is marked as a cache hit wherever it is reported.

use std::path::{Path, PathBuf};

use pitcrew_core::Usage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A reply as kept in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedReply {
    pub model: String,
    pub text: String,
    /// What the original call cost (a hit costs nothing).
    pub original_usage: Usage,
}

#[derive(Debug, Clone)]
pub struct ReplyCache {
    dir: PathBuf,
}

impl ReplyCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReplyCache { dir: dir.into() }
    }

    /// The key of a request: SHA-256 over the model id and the request's JSON.
    pub fn key(model: &str, request: &serde_json::Value) -> String {
        let mut hash = Sha256::new();
        hash.update(model.as_bytes());
        hash.update([0]);
        hash.update(request.to_string().as_bytes());
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached reply for `key`; an unreadable entry counts as a miss.
    pub fn get(&self, key: &str) -> Option<CachedReply> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Stores `reply` under `key`, atomically (write then rename) so a crash never leaves a
    /// half-written entry.
    pub fn put(&self, key: &str, reply: &CachedReply) -> std::io::Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let partial = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(
            &partial,
            serde_json::to_vec(reply).expect("a reply serializes"),
        )?;
        std::fs::rename(partial, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_found_by_the_same_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReplyCache::new(dir.path().join("replies"));
        let request = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2});
        let key = ReplyCache::key("m/1", &request);
        assert_eq!(key.len(), 64);
        assert_ne!(key, ReplyCache::key("m/2", &request));
        assert_ne!(
            key,
            ReplyCache::key(
                "m/1",
                &serde_json::json!({"messages": [], "temperature": 0.2})
            )
        );
        assert_eq!(cache.get(&key), None);
        let reply = CachedReply {
            model: "m/1".into(),
            text: "```python path=a.py\nx = 1\n```".into(),
            original_usage: Usage {
                tokens_in: 10,
                tokens_out: 5,
                cost_usd: Some(0.01),
            },
        };
        cache.put(&key, &reply).unwrap();
        assert_eq!(cache.get(&key), Some(reply));
        std::fs::write(cache.path(&key), "{broken").unwrap();
        assert_eq!(cache.get(&key), None, "a corrupt entry is a miss");
    }
}
