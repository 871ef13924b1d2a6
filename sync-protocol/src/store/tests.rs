use std::fs;

use automerge::{transaction::Transactable, AutoCommit, ObjType, ReadDoc, ROOT};

use super::*;
use crate::validation::{Violation, ViolationCode};

fn sample_doc() -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "schema", 1_i64).unwrap();
    doc.put(ROOT, "status", "open").unwrap();
    let narrative = doc.put_object(ROOT, "narrative", ObjType::Text).unwrap();
    doc.splice_text(&narrative, 0, 0, "不在。玄関に手紙を残した。").unwrap();
    doc.commit();
    doc
}

fn status_of(doc: &AutoCommit) -> String {
    match doc.get(ROOT, "status").unwrap() {
        Some((value, _)) => value.into_string().unwrap(),
        None => panic!("no status"),
    }
}

fn narrative_of(doc: &AutoCommit) -> String {
    let (_, id) = doc.get(ROOT, "narrative").unwrap().unwrap();
    doc.text(&id).unwrap()
}

fn open(dir: &Path) -> ReplicaStore {
    ReplicaStore::open(dir).unwrap()
}

#[test]
fn a_saved_document_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let mut doc = sample_doc();
    store.save_doc(&case, &mut doc).unwrap();

    let mut loaded = store.load_doc(&case).unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(status_of(&loaded), "open");
    assert_eq!(narrative_of(&loaded), "不在。玄関に手紙を残した。");
    assert_eq!(store.load(&case).unwrap().unwrap(), doc.save());
    assert_eq!(store.case_ids(), vec![case]);
    assert_eq!(store.entry(&case), Some(&CaseEntry::default()));
    assert!(store.case_path(&case).ends_with(format!("cases/{case}.automerge")));

    let other = CaseId::new_random();
    assert!(store.load(&other).unwrap().is_none());
    assert!(store.load_doc(&other).unwrap().is_none());
    assert!(store.entry(&other).is_none());
}

#[test]
fn reopening_keeps_documents_entries_and_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (CaseId::new_random(), CaseId::new_random());
    let mut doc = sample_doc();
    let heads = doc.get_heads();
    let refusal = Refusal {
        at: "2026-11-04T18:02:11+09:00".into(),
        code: "validation_failed".into(),
        message: "the changes were refused".into(),
        violations: vec![Violation::new(ViolationCode::MissingField, "/activities/x/place", "place is required")],
    };
    {
        let mut store = open(tmp.path());
        store.save_doc(&a, &mut doc).unwrap();
        store.save_doc(&b, &mut AutoCommit::new()).unwrap();
        store
            .update_entry(&a, |e| {
                e.set_since(&heads);
                e.case_number = Some("2026-0153".into());
                e.last_synced_at = Some("2026-11-04T18:02:11+09:00".into());
            })
            .unwrap();
        store.update_entry(&b, |e| e.refusal = Some(refusal.clone())).unwrap();
        store.set_cursor(Some("b3BhcXVl".into()), Some("2026-11-04T18:02:12+09:00".into())).unwrap();
    }
    let store = open(tmp.path());
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(store.case_ids(), expected);
    assert_eq!(store.since(&a).unwrap(), heads);
    assert_eq!(store.entry(&a).unwrap().case_number.as_deref(), Some("2026-0153"));
    assert_eq!(store.entry(&b).unwrap().refusal.as_ref(), Some(&refusal));
    assert!(store.since(&b).unwrap().is_empty());
    assert_eq!(store.cursor(), Some("b3BhcXVl"));
    assert_eq!(store.last_sync_at(), Some("2026-11-04T18:02:12+09:00"));
    assert_eq!(store.load_doc(&a).unwrap().unwrap().get_heads(), heads);

    let index: serde_json::Value = serde_json::from_slice(&fs::read(tmp.path().join(INDEX_FILE)).unwrap()).unwrap();
    assert_eq!(index["format"], 1);
    assert_eq!(index["cases"][a.to_string()]["since"][0], heads[0].to_string());
}

