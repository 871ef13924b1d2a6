//! # tsunagi-server
//!
//! The server side of tsunagi: the actix-web application, authentication of staff and
//! devices, storage over PostgreSQL and SQLite (diesel), the relational projections the
//! supervisors' API reads, and `POST /v1/sync`, which checks every uploaded change with
//! [`tsunagi_sync::validation`] before it becomes part of the central case record.
//!
//! - [`startup::Application`]: build (connect, migrate, bind) and run.
//! - [`config::Settings`]: configuration from the environment and a file; no default secret.
//! - [`store`]: the database, both backends, one code base.
//! - [`error::ApiFailure`]: every error a client can see, with its stable code.

pub mod admin;
pub mod api;
pub mod attention;
pub mod auth;
pub mod config;
pub mod error;
pub mod figures;
pub mod startup;
pub mod store;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use tsunagi_sync;
