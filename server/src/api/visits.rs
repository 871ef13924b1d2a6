//! The visit log (訪問・活動記録) of the supervisors' API (`docs/api.md` section 6):
//! activities across the cases the caller may see, newest first, filtered and paged by key,
//! answered from the `activities` projection (indexed by municipality and start time), never
//! by loading documents.
//!
//! - `GET /v1/visits`: JSON pages;
//! - `GET /v1/visits.csv`: the same rows as a CSV file (UTF-8 with BOM, Japanese headings),
//!   for a date range of at most [`MAX_EXPORT_DAYS`] days.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use actix_web::{web, HttpResponse};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tsunagi_sync::document::{format_date, parse_date};
use tsunagi_sync::domain::{ActivityKind, ContactChannel, ContactOutcome, Place, Role, VisitOutcome};
use tsunagi_sync::ids::{ActivityId, CaseId, FiscalYear, StaffId, JAPAN};

use super::support::{self, invalid, Labelled};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{activities, cases};
use crate::store::visibility::{self, Scope};
use crate::store::{audit, DbConnection, StoreError};

/// The longest date range one CSV export covers.
pub const MAX_EXPORT_DAYS: i64 = 400;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/visits", web::get().to(list)).route("/v1/visits.csv", web::get().to(export));
}

/// Roles that read visit logs.
const READERS: &[Role] = &[Role::Supervisor, Role::Counsellor];

/// The query of `GET /v1/visits` (every filter optional; all given must hold).
#[derive(Debug, Default, Deserialize)]
pub struct VisitQuery {
    counsellor: Option<String>,
    case: Option<String>,
    area: Option<String>,
    kind: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    voided: Option<String>,
    reviewed: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// The filters, parsed.
#[derive(Debug, Clone, Default)]
struct Filters {
    counsellor: Option<StaffId>,
    case: Option<CaseId>,
    area: Option<String>,
    kind: Option<ActivityKind>,
    outcome: Option<String>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    voided: Option<bool>,
    reviewed: Option<bool>,
    after: Option<(NaiveDateTime, String)>,
}

fn parse_outcome(raw: &str) -> Result<String, String> {
    if VisitOutcome::from_key(raw).is_ok() || ContactOutcome::from_key(raw).is_ok() {
        Ok(raw.to_owned())
    } else {
        Err("not a visit or contact outcome".into())
    }
}

/// The opaque `next` value: the start time in microseconds and the activity id of the last
/// row of a page.
fn encode_cursor(started_at: NaiveDateTime, id: &str) -> String {
    format!("{}.{}", started_at.and_utc().timestamp_micros(), id)
}

fn decode_cursor(raw: &str) -> Result<(NaiveDateTime, String), &'static str> {
    let bad = "not a value of `next` from a previous page";
    let (micros, id) = raw.split_once('.').ok_or(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad)?;
    let at = chrono::DateTime::from_timestamp_micros(micros).ok_or(bad)?.naive_utc();
    let id = ActivityId::parse(id).map_err(|_| bad)?;
    Ok((at, id.to_string()))
}

impl Filters {
    fn parse(q: &VisitQuery) -> Result<Self, ApiFailure> {
        let date = |field: &str, value: &Option<String>| {
            support::param(field, value, |raw| parse_date(raw).ok_or("expected a date YYYY-MM-DD"))
        };
        let filters = Filters {
            counsellor: support::param("counsellor", &q.counsellor, StaffId::parse)?,
            case: support::param("case", &q.case, CaseId::parse)?,
            area: q.area.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned),
            kind: support::param("kind", &q.kind, ActivityKind::from_key)?,
            outcome: support::param("outcome", &q.outcome, parse_outcome)?,
            from: date("from", &q.from)?,
            to: date("to", &q.to)?,
            voided: support::bool_param("voided", &q.voided)?,
            reviewed: support::bool_param("reviewed", &q.reviewed)?,
            after: support::param("after", &q.after, decode_cursor)?,
        };
        if let (Some(from), Some(to)) = (filters.from, filters.to) {
            if from > to {
                return Err(invalid("from", "is after `to`"));
            }
        }
        Ok(filters)
    }
}