#[test]
fn a_crash_leaves_the_last_good_state() {
    let tmp = tempfile::tempdir().unwrap();
    let case = CaseId::new_random();
    let mut doc = sample_doc();
    let heads = doc.get_heads();
    {
        let mut store = open(tmp.path());
        store.save_with_entry(&case, &doc.save(), |e| e.set_since(&heads)).unwrap();
        store.set_cursor(Some("Y3Vyc29y".into()), None).unwrap();
    }
    // A crash while writing the case file and while writing the index: garbage and a
    // truncated copy of the real index are left in the temporaries.
    let case_tmp = tmp.path().join(CASES_DIR).join(format!("{case}.automerge.tmp"));
    let index_tmp = tmp.path().join("index.json.tmp");
    fs::write(&case_tmp, b"\x00\xffgarbage, not automerge").unwrap();
    let index = fs::read(tmp.path().join(INDEX_FILE)).unwrap();
    fs::write(&index_tmp, &index[..index.len() / 2]).unwrap();

    let store = open(tmp.path());
    assert!(!case_tmp.exists());
    assert!(!index_tmp.exists());
    assert_eq!(store.case_ids(), vec![case]);
    assert_eq!(store.since(&case).unwrap(), heads);
    assert_eq!(store.cursor(), Some("Y3Vyc29y"));
    let mut loaded = store.load_doc(&case).unwrap().unwrap();
    assert_eq!(loaded.get_heads(), heads);
    assert_eq!(narrative_of(&loaded), "不在。玄関に手紙を残した。");
}

#[test]
fn a_crash_between_case_file_and_index_only_resends() {
    let tmp = tempfile::tempdir().unwrap();
    let case = CaseId::new_random();
    let mut doc = sample_doc();
    let synced = doc.get_heads();
    {
        let mut store = open(tmp.path());
        store.save_with_entry(&case, &doc.save(), |e| e.set_since(&synced)).unwrap();
        // New local work, saved; then the sync's new `since` would follow, but the phone dies
        // before: emulate by writing only the case file, as `save` does first.
        doc.put(ROOT, "status", "closed").unwrap();
        doc.commit();
        store.save_doc(&case, &mut doc).unwrap();
    }
    let store = open(tmp.path());
    let since = store.since(&case).unwrap();
    assert_eq!(since, synced, "the index keeps the older since");
    let mut loaded = store.load_doc(&case).unwrap().unwrap();
    assert_eq!(status_of(&loaded), "closed");
    assert_eq!(loaded.get_changes(&since).len(), 1, "the new change is still pending");
}

#[test]
fn open_adopts_an_unindexed_case_file_and_drops_an_entry_without_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (kept, orphan, purged) = (CaseId::new_random(), CaseId::new_random(), CaseId::new_random());
    let mut doc = sample_doc();
    {
        let mut store = open(tmp.path());
        store.save_doc(&kept, &mut doc).unwrap();
        store.save_doc(&purged, &mut doc).unwrap();
    }
    // A first save interrupted before its index entry…
    fs::write(tmp.path().join(CASES_DIR).join(format!("{orphan}.automerge")), doc.save()).unwrap();
    // …and a purge interrupted after deleting the file.
    fs::remove_file(tmp.path().join(CASES_DIR).join(format!("{purged}.automerge"))).unwrap();
    // Foreign names in cases/ are ignored.
    fs::write(tmp.path().join(CASES_DIR).join("notes.txt"), b"x").unwrap();

    let store = open(tmp.path());
    let mut expected = vec![kept, orphan];
    expected.sort();
    assert_eq!(store.case_ids(), expected);
    assert!(store.since(&orphan).unwrap().is_empty());
    drop(store);
    // The reconciliation was written down.
    let index = fs::read_to_string(tmp.path().join(INDEX_FILE)).unwrap();
    assert!(index.contains(&orphan.to_string()));
    assert!(!index.contains(&purged.to_string()));
}

#[test]
fn a_second_open_is_refused_while_the_first_is_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    let err = ReplicaStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("already open in another process"), "{err}");
    drop(first);
    let _again = open(tmp.path());
}

