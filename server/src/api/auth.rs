//! The authentication endpoints (JSON only; errors are an `ApiError` body in JSON):
//!
//! - `POST /v1/auth/login`: `LoginRequest` → `TokenResponse`.
//! - `POST /v1/auth/refresh`: `RefreshRequest` → `TokenResponse` (the old refresh token is
//!   used up; keep the new one).
//! - `POST /v1/auth/logout`: `LogoutRequest` → `204 No Content`.
//! - `GET /v1/me`: who the access token stands for, checked like every authenticated
//!   request; a cheap way for an app to test its token.
//!
//! Token responses carry `Cache-Control: no-store`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::wire::{
    decode_json, ApiErrorCode, Format, LoginRequest, LogoutRequest, RefreshRequest, TokenResponse, LOGIN_PATH,
    LOGOUT_PATH, REFRESH_PATH,
};

use crate::auth::service::FAILURE_DELAY;
use crate::auth::{AuthError, AuthenticatedDevice, Authenticator};
use crate::error::ApiFailure;
use crate::startup::AppState;

/// The path of [`me`].
pub const ME_PATH: &str = "/v1/me";

/// The largest body an authentication endpoint reads.
const MAX_AUTH_BODY_BYTES: usize = 8 * 1024;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(LOGIN_PATH, web::post().to(login))
        .route(REFRESH_PATH, web::post().to(refresh))
        .route(LOGOUT_PATH, web::post().to(logout))
        .route(ME_PATH, web::get().to(me));
}

/// Reads a small JSON body.
async fn read_json<T: DeserializeOwned>(request: &HttpRequest, mut payload: web::Payload) -> Result<T, ApiFailure> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if Format::from_content_type(content_type) != Some(Format::Json) {
        return Err(ApiFailure::new(ApiErrorCode::UnsupportedMediaType, "send application/json"));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiFailure::new(ApiErrorCode::MalformedBody, format!("the request body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > MAX_AUTH_BODY_BYTES {
            return Err(ApiFailure::new(
                ApiErrorCode::PayloadTooLarge,
                format!("an authentication request has at most {MAX_AUTH_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    decode_json(&body).map_err(|e| ApiFailure::new(ApiErrorCode::MalformedBody, e.to_string()))
}

fn tokens_response(tokens: &TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, Format::Json.content_type()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(Format::Json.encode(tokens))
}

/// `POST /v1/auth/login`.
pub async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiFailure> {
    let body: LoginRequest = read_json(&request, payload).await?;
    let authenticator = Authenticator::new(state.db.clone(), &state.settings);
    let now = chrono::Utc::now();
    match web::block(move || authenticator.login(&body, now)).await? {
        Ok(tokens) => Ok(tokens_response(&tokens)),
        Err(e @ AuthError::BadCredentials) => {
            actix_web::rt::time::sleep(FAILURE_DELAY).await;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/auth/refresh`.
pub async fn refresh(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiFailure> {
    let body: RefreshRequest = read_json(&request, payload).await?;
    let authenticator = Authenticator::new(state.db.clone(), &state.settings);
    let now = chrono::Utc::now();
    let tokens = web::block(move || authenticator.refresh(&body.refresh_token, now)).await??;
    Ok(tokens_response(&tokens))
}

/// `POST /v1/auth/logout`.
pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiFailure> {
    let body: LogoutRequest = read_json(&request, payload).await?;
    let authenticator = Authenticator::new(state.db.clone(), &state.settings);
    let now = chrono::Utc::now();
    web::block(move || authenticator.logout(&body.refresh_token, now)).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// The body of `GET /v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Me {
    /// The staff member.
    pub staff_id: StaffId,
    /// The device.
    pub device_id: DeviceId,
    /// The staff member's role.
    pub role: Role,
    /// The staff member's municipality.
    pub municipality: MunicipalityCode,
    /// The staff member's area code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
}

/// `GET /v1/me`.
pub async fn me(who: AuthenticatedDevice) -> HttpResponse {
    let me = Me {
        staff_id: who.staff,
        device_id: who.device,
        role: who.role,
        municipality: who.municipality,
        area: who.area,
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, Format::Json.content_type()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(Format::Json.encode(&me))
}
