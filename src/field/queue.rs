//! What a supervisor's tablet and a counsellor's phone read from the supervisors' API, online:
//! `tsunagi field attention` (the attention queue: conflicts, concurrent amendments, late
//! entries, possible duplicates, refused uploads) and `tsunagi field refused` (this staff
//! member's own refused uploads and what a supervisor decided, with the reason).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use tsunagi_sync::client::SyncClient;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::CaseId;

use super::net;
use super::session::FieldSession;

/// Fetches `path` with a fresh access token (the rotated refresh token is saved first).
fn fetch(dir: &Path, path: &str) -> anyhow::Result<Value> {
    let mut session = FieldSession::load(dir)?;
    let client = SyncClient::new(&session.server).context("cannot use the server URL")?;
    net::runtime()?.block_on(async {
        let tokens = client.refresh(&session.refresh_token).await.context("cannot reach the server to sign in")?;
        session.refresh_token = tokens.refresh_token;
        session.save(dir)?;
        client.get_json::<Value>(path, &tokens.access_token).await.with_context(|| format!("GET {path}"))
    })
}

/// One attention item as a line (and its values, for a conflict).
pub fn describe_item(item: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let kind = text(&item["kind"]["label"]);
    let case = item["case_number"].as_str().map(str::to_owned).unwrap_or_else(|| text(&item["case_id"]));
    let detail = &item["detail"];
    let mut lines = Vec::new();
    match item["kind"]["key"].as_str() {
        Some("conflict") => {
            lines.push(format!("{kind} [{case}] {}: concurrent values", text(&detail["path"])));
            for value in detail["values"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "    {} — staff {} on device {} (arrived {})",
                    value["value"],
                    text(&value["staff_id"]),
                    text(&value["device_id"]),
                    text(&value["arrived_at"])
                ));
            }
        }
        Some("concurrent_amendment") => lines.push(format!(
            "{kind} [{case}] {}: amended on two devices at once; merged, read it once",
            text(&detail["path"])
        )),
        Some("late_entry") => lines.push(format!(
            "{kind} [{case}] activity {} ({}, {}) arrived late: {}",
            text(&detail["activity_id"]),
            text(&detail["kind"]),
            text(&detail["started_at"]),
            text(&detail["reason"])
        )),
        Some("possible_duplicate") => {
            lines.push(format!("{kind} [{case}] may be the same household as case {}", text(&detail["other_case_id"])))
        }
        Some("quarantined_batch") => lines.push(format!(
            "{kind} [{case}] upload {} refused ({}) from staff {}",
            text(&detail["quarantine_id"]),
            text(&detail["code"]),
            text(&detail["staff_id"])
        )),
        _ => lines.push(format!("{kind} [{case}] {}", text(&item["subject"]))),
    }
    lines[0] = format!("{}  ({})", lines[0], text(&item["item_id"]));
    lines
}

/// `tsunagi field attention [--case CASE]`: supervisors.
pub fn attention(dir: &Path, case: Option<&str>) -> anyhow::Result<ExitCode> {
    let session = FieldSession::load(dir)?;
    if session.role != Role::Supervisor {
        anyhow::bail!("the attention queue is for supervisors; this device is signed in as {}", session.role);
    }
    let path = match case {
        Some(case) => {
            let case = CaseId::parse(case).map_err(|e| anyhow::anyhow!("case {case:?}: {e}"))?;
            format!("/v1/attention?case={case}")
        }
        None => "/v1/attention".to_owned(),
    };
    let page = fetch(dir, &path)?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("nothing needs attention");
    }
    for item in &items {
        for line in describe_item(item) {
            println!("{line}");
        }
    }
    if page["next"].is_string() {
        println!("… more items: see GET /v1/attention");
    }
    Ok(ExitCode::SUCCESS)
}

/// The open attention items of one case, as lines (for `tsunagi field show` on a
/// supervisor's tablet).
pub fn case_items(dir: &Path, case: &CaseId) -> anyhow::Result<Vec<String>> {
    let page = fetch(dir, &format!("/v1/attention?case={case}"))?;
    Ok(page["items"].as_array().into_iter().flatten().flat_map(describe_item).collect())
}

/// `tsunagi field refused`: this staff member's refused uploads and the decisions.
pub fn refused(dir: &Path) -> anyhow::Result<ExitCode> {
    let answer = fetch(dir, "/v1/quarantine/mine")?;
    let uploads = answer["uploads"].as_array().cloned().unwrap_or_default();
    if uploads.is_empty() {
        println!("no refused uploads");
    }
    for upload in uploads {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let case = upload["case_number"].as_str().map(str::to_owned).unwrap_or_else(|| text(&upload["case_id"]));
        let decision = match upload["decision"].as_str() {
            None => "waiting for a supervisor's decision".to_owned(),
            Some("rejected") => format!("rejected: {}", text(&upload["reason"])),
            Some(other) => other.to_owned(),
        };
        println!("[{case}] {} refused ({}) — {decision}", text(&upload["received_at"]), text(&upload["code"]));
        for v in upload["violations"].as_array().into_iter().flatten() {
            println!("    {} at {}: {}", text(&v["code"]), text(&v["path"]), text(&v["message"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}
