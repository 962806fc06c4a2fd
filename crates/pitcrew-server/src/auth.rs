//! The bearer token every `/api/v1` request carries when one is configured.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use pitcrew_core::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// Whether `given` is the token. The comparison takes the same time wherever the two differ,
/// and comparing digests hides the token's length too.
pub(crate) fn token_matches(token: &Secret, given: &str) -> bool {
    let expected = Sha256::digest(token.expose().as_bytes());
    let given = Sha256::digest(given.as_bytes());
    expected.ct_eq(&given).into()
}

/// Lets a request through when no token is configured, or when it carries
/// `Authorization: Bearer TOKEN`; answers 401 before the handler runs otherwise, so a
/// refused request changes nothing.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = &state.token else {
        return Ok(next.run(request).await);
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, credentials) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        });
    match given {
        Some(given) if token_matches(token, given) => Ok(next.run(request).await),
        _ => Err(ApiError::unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_matches() {
        let token = Secret::new("s3cret-token-of-the-api-0123");
        assert!(token_matches(&token, "s3cret-token-of-the-api-0123"));
        for wrong in [
            "",
            "s3cret-token-of-the-api-012",
            "s3cret-token-of-the-api-01234",
            "S3CRET-TOKEN-OF-THE-API-0123",
        ] {
            assert!(!token_matches(&token, wrong), "{wrong:?}");
        }
    }
}
