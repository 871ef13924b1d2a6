//! HTTP routes. Each endpoint family has its own module; this one assembles them.

mod health;

use actix_web::web;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz)).route("/readyz", web::get().to(health::readyz));
}