/// One activity as the visit log shows it.
#[derive(Debug, Serialize)]
pub struct VisitRow {
    #[serde(skip)]
    at: NaiveDateTime,
    activity_id: String,
    case_id: String,
    case_number: Option<String>,
    kind: Labelled,
    started_at: String,
    date: String,
    recorded_by: StaffName,
    device_id: String,
    place: Labelled,
    outcome: Option<Labelled>,
    letter_left: bool,
    channel: Option<Labelled>,
    agency: Option<String>,
    follow_up_on: Option<String>,
    narrative: String,
    voided: bool,
    reviewed: bool,
    area: Option<String>,
}

/// A staff member and their display name.
#[derive(Debug, Serialize)]
pub struct StaffName {
    id: String,
    name: Option<String>,
}

/// A page of the visit log.
#[derive(Debug, Serialize)]
pub struct VisitPage {
    visits: Vec<VisitRow>,
    next: Option<String>,
}

type ActivityRow = (
    String,
    String,
    String,
    NaiveDateTime,
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    bool,
    bool,
    Option<String>,
    String,
);

fn outcome_label(kind: ActivityKind, key: &str) -> Option<Labelled> {
    match kind {
        ActivityKind::Visit => VisitOutcome::from_key(key).ok().map(|o| Labelled::of(o.as_key(), o.label())),
        ActivityKind::ContactAttempt => ContactOutcome::from_key(key).ok().map(|o| Labelled::of(o.as_key(), o.label())),
        _ => None,
    }
}

/// A scope of more visible cases than this is tested on the rows read rather than sent to
/// the database as a list (see [`load`]).
const WIDE_SCOPE: usize = 2_000;

/// The municipality's activities that match `filters`, after the cursor `after` (a start
/// time and activity id, newest first), whoever may see them: the caller adds the scope.
fn filtered(
    municipality: &str,
    filters: &Filters,
    after: Option<&(NaiveDateTime, String)>,
) -> activities::BoxedQuery<'static, visibility::Db> {
    let mut query = activities::table.into_boxed().filter(activities::municipality.eq(municipality.to_owned()));
    if let Some(staff) = filters.counsellor {
        query = query.filter(activities::recorded_by.eq(staff.to_string()));
    }
    if let Some(case) = filters.case {
        query = query.filter(activities::case_id.eq(case.to_string()));
    }
    if let Some(area) = &filters.area {
        query = query.filter(activities::area.eq(area.clone()));
    }
    if let Some(kind) = filters.kind {
        query = query.filter(activities::kind.eq(kind.as_key()));
    }
    if let Some(outcome) = &filters.outcome {
        query = query.filter(activities::outcome.eq(outcome.clone()));
    }
    // The dates are Japan's; the same bounds on the start time (UTC) let the index that
    // orders the page by start time answer a dated page by a range scan.
    if let Some(from) = filters.from {
        query = query.filter(activities::local_date.ge(format_date(from)));
        if let Some(start) = japan_midnight(from) {
            query = query.filter(activities::started_at.ge(start));
        }
    }
    if let Some(to) = filters.to {
        query = query.filter(activities::local_date.le(format_date(to)));
        if let Some(end) = to.succ_opt().and_then(japan_midnight) {
            query = query.filter(activities::started_at.lt(end));
        }
    }
    if let Some(voided) = filters.voided {
        query = query.filter(activities::voided.eq(voided));
    }
    if let Some(reviewed) = filters.reviewed {
        query = query.filter(activities::reviewed.eq(reviewed));
    }
    if let Some((at, id)) = after {
        // `started_at <= at` on its own, redundant as logic, is what lets the ordered index
        // start the page at the cursor: the disjunction is only a filter, and without the bound
        // a later page read every row of the earlier ones from the table first.
        query = query.filter(activities::started_at.le(*at)).filter(
            activities::started_at
                .lt(*at)
                .or(activities::started_at.eq(*at).and(activities::activity_id.lt(id.clone()))),
        );
    }
    query
}

