//! HTTP routes. Each endpoint family has its own module; this one assembles them.

pub mod attention;
pub mod audit;
pub mod auth;
pub mod cases;
pub mod figures;
mod health;
pub mod history;
pub mod meetings;
pub mod merge;
pub mod quarantine;
pub mod support;
mod sync;
pub mod visits;

use actix_web::web;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz)).route("/readyz", web::get().to(health::readyz));
    cfg.configure(support::extractor_config);
    cfg.configure(auth::routes);
    cfg.configure(merge::routes);
    cfg.configure(cases::routes);
    cfg.configure(history::routes);
    cfg.configure(audit::routes);
    cfg.configure(attention::routes);
    cfg.configure(quarantine::routes);
    cfg.configure(visits::routes);
    cfg.configure(figures::routes);
    cfg.configure(meetings::routes);
    cfg.route(tsunagi_sync::wire::SYNC_PATH, web::post().to(sync::sync));
}
