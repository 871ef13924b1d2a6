//! Relational projections of the three forms of a case document, for queries that must not
//! load documents: `plans` (様式第1号), `evaluations` (様式第2号), `decisions` (様式第2-2号)
//! and `referrals`, the referral destinations (つなぎ先) of meeting decisions that referred the
//! person on, which the monthly referral table counts.
//!
//! Like the other projections they are rebuilt for a case inside the transaction that stores
//! its changes ([`super::projections::project`]), so they are never behind the document. The
//! free texts of the forms stay in the document only.

use diesel::prelude::*;

use super::schema::{decisions, evaluations, plans, referrals};
use super::{DbConnection, StoreError};
use tsunagi_sync::document::{format_date, CaseView};

/// The `destination` of a referral to the その他 destination (`referral_other`).
pub const OTHER_DESTINATION: &str = "other";

#[derive(Insertable)]
#[diesel(table_name = plans)]
struct PlanRow {
    plan_id: String,
    case_id: String,
    round: i32,
    author: String,
    drafted_on: String,
    period_until: Option<String>,
    next_monitoring_on: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = evaluations)]
struct EvaluationRow {
    evaluation_id: String,
    case_id: String,
    round: i32,
    evaluator: String,
    evaluated_on: String,
    wish: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = decisions)]
struct DecisionRow {
    decision_id: String,
    case_id: String,
    meeting_on: String,
    verdict: String,
    referred_on: bool,
    decided_on: String,
}

#[derive(Insertable)]
#[diesel(table_name = referrals)]
struct ReferralRow {
    decision_id: String,
    case_id: String,
    municipality: String,
    destination: String,
    decided_on: String,
}

fn round(round: u32) -> i32 {
    i32::try_from(round).unwrap_or(i32::MAX)
}

/// Deletes the form rows (`plans`, `evaluations`, `decisions`, `referrals`) of one case.
pub fn delete_forms(conn: &mut DbConnection, case_id: &str) -> Result<(), StoreError> {
    diesel::delete(referrals::table.filter(referrals::case_id.eq(case_id))).execute(conn)?;
    diesel::delete(decisions::table.filter(decisions::case_id.eq(case_id))).execute(conn)?;
    diesel::delete(evaluations::table.filter(evaluations::case_id.eq(case_id))).execute(conn)?;
    diesel::delete(plans::table.filter(plans::case_id.eq(case_id))).execute(conn)?;
    Ok(())
}

