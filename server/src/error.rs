//! The one place errors become HTTP responses: a stable machine `code` (from
//! [`tsunagi_sync::wire::ApiErrorCode`], documented in `docs/protocol.md`) and a human
//! message. Internal details are logged once, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tsunagi_sync::wire::{ApiError, ApiErrorCode, Format};

use crate::store::StoreError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiFailure {
    /// The stable code.
    pub code: ApiErrorCode,
    /// For people; never contains case content.
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// The body's format (the request's, JSON when unknown).
    pub format: Format,
}

impl ApiFailure {
    /// An error with a code and message, answered in JSON.
    pub fn new(code: ApiErrorCode, message: impl Into<String>) -> Self {
        let retry_after = match code {
            ApiErrorCode::TooManyRequests | ApiErrorCode::Unavailable => Some(5),
            _ => None,
        };
        Self { code, message: message.into(), retry_after, format: Format::Json }
    }

    /// Answers in `format` instead.
    pub fn in_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets the `Retry-After` seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A 500 whose cause is logged here and not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ApiErrorCode::Internal, "internal error; nothing was changed")
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiFailure::new(ApiErrorCode::Unavailable, "the database is unavailable; retry later")
            }
            // The connection died under the request (the database restarted or the network
            // cut it): nothing was acknowledged, and the next request gets a new connection.
            StoreError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                info,
            )) => {
                tracing::warn!(error = %info.message(), "database connection lost");
                ApiFailure::new(ApiErrorCode::Unavailable, "the database is unavailable; retry later")
            }
            StoreError::Query(diesel::result::Error::DatabaseError(kind, info))
                if matches!(
                    kind,
                    diesel::result::DatabaseErrorKind::SerializationFailure
                        | diesel::result::DatabaseErrorKind::UniqueViolation
                ) || info.message().contains("database is locked")
                    || info.message().contains("deadlock detected") =>
            {
                // A concurrent write won a race (e.g. two first uploads of one new case), or
                // PostgreSQL broke a lock cycle by rolling this transaction back: the retry
                // finds the other's result and answers normally.
                ApiFailure::new(ApiErrorCode::Unavailable, "the database is busy; retry shortly").retry_after(1)
            }
            other => ApiFailure::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiFailure {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiFailure::internal(e)
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let body = ApiError::new(self.code, self.message.clone());
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, self.format.content_type()));
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.insert_header((header::RETRY_AFTER, value));
            }
        }
        if self.code == ApiErrorCode::Unauthenticated || self.code == ApiErrorCode::TokenExpired {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.body(self.format.encode(&body))
    }
}
