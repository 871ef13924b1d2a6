//! # tsunagi-server
//!
//! The server side of tsunagi: the actix-web application, authentication of staff and
//! devices, storage over PostgreSQL and SQLite (diesel), the relational projections the
//! supervisors' API reads, and `POST /v1/sync`, which checks every uploaded change with
//! [`tsunagi_sync::validation`] before it becomes part of the central case record.
//!
//! This version holds no server code yet: the case document, its validation and the wire
//! types it will serve live in `tsunagi-sync`, which this crate re-exports so that server
//! code and tests name one version of them.

pub use tsunagi_sync;
