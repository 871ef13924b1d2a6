//! What every endpoint of the supervisors' API shares: who may call it, how a request's
//! query and body are read (errors become `400 invalid_request` with the field named), how
//! database work runs off the async threads, and how answers are written (JSON, or CSV with
//! a byte-order mark for Excel).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use tsunagi_sync::domain::Role;
use tsunagi_sync::wire::{ApiErrorCode, Format};

use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::visibility::{self, Viewer};
use crate::store::{Database, StoreError};

/// The largest JSON body a supervisor API endpoint reads.
pub const MAX_JSON_BODY_BYTES: usize = 256 * 1024;

/// Query-string and JSON-body extractors whose errors are `400 invalid_request` in our error
/// format, naming what was wrong. Register with `cfg.app_data(...)` once (done in
/// [`crate::api::routes`]).
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiFailure::new(ApiErrorCode::InvalidRequest, format!("query string: {e}")).into()),
    )
    .app_data(web::JsonConfig::default().limit(MAX_JSON_BODY_BYTES).error_handler(|e, _| {
        let code = match &e {
            actix_web::error::JsonPayloadError::ContentType => ApiErrorCode::UnsupportedMediaType,
            actix_web::error::JsonPayloadError::Overflow { .. }
            | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => ApiErrorCode::PayloadTooLarge,
            _ => ApiErrorCode::InvalidRequest,
        };
        ApiFailure::new(code, format!("request body: {e}")).into()
    }))
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiFailure::new(ApiErrorCode::NotFound, format!("no such record: {e}")).into()),
    );
}

/// `403 forbidden` unless the caller has one of `roles`.
pub fn require_role(who: &AuthenticatedDevice, roles: &[Role]) -> Result<(), ApiFailure> {
    if roles.contains(&who.role) {
        Ok(())
    } else {
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_key()).collect();
        Err(ApiFailure::new(ApiErrorCode::Forbidden, format!("this endpoint is for: {}", allowed.join(", "))))
    }
}

/// The caller as a [`Viewer`] for visibility checks (today in Japan).
pub fn viewer(who: &AuthenticatedDevice) -> Viewer<'_> {
    Viewer {
        staff: who.staff,
        role: who.role,
        municipality: &who.municipality,
        area: who.area.as_deref(),
        today: visibility::today_in_japan(),
    }
}

/// The caller as the sync engine sees them (for writes made on their behalf).
pub fn requester(who: &AuthenticatedDevice) -> crate::sync::Requester {
    crate::sync::Requester {
        staff: who.staff,
        device: who.device,
        role: who.role,
        municipality: who.municipality,
        area: who.area.clone(),
    }
}

/// A value of a closed list as answers show it: its key and the Japanese label users see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Labelled {
    /// The stored key.
    pub key: &'static str,
    /// 日本語の表示名.
    pub label: &'static str,
}

/// A [`Labelled`] from an enum's key and label (`Labelled::of(kind.as_key(), kind.label())`).
impl Labelled {
    /// Pairs a key with its label.
    pub fn of(key: &'static str, label: &'static str) -> Self {
        Self { key, label }
    }
}

/// Parses an optional query parameter with `parse`, naming it in the error.
pub fn param<T, E: std::fmt::Display>(
    field: &str,
    value: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiFailure> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => parse(raw).map(Some).map_err(|e| invalid(field, e)),
    }
}

/// Parses an optional `true`/`false` query parameter.
pub fn bool_param(field: &str, value: &Option<String>) -> Result<Option<bool>, ApiFailure> {
    param(field, value, |raw| match raw {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false"),
    })
}

/// Parses `limit` (default `default`, 1 to `max`).
pub fn limit_param(value: &Option<String>, default: i64, max: i64) -> Result<i64, ApiFailure> {
    let limit = param("limit", value, |raw| raw.parse::<i64>().map_err(|e| e.to_string()))?.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid("limit", format!("must be between 1 and {max}")))
    }
}

/// Display names of staff members, for answers that name who did what.
pub fn staff_names(
    conn: &mut crate::store::DbConnection,
    ids: impl IntoIterator<Item = String>,
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    use crate::store::schema::staff;
    use diesel::prelude::*;
    let ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String)> = staff::table
        .filter(staff::id.eq_any(ids.into_iter().collect::<Vec<_>>()))
        .select((staff::id, staff::display_name))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// `400 invalid_request` naming `field`.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::new(ApiErrorCode::InvalidRequest, format!("{field}: {why}"))
}

/// `404 not_found` for a record that does not exist or that the caller may not see: the two
/// answers are identical, so a caller learns nothing of cases outside their reach.
pub fn not_found(what: &str) -> ApiFailure {
    ApiFailure::new(ApiErrorCode::NotFound, format!("no such {what}"))
}

/// Runs `f` in one write transaction on a blocking thread (reads of case content write an
/// audit row, so they are transactions too).
pub async fn write<T, E, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    E: From<StoreError> + Into<ApiFailure> + Send + 'static,
    F: FnOnce(&mut crate::store::DbConnection) -> Result<T, E> + Send + 'static,
{
    let db: Database = state.db.clone();
    web::block(move || db.write(f)).await?.map_err(Into::into)
}

/// Runs `f` in one read-only transaction on a blocking thread.
pub async fn read<T, E, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    E: From<StoreError> + Into<ApiFailure> + Send + 'static,
    F: FnOnce(&mut crate::store::DbConnection) -> Result<T, E> + Send + 'static,
{
    let db: Database = state.db.clone();
    web::block(move || db.read(f)).await?.map_err(Into::into)
}

/// `200` with `value` as JSON.
pub fn json<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, Format::Json.content_type()))
        .body(Format::Json.encode(value))
}

/// `201 Created` with `value` as JSON.
pub fn created<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::CONTENT_TYPE, Format::Json.content_type()))
        .body(Format::Json.encode(value))
}

/// `200` with a CSV file: UTF-8 with a byte-order mark (so Excel in Japan reads it as UTF-8),
/// offered for download as `filename`.
pub fn csv(filename: &str, body: String) -> HttpResponse {
    let mut bytes = Vec::with_capacity(body.len() + 3);
    bytes.extend_from_slice(b"\xEF\xBB\xBF");
    bytes.extend_from_slice(body.as_bytes());
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")))
        .body(bytes)
}

/// Appends one CSV record to `out` (RFC 4180: fields with a comma, quote or line break are
/// quoted, quotes doubled; lines end with CRLF).
pub fn csv_record<I, S>(out: &mut String, fields: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut first = true;
    for field in fields {
        if !first {
            out.push(',');
        }
        first = false;
        let field = field.as_ref();
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_quote_what_needs_quoting() {
        let mut out = String::new();
        csv_record(&mut out, ["訪問", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(out, "訪問,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }
}