#[test]
fn since_round_trips_and_bad_hex_is_a_corrupt_index() {
    let tmp = tempfile::tempdir().unwrap();
    let case = CaseId::new_random();
    let mut doc = sample_doc();
    let mut other = doc.fork();
    other.put(ROOT, "area", "north").unwrap();
    other.commit();
    doc.put(ROOT, "area", "south").unwrap();
    doc.commit();
    doc.merge(&mut other).unwrap();
    let heads = doc.get_heads();
    assert_eq!(heads.len(), 2);
    {
        let mut store = open(tmp.path());
        assert!(store.since(&case).unwrap().is_empty(), "unknown case: empty since");
        store.save_doc(&case, &mut doc).unwrap();
        store.update_entry(&case, |e| e.set_since(&heads)).unwrap();
        assert_eq!(store.since(&case).unwrap(), heads);
    }
    assert_eq!(open(tmp.path()).since(&case).unwrap(), heads);

    let index_path = tmp.path().join(INDEX_FILE);
    let index = fs::read_to_string(&index_path).unwrap().replace(&heads[0].to_string(), "not-hex");
    fs::write(&index_path, index).unwrap();
    let store = open(tmp.path());
    match store.since(&case) {
        Err(StoreError::CorruptIndex { path, detail }) => {
            assert_eq!(path, index_path);
            assert!(detail.contains(&case.to_string()), "{detail}");
        }
        other => panic!("expected CorruptIndex, got {other:?}"),
    }
}

#[test]
fn a_corrupt_or_newer_index_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    let index_path = tmp.path().join(INDEX_FILE);
    fs::write(&index_path, b"{\"format\": 1, \"cases\": {\"0191e3c4").unwrap();
    let err = ReplicaStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::CorruptIndex { .. }), "{err:?}");
    assert_eq!(fs::read(&index_path).unwrap(), b"{\"format\": 1, \"cases\": {\"0191e3c4");

    fs::write(&index_path, br#"{"format": 2, "cases": []}"#).unwrap();
    let err = ReplicaStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedFormat { found: 2, .. }), "{err:?}");
    // A refused open released the lock.
    fs::remove_file(&index_path).unwrap();
    let _store = open(tmp.path());
}

#[test]
fn removed_cases_are_gone_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let (gone, kept) = (CaseId::new_random(), CaseId::new_random());
    {
        let mut store = open(tmp.path());
        store.save_doc(&gone, &mut sample_doc()).unwrap();
        store.save_doc(&kept, &mut sample_doc()).unwrap();
        assert!(store.remove(&gone).unwrap());
        assert!(!store.remove(&gone).unwrap(), "second remove: nothing to do");
        assert!(store.load(&gone).unwrap().is_none());
    }
    let store = open(tmp.path());
    assert_eq!(store.case_ids(), vec![kept]);
    assert!(store.load(&gone).unwrap().is_none());
    assert!(!store.case_path(&gone).exists());
    assert!(!fs::read_to_string(tmp.path().join(INDEX_FILE)).unwrap().contains(&gone.to_string()));
}

#[test]
fn wipe_leaves_no_case_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let mut store = open(&dir);
    for _ in 0..3 {
        store.save_doc(&CaseId::new_random(), &mut sample_doc()).unwrap();
    }
    store.set_cursor(Some("Y3Vyc29y".into()), None).unwrap();
    store.wipe().unwrap();
    assert!(!dir.exists(), "the store directory is removed");

    // With a file the store does not own, the directory stays with only that file.
    let mut store = open(&dir);
    store.save_doc(&CaseId::new_random(), &mut sample_doc()).unwrap();
    fs::write(dir.join("README"), b"not ours").unwrap();
    store.wipe().unwrap();
    let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("README")]);

    let store = open(&dir);
    assert!(store.case_ids().is_empty());
    assert!(store.cursor().is_none());
}