/// Loads up to `limit` rows matching `filters` that `who` may see, newest first, and writes
/// one audit row per case shown. Returns the rows and whether more follow.
/// The ids of the first `wanted` activities matching `filters` (after its cursor) of the
/// `visible` cases, newest first: read from the municipality's rows in page order, a few
/// pages' worth at a time (start time, id and case only), keeping those of visible cases.
fn visible_page(
    conn: &mut DbConnection,
    municipality: &str,
    filters: &Filters,
    visible: &HashSet<String>,
    wanted: i64,
) -> Result<Vec<String>, StoreError> {
    let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
    // Most of an area supervisor's municipality is visible to them.
    let per_read = i64::try_from(wanted).unwrap_or(i64::MAX).max(16).saturating_mul(4);
    let mut page = Vec::new();
    let mut after = filters.after.clone();
    loop {
        let candidates: Vec<(NaiveDateTime, String, String)> = filtered(municipality, filters, after.as_ref())
            .select((activities::started_at, activities::activity_id, activities::case_id))
            .order((activities::started_at.desc(), activities::activity_id.desc()))
            .limit(per_read)
            .load(conn)?;
        let exhausted = (candidates.len() as i64) < per_read;
        after = candidates.last().map(|(at, id, _)| (*at, id.clone()));
        page.extend(candidates.into_iter().filter(|(_, _, case)| visible.contains(case)).map(|(_, id, _)| id));
        if page.len() >= wanted || exhausted {
            page.truncate(wanted);
            return Ok(page);
        }
    }
}

/// A scope of more than `wide_scope` cases ([`WIDE_SCOPE`]) is tested on the rows read
/// ([`visible_page`]).
fn load(
    conn: &mut DbConnection,
    who: &AuthenticatedDevice,
    filters: &Filters,
    limit: i64,
    action: &str,
    wide_scope: usize,
) -> Result<(Vec<VisitRow>, bool), StoreError> {
    // Every visible case is of the viewer's municipality: that condition leads, so the index
    // ordered by municipality and start time gives the page, and the visible cases are tested
    // on its entries.
    let viewer = support::viewer(who);
    let municipality = viewer.municipality.as_str().to_owned();
    let scope = visibility::scope(conn, viewer)?;
    if let DbConnection::Pg(pg) = conn {
        // diesel keeps the statement prepared, and after five executions PostgreSQL may plan
        // it once for any parameters. How selective `case_id = ANY(…)` and the dates are
        // depends entirely on the values (a counsellor's ten cases or an area's thousands, a
        // day or a year); such a generic plan took pages from milliseconds to 400 ms. So this
        // transaction plans the page for its own values.
        diesel::connection::SimpleConnection::batch_execute(pg, "SET LOCAL plan_cache_mode = force_custom_plan")?;
    }
    let query = filtered(&municipality, filters, filters.after.as_ref());
    let query = match scope {
        // Thousands of ids (a supervisor of one area) cost more to send and to plan with than
        // the page itself: the page's rows are found by walking the municipality's instead.
        Scope::Cases(ids) if ids.len() > wide_scope => {
            let page = visible_page(conn, &municipality, filters, &ids.into_iter().collect(), limit + 1)?;
            query.filter(activities::activity_id.eq_any(page))
        }
        Scope::Cases(ids) => query.filter(activities::case_id.eq_any(ids)),
        Scope::Municipality(_) => query,
    };
    let mut rows: Vec<ActivityRow> = query
        .select((
            activities::activity_id,
            activities::case_id,
            activities::kind,
            activities::started_at,
            activities::local_date,
            activities::recorded_by,
            activities::device_id,
            activities::outcome,
            activities::letter_left,
            activities::channel,
            activities::agency,
            activities::follow_up_on,
            activities::narrative,
            activities::voided,
            activities::reviewed,
            activities::area,
            activities::place,
        ))
        .order((activities::started_at.desc(), activities::activity_id.desc()))
        .limit(limit + 1)
        .load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);

    let case_ids: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
    let numbers: BTreeMap<String, Option<String>> = cases::table
        .filter(cases::case_id.eq_any(case_ids.iter().cloned().collect::<Vec<_>>()))
        .select((cases::case_id, cases::case_number))
        .load::<(String, Option<String>)>(conn)?
        .into_iter()
        .collect();
    let names = support::staff_names(conn, rows.iter().map(|r| r.5.clone()))?;
    let at = Utc::now().naive_utc();
    for case in &case_ids {
        if let Ok(case) = CaseId::parse(case) {
            audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(&case), action, "activities")?;
        }
    }
    let visits = rows
        .into_iter()
        .filter_map(|r| {
            let (id, case_id, kind, started_at, date, recorded_by, device_id, outcome, letter_left, channel, agency) =
                (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10);
            let kind = ActivityKind::from_key(&kind).ok()?;
            let place =
                Place::from_key(&r.16).map(|p| Labelled::of(p.as_key(), p.label())).unwrap_or(Labelled::of("", ""));
            Some(VisitRow {
                at: started_at,
                case_number: numbers.get(&case_id).cloned().flatten(),
                activity_id: id,
                case_id,
                kind: Labelled::of(kind.as_key(), kind.label()),
                started_at: tsunagi_sync::document::format_instant(started_at.and_utc().with_timezone(&JAPAN)),
                date,
                recorded_by: StaffName { name: names.get(&recorded_by).cloned(), id: recorded_by },
                device_id,
                place,
                outcome: outcome.as_deref().and_then(|o| outcome_label(kind, o)),
                letter_left,
                channel: channel
                    .as_deref()
                    .and_then(|c| ContactChannel::from_key(c).ok())
                    .map(|c| Labelled::of(c.as_key(), c.label())),
                agency,
                follow_up_on: r.11,
                narrative: r.12,
                voided: r.13,
                reviewed: r.14,
                area: r.15,
            })
        })
        .collect();
    Ok((visits, more))
}

