//! How a delivery is signed: `X-Pitcrew-Signature: sha256=<hex>`, the HMAC-SHA256 under the
//! endpoint's secret of `<timestamp>.<body>`, where the timestamp is `X-Pitcrew-Timestamp`
//! (Unix seconds, the attempt's). Signing the timestamp with the body lets a receiver refuse
//! a captured request replayed later; the event id lets it drop a retry it already handled.

use hmac::{Hmac, KeyInit, Mac};
use pitcrew_core::Secret;
use sha2::Sha256;

/// The event's type, e.g. `task.completed`.
pub const EVENT_HEADER: &str = "X-Pitcrew-Event";
/// The event's id: the same on every attempt, for receivers to deduplicate by.
pub const EVENT_ID_HEADER: &str = "X-Pitcrew-Event-Id";
/// When this attempt was signed, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Pitcrew-Timestamp";
/// `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`.
pub const SIGNATURE_HEADER: &str = "X-Pitcrew-Signature";
/// Which attempt this is (1 for the first).
pub const ATTEMPT_HEADER: &str = "X-Pitcrew-Delivery-Attempt";

/// The `X-Pitcrew-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut signature = String::with_capacity(7 + 2 * digest.len());
    signature.push_str("sha256=");
    for byte in digest.iter() {
        signature.push_str(&format!("{byte:02x}"));
    }
    signature
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' |
        //   openssl dgst -sha256 -hmac 'test-secret-0123456789'
        let secret = Secret::new("test-secret-0123456789");
        assert_eq!(
            sign(&secret, 1_700_000_000, br#"{"a":1}"#),
            "sha256=6e873f59dc6002f6de5f578e9bf3f90a7906473a2924651d6f4cc33d61aff598"
        );
    }

    #[test]
    fn the_timestamp_and_the_body_both_count() {
        let secret = Secret::new("test-secret-0123456789");
        let signed = sign(&secret, 1_700_000_000, b"{}");
        assert_ne!(signed, sign(&secret, 1_700_000_001, b"{}"));
        assert_ne!(signed, sign(&secret, 1_700_000_000, b"{ }"));
        assert_ne!(
            signed,
            sign(&Secret::new("another-secret-0123"), 1_700_000_000, b"{}")
        );
    }
}