#[test]
fn a_corrupt_case_file_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let bytes = sample_doc().save();
    store.save(&case, &bytes).unwrap();

    for bad in [&b"garbage"[..], &bytes[..bytes.len() / 2], &[]] {
        fs::write(store.case_path(&case), bad).unwrap();
        match store.load_doc(&case) {
            Err(StoreError::CorruptCase { case: c, path, .. }) => {
                assert_eq!(c, case);
                assert_eq!(path, store.case_path(&case));
            }
            other => panic!("expected CorruptCase, got {:?}", other.map(|d| d.is_some())),
        }
    }
    assert!(matches!(store.save(&case, &[]), Err(StoreError::EmptyDocument { .. })));
}

#[test]
fn entries_follow_their_case_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let err = store.update_entry(&case, |e| e.case_number = Some("2026-0001".into())).unwrap_err();
    assert!(matches!(err, StoreError::UnknownCase { .. }), "{err:?}");
    assert!(store.case_ids().is_empty());
    store.save_with_entry(&case, &sample_doc().save(), |e| e.case_number = Some("2026-0001".into())).unwrap();
    assert_eq!(store.entry(&case).unwrap().case_number.as_deref(), Some("2026-0001"));
}

#[cfg(unix)]
#[test]
fn files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mut store = open(&dir);
    let case = CaseId::new_random();
    store.save_doc(&case, &mut sample_doc()).unwrap();
    store.update_entry(&case, |e| e.case_number = Some("2026-0002".into())).unwrap();

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CASES_DIR)), 0o700);
    for file in [store.case_path(&case), dir.join(INDEX_FILE), dir.join(LOCK_FILE)] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn refused_copies_are_kept_listed_and_discarded() {
    use chrono::TimeZone;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let mut store = open(&dir);
    let (case, other) = (CaseId::new_random(), CaseId::new_random());
    assert!(store.refused_copies(&case).unwrap().is_empty());
    assert!(store.cases_with_refused_copies().unwrap().is_empty());
    assert_eq!(store.discard_refused(&case).unwrap(), 0);

    let at = chrono::Utc.with_ymd_and_hms(2026, 11, 4, 9, 15, 2).unwrap();
    let first = sample_doc().save();
    let path = store.keep_refused(&case, &first, at).unwrap();
    assert_eq!(path, dir.join(REFUSED_DIR).join(case.to_string()).join("20261104T091502.000000000Z.automerge"));
    // The same instant again does not overwrite the first copy.
    let mut second_doc = sample_doc();
    second_doc.put(ROOT, "status", "closed").unwrap();
    let second = store.keep_refused(&case, &second_doc.save(), at).unwrap();
    assert_ne!(second, path);
    let later = store.keep_refused(&case, &first, at + chrono::Duration::seconds(1)).unwrap();
    store.keep_refused(&other, &first, at).unwrap();
    assert!(matches!(store.keep_refused(&case, &[], at), Err(StoreError::EmptyDocument { .. })));

    assert_eq!(store.refused_copies(&case).unwrap(), vec![path.clone(), second.clone(), later]);
    assert_eq!(fs::read(&path).unwrap(), first);
    assert_eq!(status_of(&AutoCommit::load(&fs::read(&second).unwrap()).unwrap()), "closed");
    let mut both = vec![case, other];
    both.sort();
    assert_eq!(store.cases_with_refused_copies().unwrap(), both);

    // A crash mid-write leaves a temporary, removed at the next open; the copies survive.
    drop(store);
    let stray = dir.join(REFUSED_DIR).join(case.to_string()).join("x.automerge.tmp");
    fs::write(&stray, b"half").unwrap();
    let mut store = open(&dir);
    assert!(!stray.exists());
    assert_eq!(store.refused_copies(&case).unwrap().len(), 3);

    assert_eq!(store.discard_refused(&case).unwrap(), 3);
    assert!(store.refused_copies(&case).unwrap().is_empty());
    assert_eq!(store.cases_with_refused_copies().unwrap(), vec![other]);

    // A wipe takes the refused copies with it.
    store.wipe().unwrap();
    assert!(!dir.exists());
}

#[cfg(unix)]
#[test]
fn refused_copies_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let path = store.keep_refused(&case, &sample_doc().save(), chrono::Utc::now()).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&tmp.path().join(REFUSED_DIR)), 0o700);
}