/// `GET /v1/visits`.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    query: web::Query<VisitQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, READERS)?;
    let filters = Filters::parse(&query)?;
    let limit = support::limit_param(&query.limit, 50, 500)?;
    let page = support::write(&state, move |conn| -> Result<VisitPage, StoreError> {
        let (visits, more) = load(conn, &who, &filters, limit, "visits.read", WIDE_SCOPE)?;
        let next = match (more, visits.last()) {
            (true, Some(last)) => Some(encode_cursor(last.at, &last.activity_id)),
            _ => None,
        };
        Ok(VisitPage { visits, next })
    })
    .await?;
    Ok(support::json(&page))
}

/// The most rows one CSV export holds.
pub const MAX_EXPORT_ROWS: i64 = 100_000;

/// `GET /v1/visits.csv`: `from` and `to` are required (at most [`MAX_EXPORT_DAYS`] days).
pub async fn export(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    query: web::Query<VisitQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, READERS)?;
    let mut filters = Filters::parse(&query)?;
    filters.after = None;
    let (Some(from), Some(to)) = (filters.from, filters.to) else {
        return Err(invalid("from", "an export needs both `from` and `to` dates"));
    };
    if (to - from).num_days() >= MAX_EXPORT_DAYS {
        return Err(invalid("to", format!("an export covers at most {MAX_EXPORT_DAYS} days")));
    }
    let (rows, more) =
        support::write(&state, move |conn| load(conn, &who, &filters, MAX_EXPORT_ROWS, "visits.export", WIDE_SCOPE))
            .await?;
    if more {
        return Err(invalid("from", format!("more than {MAX_EXPORT_ROWS} rows; export a shorter range")));
    }
    let (first, last) = (FiscalYear::containing(from), FiscalYear::containing(to));
    let years = if first == last {
        first.japanese_label()
    } else {
        format!("{}〜{}", first.japanese_label(), last.japanese_label())
    };
    let mut out = String::new();
    support::csv_record(&mut out, [format!("{years} 活動記録 ({}〜{})", format_date(from), format_date(to))]);
    support::csv_record(
        &mut out,
        [
            "受付番号",
            "日付",
            "開始時刻",
            "種別",
            "結果",
            "置き手紙",
            "連絡手段",
            "関係機関",
            "場所",
            "記録者",
            "次回予定",
            "確認済み",
            "無効",
            "経過記録",
        ],
    );
    let yes = |b: bool| if b { "○" } else { "" };
    for row in rows {
        let time = row.started_at.get(11..16).unwrap_or("").to_owned();
        support::csv_record(
            &mut out,
            [
                row.case_number.unwrap_or_default(),
                row.date,
                time,
                row.kind.label.to_owned(),
                row.outcome.map(|o| o.label.to_owned()).unwrap_or_default(),
                yes(row.letter_left).to_owned(),
                row.channel.map(|c| c.label.to_owned()).unwrap_or_default(),
                row.agency.unwrap_or_default(),
                row.place.label.to_owned(),
                row.recorded_by.name.unwrap_or(row.recorded_by.id),
                row.follow_up_on.unwrap_or_default(),
                yes(row.reviewed).to_owned(),
                yes(row.voided).to_owned(),
                row.narrative,
            ],
        );
    }
    Ok(support::csv(&format!("visits-{}-{}.csv", format_date(from), format_date(to)), out))
}

