//! # tsunagi-sync
//!
//! Everything a phone and the server must agree on, in one crate that builds for a phone (no
//! actix, no diesel, no async runtime in its core):
//!
//! - [`ids`]: identifiers that parse — [`ids::CaseId`], [`ids::StaffId`], [`ids::DeviceId`],
//!   [`ids::CaseNumber`], [`ids::FiscalYear`], [`ids::MunicipalityCode`].
//! - [`domain`]: every closed list of the domain as an enum with its Japanese label, and the
//!   referral catalogue as data.
//! - [`document`]: the case document (one Automerge document per case), its schema, and
//!   [`document::CaseView`], a typed read that reports conflicts instead of hiding them.
//! - [`ops`]: the field operations a phone performs — open a case, log a visit, amend a
//!   narrative, void an activity — each producing one valid Automerge change.
//! - [`validation`]: given a document before and after some changes and who is acting, accept
//!   or refuse with a list of [`validation::Violation`]s. Phone and server run the same code.
//! - [`actor`]: actor ids (device id + suffix) and the authorship check.
//! - [`wire`]: the request and response of `POST /v1/sync`, in CBOR or JSON.
//! - [`store`]: the phone's local replica store, crash-safe.
//! - [`session`]: the client's side of the sync protocol — what to send, and what to do with
//!   the answer — over the replica store, with no network and no async.
//! - `client` (cargo feature `client`): the HTTP sync client (reqwest) with sign-in, retries
//!   and back-off.
//!
//! ## Example: two phones, offline, on one case
//!
//! ```
//! use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
//! use tsunagi_sync::ops::{CaseReplica, NewCase, NewActivity};
//! use tsunagi_sync::document::ActivityDetails;
//! use tsunagi_sync::domain::{Place, VisitOutcome};
//! use tsunagi_sync::validation::Actor;
//! use chrono::{NaiveDate, TimeZone, FixedOffset};
//!
//! let jst = FixedOffset::east_opt(9 * 3600).unwrap();
//! let sato = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
//! let ito = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
//! let nagareyama = MunicipalityCode::parse("122203").unwrap();
//! let opened_on = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
//!
//! let mut a = CaseReplica::open(NewCase::new(nagareyama, opened_on), sato).unwrap();
//! let mut b = CaseReplica::load(&a.save(), ito).unwrap();
//! let visit = |hour| NewActivity::new(
//!     jst.with_ymd_and_hms(2026, 11, 4, hour, 0, 0).unwrap(),
//!     Place::Home,
//!     ActivityDetails::Visit { outcome: VisitOutcome::NotHome, met_person_ids: Default::default(), letter_left: true },
//! );
//! a.log_activity(visit(10).with_narrative("不在。玄関に手紙を残した。")).unwrap();
//! b.log_activity(visit(15)).unwrap();
//! a.merge(&mut b).unwrap();
//! b.merge(&mut a).unwrap();
//! assert_eq!(a.view().unwrap().activities.len(), 2);
//! assert_eq!(a.heads(), b.heads());
//! ```
#![warn(missing_docs)]

pub mod actor;
#[cfg(feature = "client")]
pub mod client;
pub mod document;
pub mod domain;
pub mod history;
pub mod ids;
pub mod ops;
pub mod session;
pub mod store;
pub mod validation;
pub mod wire;
