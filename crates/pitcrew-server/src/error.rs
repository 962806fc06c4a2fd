//! Every error the API answers with: an HTTP status and
//! `{"error": {"code": "stable_snake_case_code", "message": "…"}}`. Codes are for programs and
//! never change; messages are for people and say what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pitcrew_engine::models::RankError;
use pitcrew_engine::results::ResultError;
use pitcrew_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For a rejected batch: what is wrong with each bad entry.
    pub problems: Vec<EntryProblem>,
}

/// What is wrong with one entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EntryProblem {
    /// The entry's position in `tasks`, from 0.
    pub index: usize,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: `unauthorized`, `task_not_found`, `invalid_task`, `invalid_batch`,
    /// `malformed_json`, `body_too_large`, `unsupported_media_type`, `invalid_query`,
    /// `invalid_state`, `no_result`, `unknown_model`, `store_unreachable`, `not_found`,
    /// `method_not_allowed`, `internal`, …
    pub code: String,
    pub message: String,
    /// Only for `invalid_batch`: every bad entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<EntryProblem>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required: send `Authorization: Bearer TOKEN` with the \
             token of `[server] token` (or PITCREW_SERVER_TOKEN)",
        )
    }

    /// A failure of ours, not the client's: the client learns that much, the log the rest.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!("request failed: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the server could not answer: {error}"),
        )
    }

    pub fn with_problems(mut self, problems: Vec<EntryProblem>) -> Self {
        self.problems = problems;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                problems: self.problems,
            },
        };
        let mut response = (self.status, crate::body::redacted_json(&body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "task_not_found", error.to_string())
            }
            StoreError::Ambiguous { .. } => Self::bad_request("ambiguous_id", error.to_string()),
            StoreError::InvalidState { .. } => {
                Self::new(StatusCode::CONFLICT, "invalid_state", error.to_string())
            }
            StoreError::IdempotencyConflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                error.to_string(),
            ),
            _ => Self::internal(&error),
        }
    }
}

impl From<ResultError> for ApiError {
    fn from(error: ResultError) -> Self {
        match error {
            ResultError::NoResult { .. } => {
                Self::new(StatusCode::CONFLICT, "no_result", error.to_string())
            }
            ResultError::NoPatch(_) => {
                Self::new(StatusCode::NOT_FOUND, "no_patch", error.to_string())
            }
            ResultError::Store(e) => e.into(),
        }
    }
}

impl From<RankError> for ApiError {
    fn from(error: RankError) -> Self {
        match error {
            RankError::UnknownModel(e) => Self::unprocessable("unknown_model", e.to_string()),
            RankError::Store(e) => e.into(),
            RankError::Setup(e) => Self::internal(&e),
        }
    }
}
