//! Validation shared by phone and server.
mod violation;
pub use violation::{Violation, ViolationCode};
