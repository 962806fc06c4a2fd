//! What comes in and goes out: request bodies read up to a limit and parsed strictly, query
//! strings with unknown parameters refused, and JSON answers with every registered secret
//! redacted (as the CLI's output is).

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest body of one task: far more than any task needs.
pub const TASK_BODY_LIMIT: usize = 1024 * 1024;
/// The largest body of a batch.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A JSON request body of at most `LIMIT` bytes, parsed into `T`: 415 unless it is sent as
/// JSON, 413 past the limit, 400 when it is not JSON, 422 when it is JSON of the wrong shape
/// (serde names the field: an unknown one, a missing one, a bad value).
#[derive(Debug)]
pub struct JsonBody<T, const LIMIT: usize>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with `Content-Type: application/json`",
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than this route's limit of {LIMIT} bytes"),
            )
        };
        // A declared length over the limit is refused before anything is read.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > LIMIT) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(request.into_body(), LIMIT)
            .await
            .map_err(|_| too_large())?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `bytes` as `T`: 400 for what is not JSON at all, 422 for JSON of the wrong shape.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable("invalid_body", e.to_string()),
        _ => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")),
    })
}

/// A query string parsed into `T` (whose fields are the route's parameters): 400 naming the
/// parameter that is unknown or has a bad value.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e: QueryRejection| {
                    ApiError::bad_request("invalid_query", e.body_text())
                })?;
        Ok(QueryParams(value))
    }
}

/// A JSON answer with every registered secret replaced by `[REDACTED]`.
#[derive(Debug)]
pub struct ApiJson<T>(pub StatusCode, pub T);

impl<T> ApiJson<T> {
    pub fn ok(value: T) -> Self {
        ApiJson(StatusCode::OK, value)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        (self.0, redacted_json(&self.1)).into_response()
    }
}

/// `value` as a JSON response body, redacted.
pub fn redacted_json<T: Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(mut json) => {
            pitcrew_core::redact_json(&mut json);
            axum::Json(json).into_response()
        }
        Err(e) => {
            tracing::error!("an answer did not serialize: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"code":"internal","message":"the answer could not be written"}}"#,
            )
                .into_response()
        }
    }
}
