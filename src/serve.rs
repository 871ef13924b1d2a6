//! `tsunagi serve` and `tsunagi migrate`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tsunagi_server::startup::Application;

use crate::settings;

/// Runs the server until SIGINT/SIGTERM (in-flight requests finish).
pub fn serve(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    settings::init_tracing();
    let settings = settings::server_settings(config)?;
    let bind = settings.bind;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).context("cannot start the server")?;
        // The address and backend only: never the database URL (it may hold a password).
        let address = SocketAddr::new(bind.ip(), app.port());
        tracing::info!(%address, backend = app.state().db.backend(), version = env!("CARGO_PKG_VERSION"), "tsunagi is listening");
        app.run_until_stopped().await.context("the server stopped with an error")?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Applies pending migrations and says which.
pub fn migrate(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    settings::init_tracing();
    let db = settings::database(config)?;
    let applied = db.migrate().context("migrations failed")?;
    if applied.is_empty() {
        println!("the {} database is up to date", db.backend());
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(ExitCode::SUCCESS)
}
