//! Wiring: [`Application::build`] connects the database, applies migrations, binds the
//! listener (port 0 in tests) and assembles the actix-web app; `main` only calls it.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::config::Settings;
use crate::error::ApiFailure;
use crate::store::{Database, StoreError};
use crate::sync::SyncEngine;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// The configuration.
    pub settings: Arc<Settings>,
    /// The sync engine, writing with this instance's own actor id.
    pub engine: SyncEngine,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage could not be prepared.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A built, bound server, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Connects the database, applies migrations and binds `settings.bind`.
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        let db = Database::connect(&settings.database_url, settings.max_connections)?;
        let applied = db.migrate()?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), backend = db.backend(), "applied migrations");
        }
        let listener =
            TcpListener::bind(settings.bind).map_err(|source| StartError::Bind { addr: settings.bind, source })?;
        let port = listener.local_addr().map_err(|source| StartError::Bind { addr: settings.bind, source })?.port();
        let state = AppState {
            engine: SyncEngine::new(db.clone())
                .with_assigned_byte_budget(settings.assigned_byte_budget)
                .with_document_cache(settings.document_cache_bytes),
            db,
            settings: Arc::new(settings),
        };
        let server = run(listener, state.clone())?;
        Ok(Self { port, server, state })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests use its database handle).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the process is asked to stop (SIGINT/SIGTERM: in-flight requests finish).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn run(listener: TcpListener, state: AppState) -> Result<Server, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: state.settings.bind, source })?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(request_span))
            .app_data(web::Data::new(state.clone()))
            .configure(crate::api::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiFailure::new(tsunagi_sync::wire::ApiErrorCode::NotFound, "no such endpoint"))
            }))
    })
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// Wraps each request in a tracing span with a fresh request id (also sent back as
/// `X-Request-Id`), and logs its method, path, status and latency; never bodies or headers.
async fn request_span(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let id = uuid::Uuid::new_v4();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.path());
    let started = std::time::Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, elapsed_ms = started.elapsed().as_millis() as u64, "answered"));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
