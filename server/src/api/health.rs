//! Liveness and readiness.

use actix_web::{web, HttpResponse};

use crate::error::ApiFailure;
use crate::startup::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// `GET /readyz`: the database answers (503 otherwise).
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiFailure> {
    let db = state.db.clone();
    web::block(move || db.ping()).await??;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ready"))
}