/// Midnight of `date` in Japan, as the UTC time the projections store.
fn japan_midnight(date: NaiveDate) -> Option<NaiveDateTime> {
    JAPAN.from_local_datetime(&date.and_time(NaiveTime::MIN)).earliest().map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = chrono::DateTime::from_timestamp_micros(1_762_219_800_123_456).unwrap().naive_utc();
        let id = ActivityId::new_random().to_string();
        assert_eq!(decode_cursor(&encode_cursor(at, &id)).unwrap(), (at, id));
        for bad in ["", "x", "12.not-an-id", "abc.3f1c2b1e-0000-4000-8000-000000000000"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    /// A supervisor of one area sees the cases of the area, those with consent and those
    /// assigned to them. Reading the page from the municipality's rows and testing them here
    /// must give exactly the pages that sending the visible cases to the database gives, page
    /// after page, with and without filters.
    fn both_ways_of_applying_a_wide_scope_give_the_same_pages(backend: crate::testing::Backend) {
        use crate::store::Database;
        use chrono::TimeZone;
        use tsunagi_sync::document::{read_case, ActivityDetails};
        use tsunagi_sync::domain::{ConsentState, Place, Role};
        use tsunagi_sync::ids::{DeviceId, MunicipalityCode};
        use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase};
        use tsunagi_sync::validation::Actor;

        let db = crate::testing::TestDatabase::new(backend);
        let database = Database::connect(&db.url, 2).unwrap();
        database.migrate().unwrap();
        let municipality = MunicipalityCode::parse("122203").unwrap();
        let chief = AuthenticatedDevice {
            staff: StaffId::new_random(),
            device: DeviceId::new_random(),
            role: Role::Supervisor,
            municipality,
            area: Some("north".into()),
        };
        let counsellor = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
        let jst = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
        let opened = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        database
            .write(|conn| -> Result<(), StoreError> {
                diesel::connection::SimpleConnection::batch_execute(
                    conn,
                    &format!(
                        "INSERT INTO municipalities (code, name, created_at) VALUES ('122203', '流山市', '2026-04-01 00:00:00');
                         INSERT INTO organisations (id, name, kind, created_at) VALUES ('org', '流山市', 'direct', '2026-04-01 00:00:00');
                         INSERT INTO staff (id, login, display_name, role, organisation_id, municipality, password_hash, active, failed_logins, created_at)
                         VALUES ('{s}', 'chief', '主任', 'supervisor', 'org', '122203', 'x', TRUE, 0, '2026-04-01 00:00:00');",
                        s = chief.staff
                    ),
                )?;
                for i in 0..24u32 {
                    let mut new = NewCase::new(municipality, opened);
                    new.area = Some(["north", "south", "east"][i as usize % 3].to_owned());
                    let mut case = CaseReplica::open(new, counsellor).unwrap();
                    if i % 4 == 1 {
                        case.record_consent(ConsentState::Obtained, opened, None).unwrap();
                    }
                    // The cases this supervisor may not see have the newest activities, so that
                    // pages are found only after reading past many rows that are not shown.
                    let hidden = i % 3 != 0 && i % 4 != 1 && i != 2;
                    for j in 0..8u32 {
                        // Some activities share a start time, so the cursor's tie-break counts.
                        let day = if hidden { 15 } else { 1 } + (i + j) % 10;
                        let at = jst.with_ymd_and_hms(2026, 5, day, 9 + j % 3, 0, 0).unwrap();
                        let details = ActivityDetails::Information { information: "窓口案内".into(), interest: "高い".into() };
                        case.log_activity(NewActivity::new(at, Place::Office, details)).unwrap();
                    }
                    let view = read_case(case.doc_mut().document()).view.unwrap();
                    crate::store::documents::insert(conn, &view.case_id, &municipality, Utc::now().naive_utc())?;
                    crate::store::projections::project(conn, &view, Utc::now().naive_utc())?;
                    if i == 2 {
                        diesel::insert_into(crate::store::schema::assignments::table)
                            .values((
                                crate::store::schema::assignments::case_id.eq(view.case_id.to_string()),
                                crate::store::schema::assignments::staff_id.eq(chief.staff.to_string()),
                                crate::store::schema::assignments::is_primary.eq(false),
                            ))
                            .execute(conn)?;
                    }
                }
                Ok(())
            })
            .unwrap();
        let pages = |filters: Filters, wide_scope: usize| {
            let mut filters = filters;
            let mut all = Vec::new();
            loop {
                let (rows, more) =
                    database.write(|conn| load(conn, &chief, &filters, 7, "visits.read", wide_scope)).unwrap();
                let Some(last) = rows.last() else { break };
                filters.after = Some((last.at, last.activity_id.clone()));
                all.push(rows.iter().map(|r| r.activity_id.clone()).collect::<Vec<_>>());
                if !more {
                    break;
                }
            }
            all
        };
        let visible = database.read(|conn| visibility::visible_cases(conn, support::viewer(&chief))).unwrap();
        // north (8), consent elsewhere (4 of the other 16), the one assigned (south, no consent).
        assert_eq!(visible.len(), 8 + 4 + 1, "{visible:?}");
        for filters in [
            Filters::default(),
            Filters {
                from: NaiveDate::from_ymd_opt(2026, 5, 3),
                to: NaiveDate::from_ymd_opt(2026, 5, 20),
                ..Filters::default()
            },
            Filters { area: Some("south".into()), ..Filters::default() },
        ] {
            let listed = pages(filters.clone(), usize::MAX);
            let walked = pages(filters.clone(), 0);
            assert!(!listed.is_empty());
            assert_eq!(walked, listed, "{filters:?}");
        }
        let rows: usize = pages(Filters::default(), 0).iter().map(Vec::len).sum();
        assert_eq!(rows, 13 * 8, "every visible case's activities, and no other");
    }

    #[test]
    fn both_ways_of_applying_a_wide_scope_give_the_same_pages_on_sqlite() {
        both_ways_of_applying_a_wide_scope_give_the_same_pages(crate::testing::Backend::Sqlite);
    }

    #[test]
    fn both_ways_of_applying_a_wide_scope_give_the_same_pages_on_postgres() {
        both_ways_of_applying_a_wide_scope_give_the_same_pages(crate::testing::Backend::Postgres);
    }

    #[test]
    fn a_japanese_day_starts_at_15_00_utc_the_day_before() {
        let day = NaiveDate::from_ymd_opt(2024, 4, 1).unwrap();
        let expected = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap().and_hms_opt(15, 0, 0).unwrap();
        assert_eq!(japan_midnight(day), Some(expected));
    }
}
