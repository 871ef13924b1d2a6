//! Writes the seed corpus of the fuzz targets in `fuzz/` (see `docs/benchmarks.md`,
//! "Fuzzing"): a real case document (`fuzz/base.case`, the document the `change_intake`
//! target applies changes to), and real inputs for each target — sync requests in CBOR and
//! JSON, change batches on top of the base case, whole saved documents.
//!
//! Run it from the repository root with `cargo run -p tsunagi-sync --example fuzz_seeds -- fuzz`.

use std::path::{Path, PathBuf};

use chrono::{FixedOffset, NaiveDate, TimeZone};
use tsunagi_sync::actor::device_actor;
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::{CaseStatus, ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, VisitOutcome};
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewPerson};
use tsunagi_sync::validation::Actor;
use tsunagi_sync::wire::{Bytes, DocumentUpload, Format, Hash, SyncRequest};

/// The staff member and device every fuzz target acts as (also in `fuzz/fuzz_targets`).
const STAFF: &str = "0b6f2d1e-8a3c-4c55-9e77-1f2a3b4c5d6e";
const DEVICE: &str = "5d1c9a7e-2b4f-4e8a-b1c3-d4e5f6a7b8c9";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// Changes as the `change_intake` target reads them: each one prefixed by its length
/// (2 bytes, little-endian).
fn framed(changes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        let len = u16::try_from(change.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&change[..usize::from(len)]);
    }
    out
}

/// The raw changes a replica made after `before`.
fn raw(replica: &mut CaseReplica, before: &[automerge::ChangeHash]) -> Vec<Vec<u8>> {
    replica.changes_since(before).into_iter().map(|c| c.raw_bytes().to_vec()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fuzz = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz".into()));
    let corpus = fuzz.join("corpus");
    let device = DeviceId::parse(DEVICE)?;
    let actor = Actor::counsellor(StaffId::parse(STAFF)?, device);
    let jst = FixedOffset::east_opt(9 * 3600).ok_or("offset")?;
    let at = |day, hour| jst.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single().ok_or("time");

    let new = NewCase::new(MunicipalityCode::parse("122203")?, NaiveDate::from_ymd_opt(2026, 11, 2).ok_or("date")?);
    let mut replica = CaseReplica::open(new, actor)?.with_actor_id(device_actor(&device, b"fuzz")?);
    let mut person = NewPerson::new("山田 花子");
    person.kana = Some("やまだ はなこ".into());
    person.is_subject = true;
    let subject = replica.add_person(person)?;
    let visit = replica.log_activity(
        NewActivity::new(
            at(4, 10)?,
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::NotHome,
                met_person_ids: Default::default(),
                letter_left: true,
            },
        )
        .with_narrative("不在。"),
    )?;
    let base = replica.save();
    write(&fuzz, "base.case", &base)?;
    let heads = replica.heads();
    let since: Vec<Hash> = heads.iter().map(Hash::from).collect();

    // Batches on top of the base case, each a thing a phone really sends.
    let (day5, day6, day7, day8) = (at(5, 15)?, at(6, 9)?, at(7, 18)?, at(8, 9)?);
    let mut batches: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let met =
        ActivityDetails::Visit { outcome: VisitOutcome::Met, met_person_ids: [subject].into(), letter_left: false };
    let letter = ActivityDetails::LetterLeft {
        items: [LetterItem::Letter].into(),
        left_at: LetterPlace::Mailbox,
        reply_received_on: None,
    };
    let call = ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer };
    let before = replica.heads();
    replica.log_activity(NewActivity::new(day5, Place::Home, met).with_narrative("本人と面談。"))?;
    batches.push(("visit-met", raw(&mut replica, &before)));
    let before = replica.heads();
    replica.log_activity(NewActivity::new(day6, Place::Home, letter))?;
    batches.push(("letter", raw(&mut replica, &before)));
    let before = replica.heads();
    replica.log_activity(NewActivity::new(day7, Place::Phone, call))?;
    batches.push(("call", raw(&mut replica, &before)));
    let before = replica.heads();
    replica.amend_narrative(visit, "不在。手紙を投函した。")?;
    batches.push(("amend", raw(&mut replica, &before)));
    let before = replica.heads();
    replica.set_status(CaseStatus::Outreach)?;
    batches.push(("status", raw(&mut replica, &before)));
    let before = replica.heads();
    replica.void_activity(visit, "別の世帯の記録", day8)?;
    batches.push(("void", raw(&mut replica, &before)));

    let mut all = Vec::new();
    for (name, changes) in &batches {
        write(&corpus.join("change_intake"), name, &framed(changes))?;
        all.extend(changes.iter().cloned());
    }
    write(&corpus.join("change_intake"), "all", &framed(&all))?;

    let case_id = replica.case_id()?;
    let request = SyncRequest::new(
        Some(Bytes(vec![1, 2, 3, 4])),
        vec![DocumentUpload::new(case_id, since, all.iter().cloned().map(Bytes).collect())],
    );
    write(&corpus.join("sync_request"), "request.cbor", &Format::Cbor.encode(&request))?;
    write(&corpus.join("sync_request"), "request.json", &Format::Json.encode(&request))?;
    let empty = SyncRequest::new(None, Vec::new());
    write(&corpus.join("sync_request"), "empty.cbor", &Format::Cbor.encode(&empty))?;

    write(&corpus.join("document_validation"), "base", &base)?;
    write(&corpus.join("document_validation"), "after", &replica.save())?;
    println!("seeds written under {}", fuzz.display());
    Ok(())
}
