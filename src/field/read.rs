//! Reading the store: `list`, `show`, `status`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tsunagi_sync::document::{since_last_review, ActivityDetails, CaseView, SinceReview};
use tsunagi_sync::ids::CaseId;
use tsunagi_sync::store::ReplicaStore;

use super::edit::{open, parse_case, replica};
use super::session::FieldSession;

/// How many changes of the case the server has not acknowledged yet.
fn pending(store: &ReplicaStore, session: &FieldSession, case: &CaseId) -> anyhow::Result<usize> {
    let since = store.since(case).with_context(|| format!("the index entry of case {case}"))?;
    let mut replica = replica(store, session, case)?;
    Ok(replica.changes_since(&since).len())
}

fn view(store: &ReplicaStore, session: &FieldSession, case: &CaseId) -> anyhow::Result<CaseView> {
    replica(store, session, case)?.view().with_context(|| format!("case {case} is not readable"))
}

pub fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let (session, store) = open(dir)?;
    let cases = store.case_ids();
    if cases.is_empty() {
        println!("(no cases)");
    }
    for case in cases {
        let view = view(&store, &session, &case)?;
        let number = view
            .case_number
            .map(|n| n.to_string())
            .or_else(|| store.entry(&case).and_then(|e| e.case_number.clone()))
            .unwrap_or_else(|| "(未採番)".to_owned());
        let pending = if pending(&store, &session, &case)? > 0 { "yes" } else { "no" };
        println!(
            "{case}  {number}  {}  activities: {}  pending: {pending}",
            view.status.label(),
            view.activities.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn details_line(details: &ActivityDetails) -> String {
    let join = |labels: Vec<&str>| labels.join("・");
    match details {
        ActivityDetails::Visit { outcome, met_person_ids, letter_left } => {
            let mut s = format!("結果: {}", outcome.label());
            if !met_person_ids.is_empty() {
                s.push_str(&format!(" 面会: {}人", met_person_ids.len()));
            }
            if *letter_left {
                s.push_str(" 手紙あり");
            }
            s
        }
        ActivityDetails::LetterLeft { items, left_at, reply_received_on } => {
            let mut s = format!("{} ({})", join(items.iter().map(|i| i.label()).collect()), left_at.label());
            if let Some(on) = reply_received_on {
                s.push_str(&format!(" 返信: {on}"));
            }
            s
        }
        ActivityDetails::ContactAttempt { channel, outcome } => format!("{} {}", channel.label(), outcome.label()),
        ActivityDetails::Accompaniment { agency, purpose, outcome } => {
            format!("同行先: {agency} 目的: {purpose} {outcome}")
        }
        ActivityDetails::Information { information, interest } => format!("{information} (関心: {interest})"),
        ActivityDetails::Consultation { mode, topics } => {
            format!("{} {}", mode.label(), join(topics.iter().map(|t| t.label()).collect()))
        }
        ActivityDetails::Coordination { agency } => format!("調整先: {agency}"),
    }
}

/// The tag `show` puts on an activity added or amended since the case's last review.
fn since_tag(since: Option<&SinceReview>, activity: &tsunagi_sync::ids::ActivityId) -> &'static str {
    match since {
        Some(s) if s.added.contains(activity) => "[new since review] ",
        Some(s) if s.amended.contains(activity) => "[amended since review] ",
        _ => "",
    }
}

pub fn show(dir: &Path, case: &str) -> anyhow::Result<ExitCode> {
    let case = parse_case(case)?;
    let (session, store) = open(dir)?;
    let mut replica = replica(&store, &session, &case)?;
    let view = replica.view().with_context(|| format!("case {case} is not readable"))?;
    let since = since_last_review(replica.doc_mut().document(), &view);
    let number = view.case_number.map(|n| n.to_string()).unwrap_or_else(|| "(未採番)".to_owned());
    println!("== ケース {number} ({case}) ==");
    println!("  状態: {} ({})", view.status.label(), view.status.as_key());
    if let Some(on) = view.opened_on {
        println!("  受付日: {on}");
    }
    println!("== 世帯 ==");
    if view.household.is_empty() {
        println!("  (未登録)");
    }
    for person in view.household.values() {
        let mut line = format!("  {}", person.name);
        if let Some(kana) = &person.kana {
            line.push_str(&format!(" ({kana})"));
        }
        if let Some(relation) = person.relation {
            line.push_str(&format!(" 続柄: {}", relation.label()));
        }
        let mut concerns: Vec<String> = person.concerns.tags.iter().map(|t| t.label().to_owned()).collect();
        if let Some(other) = &person.concerns.other {
            concerns.push(format!("その他({other})"));
        }
        if !concerns.is_empty() {
            line.push_str(&format!(" 困難要素: {}", concerns.join("・")));
        }
        println!("{line}  [{}]", person.id);
    }
    println!("== 活動 ==");
    if let Some(since) = &since {
        println!(
            "  since the last review ({}): {} new, {} amended",
            since.at.format("%Y-%m-%d %H:%M"),
            since.added.len(),
            since.amended.len()
        );
    }
    let activities = view.activities_by_time();
    if activities.is_empty() {
        println!("  (なし)");
    }
    for activity in activities {
        let voided = match &activity.voided {
            Some(v) => format!("[取消] (理由: {}) ", v.reason),
            None => String::new(),
        };
        println!(
            "  {} {}{voided}{} [{}] {} — {}",
            activity.started_at.format("%Y-%m-%d %H:%M"),
            since_tag(since.as_ref(), &activity.id),
            activity.kind().label(),
            activity.place.label(),
            details_line(&activity.details),
            activity.narrative
        );
        if let Some(on) = activity.follow_up_on {
            println!("      次回予定: {on}");
        }
        println!("      id: {}", activity.id);
        for review in view.reviews_of(&activity.id) {
            println!("      確認 {}: {}", review.at.format("%Y-%m-%d %H:%M"), review.comment);
        }
    }
    if !view.conflicts.is_empty() {
        println!("== 競合 (for a supervisor to settle) ==");
        for conflict in &view.conflicts {
            let values: Vec<String> = conflict
                .values
                .iter()
                .map(|v| match &v.device_id {
                    Some(d) => format!("{} (device {d})", v.value),
                    None => format!("{} (actor {})", v.value, v.actor),
                })
                .collect();
            println!("  {}: {}", conflict.path, values.join(" / "));
        }
    }
    if session.role == tsunagi_sync::domain::Role::Supervisor {
        // A supervisor's tablet also shows the case's open attention items, when online.
        println!("== 要確認 (attention queue) ==");
        match super::queue::case_items(dir, &case) {
            Ok(lines) if lines.is_empty() => println!("  (なし)"),
            Ok(lines) => lines.iter().for_each(|l| println!("  {l}")),
            Err(e) => println!("  (not available offline: {})", format!("{e:#}").replace('\n', " ")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(dir: &Path) -> anyhow::Result<ExitCode> {
    let (session, store) = open(dir)?;
    println!(
        "signed in: staff {} on device {} ({}) at {}",
        session.staff, session.device, session.role, session.server
    );
    println!("last successful sync: {}", store.last_sync_at().unwrap_or("never"));
    for case in store.case_ids() {
        let entry = store.entry(&case).cloned().unwrap_or_default();
        let number = entry.case_number.clone().unwrap_or_else(|| "(未採番)".to_owned());
        println!("{case}  {number}  pending changes: {}", pending(&store, &session, &case)?);
        // The server's heads as last heard: the next sync sends what was made after them.
        match entry.since.as_slice() {
            [] => println!("  server heads known: none (never synced)"),
            heads => {
                let short: Vec<&str> = heads.iter().map(|h| h.get(..12).unwrap_or(h)).collect();
                let at = entry.last_synced_at.as_deref().unwrap_or("?");
                println!("  server heads known: {} (as of {at})", short.join(" "));
            }
        }
        if entry.fallback {
            println!("  resynchronising: the server could not use those heads; the next sync repairs it");
        }
        if let Some(refusal) = &entry.refusal {
            println!("  refused at {}: {} — {}", refusal.at, refusal.code, refusal.message);
            for v in &refusal.violations {
                println!("    {} at {}: {}", v.code, v.path, v.message);
            }
        }
        if let Some(reason) = &entry.purge_pending {
            println!("  to be deleted once synced ({reason})");
        }
        if let Some(at) = &entry.not_found_at {
            println!("  unavailable on the server since {at}");
        }
    }
    let mut kept = 0;
    for case in store.cases_with_refused_copies().context("the refused copies")? {
        let copies = store.refused_copies(&case).context("the refused copies")?;
        kept += copies.len();
        for copy in copies {
            println!("refused copy kept: {}", copy.display());
        }
    }
    if kept == 0 {
        println!("refused copies kept: none");
    }
    Ok(ExitCode::SUCCESS)
}
