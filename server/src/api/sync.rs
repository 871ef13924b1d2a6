//! `POST /v1/sync`: decode (CBOR or JSON), run the [`SyncEngine`] on a blocking thread,
//! answer in the request's format. See `docs/protocol.md`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tsunagi_sync::wire::{ApiErrorCode, Format, SyncRequest};

use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::sync::Requester;

/// The handler.
pub async fn sync(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiFailure> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        ApiFailure::new(ApiErrorCode::UnsupportedMediaType, "send application/cbor (or application/json for debugging)")
    })?;
    let limit = state.settings.max_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiFailure::new(ApiErrorCode::MalformedBody, format!("the request body could not be read: {e}"))
                .in_format(format)
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiFailure::new(
                ApiErrorCode::PayloadTooLarge,
                format!("the body exceeds {limit} bytes; sync fewer cases or changes per request"),
            )
            .in_format(format));
        }
        body.extend_from_slice(&chunk);
    }
    let sync_request = SyncRequest::decode(format, &body)
        .map_err(|e| ApiFailure::new(e.api_error_code(), e.to_string()).in_format(format))?;
    let requester = Requester {
        staff: who.staff,
        device: who.device,
        role: who.role,
        municipality: who.municipality,
        area: who.area.clone(),
    };
    let engine = state.engine.clone();
    let span =
        tracing::info_span!("sync", staff = %who.staff, device = %who.device, cases = sync_request.documents.len());
    let response = web::block(move || span.in_scope(|| engine.sync(&requester, sync_request)))
        .await?
        .map_err(|e| ApiFailure::from(e).in_format(format))?;
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, format.content_type())).body(format.encode(&response)))
}
