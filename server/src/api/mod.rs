//! HTTP routes. Each endpoint family has its own module; this one assembles them.

pub mod auth;
mod health;
mod sync;

use actix_web::web;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz)).route("/readyz", web::get().to(health::readyz));
    cfg.configure(auth::routes);
    cfg.route(tsunagi_sync::wire::SYNC_PATH, web::post().to(sync::sync));
}