#[test]
fn sync_state_fields_of_an_entry_round_trip_and_older_indexes_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let case = CaseId::new_random();
    {
        let mut store = open(tmp.path());
        store.save_doc(&case, &mut sample_doc()).unwrap();
        // Defaults are not written: an index without them is the format-1 index as before.
        let text = fs::read_to_string(tmp.path().join(INDEX_FILE)).unwrap();
        assert!(!text.contains("fallback") && !text.contains("purge_pending") && !text.contains("not_found_at"));
        store
            .update_entry(&case, |e| {
                e.fallback = true;
                e.purge_pending = Some("unassigned".into());
                e.not_found_at = Some("2026-11-04T09:00:00+00:00".into());
            })
            .unwrap();
    }
    let store = open(tmp.path());
    let entry = store.entry(&case).unwrap();
    assert!(entry.fallback);
    assert_eq!(entry.purge_pending.as_deref(), Some("unassigned"));
    assert_eq!(entry.not_found_at.as_deref(), Some("2026-11-04T09:00:00+00:00"));
}

#[test]
fn a_document_kept_loaded_is_always_the_files_content() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let mut doc = sample_doc();
    store.save_doc(&case, &mut doc).unwrap();
    assert_eq!(store.memory_usage().0, 1, "a saved document is kept loaded");
    // A copy: changing it changes neither the store nor what the next load returns.
    let mut copy = store.load_doc(&case).unwrap().unwrap();
    copy.put(ROOT, "status", "closed").unwrap();
    copy.commit();
    assert_eq!(status_of(&store.load_doc(&case).unwrap().unwrap()), "open");
    // Raw bytes replace it.
    let mut other = sample_doc();
    other.put(ROOT, "status", "suspended").unwrap();
    store.save(&case, &other.save()).unwrap();
    assert_eq!(store.memory_usage().0, 0);
    let mut loaded = store.load_doc(&case).unwrap().unwrap();
    assert_eq!(status_of(&loaded), "suspended");
    assert_eq!(loaded.get_heads(), other.get_heads());
    // A saved document replaces it.
    store.save_doc(&case, &mut copy).unwrap();
    assert_eq!(status_of(&store.load_doc(&case).unwrap().unwrap()), "closed");
    // A purge forgets it.
    store.remove(&case).unwrap();
    assert_eq!(store.memory_usage(), (0, 0));
    assert!(store.load_doc(&case).unwrap().is_none());
}

#[test]
fn documents_kept_loaded_stay_within_the_budget_least_recently_used_first() {
    let tmp = tempfile::tempdir().unwrap();
    let size = sample_doc().save().len();
    let mut store = open(tmp.path()).with_memory_budget(2 * size);
    let cases: Vec<CaseId> = (0..3).map(|_| CaseId::new_random()).collect();
    store.save_doc(&cases[0], &mut sample_doc()).unwrap();
    store.save_doc(&cases[1], &mut sample_doc()).unwrap();
    store.load_doc(&cases[0]).unwrap();
    store.save_doc(&cases[2], &mut sample_doc()).unwrap();
    assert_eq!(store.memory_usage(), (2, 2 * size));
    // The least recently used (the second) went; every case still loads, from its file.
    for case in &cases {
        assert_eq!(status_of(&store.load_doc(case).unwrap().unwrap()), "open");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let mut none = open(elsewhere.path()).with_memory_budget(0);
    none.save_doc(&cases[0], &mut sample_doc()).unwrap();
    assert_eq!(none.memory_usage(), (0, 0));
}

#[test]
fn a_document_waiting_for_missing_changes_is_not_kept_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let case = CaseId::new_random();
    let mut source = sample_doc();
    let heads = source.get_heads();
    source.put(ROOT, "status", "closed").unwrap();
    source.commit();
    // Only the second change: Automerge queues it until its dependency arrives, and `save()`
    // leaves it out of the file.
    let mut waiting = AutoCommit::new();
    waiting.apply_changes(source.get_changes(&heads)).unwrap();
    assert!(!automerge::ReadDoc::get_missing_deps(&waiting, &[]).is_empty());
    store.save_doc(&case, &mut waiting).unwrap();
    assert_eq!(store.memory_usage().0, 0);
}