/// Rewrites the form rows of one case from its view: deletes the case's rows of `plans`,
/// `evaluations`, `decisions` and `referrals`, and inserts them again.
///
/// A decision with `referred_on` gives one `referrals` row per catalogue key of its
/// `referral_destinations`, plus one with the destination [`OTHER_DESTINATION`] when it has a
/// `referral_other` text; each row carries the case's municipality and the decision's date.
pub fn project_forms(conn: &mut DbConnection, view: &CaseView) -> Result<(), StoreError> {
    let id = view.case_id.to_string();
    delete_forms(conn, &id)?;
    let municipality = view.municipality.map(|m| m.to_string()).unwrap_or_default();
    for plan in view.plans.values() {
        diesel::insert_into(plans::table)
            .values(PlanRow {
                plan_id: plan.id.to_string(),
                case_id: id.clone(),
                round: round(plan.round),
                author: plan.author.to_string(),
                drafted_on: format_date(plan.drafted_on),
                period_until: plan.period_until.map(format_date),
                next_monitoring_on: plan.next_monitoring_on.map(format_date),
            })
            .execute(conn)?;
    }
    for evaluation in view.evaluations.values() {
        diesel::insert_into(evaluations::table)
            .values(EvaluationRow {
                evaluation_id: evaluation.id.to_string(),
                case_id: id.clone(),
                round: round(evaluation.round),
                evaluator: evaluation.evaluator.to_string(),
                evaluated_on: format_date(evaluation.evaluated_on),
                wish: evaluation.wish.map(|w| w.as_key().to_owned()),
            })
            .execute(conn)?;
    }
    for decision in view.decisions.values() {
        let decided_on = format_date(decision.decided_on);
        diesel::insert_into(decisions::table)
            .values(DecisionRow {
                decision_id: decision.id.to_string(),
                case_id: id.clone(),
                meeting_on: format_date(decision.meeting_on),
                verdict: decision.verdict.as_key().to_owned(),
                referred_on: decision.referred_on,
                decided_on: decided_on.clone(),
            })
            .execute(conn)?;
        if !decision.referred_on {
            continue;
        }
        let other = decision.referral_other.as_ref().map(|_| OTHER_DESTINATION);
        for destination in decision.referral_destinations.iter().map(String::as_str).chain(other) {
            diesel::insert_into(referrals::table)
                .values(ReferralRow {
                    decision_id: decision.id.to_string(),
                    case_id: id.clone(),
                    municipality: municipality.clone(),
                    destination: destination.to_owned(),
                    decided_on: decided_on.clone(),
                })
                .execute(conn)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A decision reaching the server through the sync engine fills `decisions` and
    //! `referrals`, on both backends.

    use chrono::NaiveDate;
    use diesel::connection::SimpleConnection;
    use tsunagi_sync::domain::{PlanVerdict, Role};
    use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
    use tsunagi_sync::ops::{CaseReplica, NewCase, NewDecision, NewEvaluation, NewPlan, NewPlanAction};
    use tsunagi_sync::validation::Actor;
    use tsunagi_sync::wire::{Bytes, DocumentStatus, DocumentUpload, Hash, SyncRequest};

    use super::*;
    use crate::store::{schema, Database};
    use crate::sync::{Requester, SyncEngine};
    use crate::testing::{Backend, TestDatabase};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    /// A supervisor with one device, registered in `database` with their municipality and
    /// organisation.
    fn supervisor(database: &Database) -> Requester {
        let who = Requester {
            staff: StaffId::new_random(),
            device: DeviceId::new_random(),
            role: Role::Supervisor,
            municipality: MunicipalityCode::parse("122203").unwrap(),
            area: None,
        };
        database
            .write(|c| -> Result<(), StoreError> {
                c.batch_execute(&format!(
                    "INSERT INTO municipalities (code, name, created_at) VALUES ('122203', '流山市', '2026-04-01 00:00:00');
                     INSERT INTO organisations (id, name, kind, created_at) VALUES ('org', '流山市', 'direct', '2026-04-01 00:00:00');
                     INSERT INTO staff (id, login, display_name, role, organisation_id, municipality, password_hash, active, failed_logins, created_at)
                     VALUES ('{s}', '{s}', 'x', 'supervisor', 'org', '122203', 'x', TRUE, 0, '2026-04-01 00:00:00');
                     INSERT INTO devices (id, staff_id, label, registered_at) VALUES ('{d}', '{s}', 'tablet', '2026-04-01 00:00:00');",
                    s = who.staff,
                    d = who.device,
                ))?;
                Ok(())
            })
            .unwrap();
        who
    }

    /// Uploads everything `replica` made after `since`; returns the server's new heads.
    fn sync(
        engine: &SyncEngine,
        who: &Requester,
        replica: &mut CaseReplica,
        since: &[automerge::ChangeHash],
    ) -> Vec<automerge::ChangeHash> {
        let changes = replica.changes_since(since).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect();
        let upload = DocumentUpload::new(replica.case_id().unwrap(), since.iter().map(Hash::from).collect(), changes);
        let response = engine.sync(who, SyncRequest::new(None, vec![upload])).unwrap();
        let result = &response.documents[0];
        assert_eq!(result.status, DocumentStatus::Ok, "{:?}", result.error);
        let news = result.changes.iter().map(|b| automerge::Change::from_bytes(b.0.clone()).unwrap()).collect();
        replica.apply_changes(news).unwrap();
        result.heads.iter().map(|h| automerge::ChangeHash(h.0)).collect()
    }

    fn a_decision_reaching_the_server_fills_decisions_and_referrals(backend: Backend) {
        let db = TestDatabase::new(backend);
        let database = Database::connect(&db.url, 4).unwrap();
        database.migrate().unwrap();
        let engine = SyncEngine::new(database.clone());
        let chief = supervisor(&database);
        let actor = Actor { staff: chief.staff, device: chief.device, role: chief.role };
        let mut tablet = CaseReplica::open(NewCase::new(chief.municipality, day(1)), actor).unwrap();
        let plan = tablet
            .add_plan(NewPlan::new(1, day(2)).with_action(NewPlanAction::new("本人", "求職登録")).until(day(31)))
            .unwrap();
        let evaluation = tablet.add_evaluation(NewEvaluation::new(1, day(9))).unwrap();
        let since = sync(&engine, &chief, &mut tablet, &[]);
        let case = tablet.case_id().unwrap().to_string();

        // At the meeting: closed, referred on to two agencies of the catalogue and one other.
        let decision = tablet
            .record_decision(
                NewDecision::new(day(10), PlanVerdict::Close)
                    .decided(day(11))
                    .referred_to(["hello_work", "legal_support"])
                    .referred_to_other("NPO法人つなぎ"),
            )
            .unwrap();
        tablet.set_status(tsunagi_sync::domain::CaseStatus::Closed).unwrap();
        let since = sync(&engine, &chief, &mut tablet, &since);

        let mut conn = database.conn().unwrap();
        let plans: Vec<(String, i32, Option<String>)> = schema::plans::table
            .filter(schema::plans::case_id.eq(&case))
            .select((schema::plans::plan_id, schema::plans::round, schema::plans::period_until))
            .load(&mut *conn)
            .unwrap();
        assert_eq!(plans, vec![(plan.to_string(), 1, Some("2026-12-31".to_owned()))]);
        let evaluations: Vec<String> = schema::evaluations::table
            .filter(schema::evaluations::case_id.eq(&case))
            .select(schema::evaluations::evaluation_id)
            .load(&mut *conn)
            .unwrap();
        assert_eq!(evaluations, vec![evaluation.to_string()]);
        let decisions: Vec<(String, String, bool, String, String)> = schema::decisions::table
            .filter(schema::decisions::case_id.eq(&case))
            .select((
                schema::decisions::decision_id,
                schema::decisions::verdict,
                schema::decisions::referred_on,
                schema::decisions::meeting_on,
                schema::decisions::decided_on,
            ))
            .load(&mut *conn)
            .unwrap();
        assert_eq!(
            decisions,
            vec![(decision.to_string(), "close".to_owned(), true, "2026-12-10".to_owned(), "2026-12-11".to_owned())]
        );
        let mut referrals: Vec<(String, String, String, String)> = schema::referrals::table
            .filter(schema::referrals::case_id.eq(&case))
            .select((
                schema::referrals::decision_id,
                schema::referrals::municipality,
                schema::referrals::destination,
                schema::referrals::decided_on,
            ))
            .load(&mut *conn)
            .unwrap();
        referrals.sort();
        let row = |destination: &str| {
            (decision.to_string(), "122203".to_owned(), destination.to_owned(), "2026-12-11".to_owned())
        };
        assert_eq!(referrals, vec![row("hello_work"), row("legal_support"), row(OTHER_DESTINATION)]);
        drop(conn);

        // Projections are rewritten, not appended: another sync leaves one row each.
        tablet.add_plan(NewPlan::new(2, day(12))).unwrap();
        sync(&engine, &chief, &mut tablet, &since);
        let mut conn = database.conn().unwrap();
        let count = |conn: &mut DbConnection| -> (i64, i64, i64) {
            (
                schema::plans::table.filter(schema::plans::case_id.eq(&case)).count().get_result(conn).unwrap(),
                schema::decisions::table.filter(schema::decisions::case_id.eq(&case)).count().get_result(conn).unwrap(),
                schema::referrals::table.filter(schema::referrals::case_id.eq(&case)).count().get_result(conn).unwrap(),
            )
        };
        assert_eq!(count(&mut conn), (2, 1, 3));
    }

    #[test]
    fn sqlite_a_decision_reaching_the_server_fills_decisions_and_referrals() {
        a_decision_reaching_the_server_fills_decisions_and_referrals(Backend::Sqlite);
    }

    #[test]
    fn postgres_a_decision_reaching_the_server_fills_decisions_and_referrals() {
        a_decision_reaching_the_server_fills_decisions_and_referrals(Backend::Postgres);
    }
}
