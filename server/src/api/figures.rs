//! Monthly figures (月別集計) for supervisors:
//!
//! - `GET /v1/figures/{fiscal_year}`: [`MonthlyFigures`] as JSON;
//! - `GET /v1/figures/{fiscal_year}.csv`: the same table as CSV (UTF-8 with a byte-order
//!   mark): a heading line (`令和6年度 (2024年4月〜2025年3月) 月別集計`), a header row
//!   (`区分,項目,2024年4月,…,2025年3月,合計`), then one line per row.
//!
//! `fiscal_year` is the Western year the fiscal year starts in (2024 = 令和6年度, April 2024
//! to March 2025). Supervisors only: the figures are counts without case content, over the
//! caller's **whole municipality** (every area, with or without consent), so they are not
//! filtered by the visibility rule; every request writes an audit row `figures.read`. The
//! definitions are in [`crate::figures`] and `docs/api.md`.

use actix_web::{web, HttpResponse};
use tsunagi_sync::domain::catalogue::Catalogue;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::FiscalYear;

use super::support::{self, csv_record, invalid, require_role};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::figures::{self, FiguresError, MonthlyFigures};
use crate::startup::AppState;
use crate::store::audit;

/// The path of the figures, with `{fiscal_year}` (optionally followed by `.csv`).
pub const FIGURES_PATH: &str = "/v1/figures/{fiscal_year}";

/// The audit action of a figures request.
pub const AUDIT_ACTION: &str = "figures.read";

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(FIGURES_PATH, web::get().to(figures));
}

impl From<FiguresError> for ApiFailure {
    fn from(e: FiguresError) -> Self {
        match e {
            FiguresError::Store(e) => e.into(),
            other => ApiFailure::internal(other),
        }
    }
}

/// How the figures are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Csv,
}

/// Reads `2024` or `2024.csv`: four ASCII digits naming a fiscal year, and the format.
fn parse_path(segment: &str) -> Result<(FiscalYear, Answer), ApiFailure> {
    let (year, answer) = match segment.strip_suffix(".csv") {
        Some(year) => (year, Answer::Csv),
        None => (segment, Answer::Json),
    };
    let why = "the Western year the fiscal year starts in, e.g. 2024 (令和6年度), optionally followed by .csv";
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("fiscal_year", why));
    }
    let year: i32 = year.parse().map_err(|_| invalid("fiscal_year", why))?;
    let fiscal_year = FiscalYear::new(year).map_err(|e| invalid("fiscal_year", e))?;
    Ok((fiscal_year, answer))
}

/// `GET /v1/figures/{fiscal_year}` and `GET /v1/figures/{fiscal_year}.csv`.
pub async fn figures(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    require_role(&who, &[Role::Supervisor])?;
    let (fiscal_year, answer) = parse_path(&path.into_inner())?;
    let municipality = who.municipality;
    let figures: MonthlyFigures = support::read(&state, move |conn| {
        figures::monthly_in_snapshot(conn, &municipality, fiscal_year, &Catalogue::default())
    })
    .await?;
    let format = match answer {
        Answer::Json => "json",
        Answer::Csv => "csv",
    };
    let detail = format!("fiscal_year={} format={format}", fiscal_year.year());
    let (staff, device) = (who.staff, who.device);
    support::write(&state, move |conn| {
        audit::record(conn, chrono::Utc::now().naive_utc(), Some(&staff), Some(&device), None, AUDIT_ACTION, &detail)
    })
    .await?;
    Ok(match answer {
        Answer::Json => support::json(&figures),
        Answer::Csv => support::csv(&format!("figures-{}.csv", fiscal_year.year()), to_csv(&figures)),
    })
}

/// The CSV text (without the byte-order mark, which [`support::csv`] adds).
pub fn to_csv(figures: &MonthlyFigures) -> String {
    let mut out = String::new();
    csv_record(&mut out, [figures.heading()]);
    let mut header = vec!["区分".to_owned(), "項目".to_owned()];
    header.extend(figures.months.iter().map(|m| m.label.clone()));
    header.push("合計".to_owned());
    csv_record(&mut out, header);
    for (section, row) in figures.count_rows() {
        let mut fields = vec![section.to_owned(), row.label.clone()];
        fields.extend(row.months.iter().map(i64::to_string));
        fields.push(row.total.to_string());
        csv_record(&mut out, fields);
    }
    let share = &figures.outreach.met_share;
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    let mut fields = vec![figures::sections::OUTREACH.to_owned(), share.label.clone()];
    fields.extend(share.months.iter().map(|v| cell(*v)));
    fields.push(cell(share.total));
    csv_record(&mut out, fields);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_a_fiscal_year_and_a_format() {
        let (fy, answer) = parse_path("2024").unwrap();
        assert_eq!((fy.year(), answer), (2024, Answer::Json));
        let (fy, answer) = parse_path("2025.csv").unwrap();
        assert_eq!((fy.year(), answer), (2025, Answer::Csv));
        for bad in
            ["", "24", "２０２４", "2024.json", "2024.CSV", "+2024", "1999", "20240", "r6", ".csv", "2024.csv.csv"]
        {
            let err = parse_path(bad).unwrap_err();
            assert_eq!(err.code, tsunagi_sync::wire::ApiErrorCode::InvalidRequest, "{bad}");
        }
    }
}
