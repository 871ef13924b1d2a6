//! Inputs the fuzz targets (`fuzz/`) found, kept as tests: each must be refused cleanly,
//! never panic. Files are in `tests/fuzz-regressions/`, named after their target.

use automerge::Automerge;
use tsunagi_sync::ids::{DeviceId, StaffId};
use tsunagi_sync::validation::{apply_and_validate, Acting, Actor, BatchError};

/// The `change_intake` target's framing: changes prefixed by their length (2 bytes, LE).
fn changes(data: &[u8]) -> Vec<Vec<u8>> {
    let mut changes = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && changes.len() < 16 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        changes.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    changes
}

#[test]
fn change_bytes_that_make_automerge_panic_are_refused_as_corrupt() {
    let base = Automerge::load(include_bytes!("../../fuzz/base.case")).unwrap();
    let actor = Actor::counsellor(
        StaffId::parse("0b6f2d1e-8a3c-4c55-9e77-1f2a3b4c5d6e").unwrap(),
        DeviceId::parse("5d1c9a7e-2b4f-4e8a-b1c3-d4e5f6a7b8c9").unwrap(),
    );
    let inputs: [&[u8]; 2] = [
        // Decodes, then panics while importing operations (an actor index out of range).
        include_bytes!("fuzz-regressions/change_intake-actor-index"),
        // Panics while decoding (an integer overflow in an object id column).
        include_bytes!("fuzz-regressions/change_intake-decode-overflow"),
    ];
    for input in inputs {
        let result = apply_and_validate(&base, &changes(input), &Acting::Staff(actor));
        assert!(matches!(result, Err(BatchError::Corrupt { .. })), "{:?}", result.err());
    }
}

#[test]
fn document_bytes_that_make_automerge_panic_are_refused_as_unloadable() {
    use tsunagi_sync::ops::CaseReplica;
    let input = include_bytes!("fuzz-regressions/document_validation-load-rle");
    let actor = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
    assert!(CaseReplica::load(input, actor).is_err());
    // A replica file with these bytes is reported corrupt, not a crash of the app.
    let dir = tempfile::tempdir().unwrap();
    // Nothing kept loaded: every load reads the file.
    let mut store = tsunagi_sync::store::ReplicaStore::open(dir.path().join("replica")).unwrap().with_memory_budget(0);
    let case = tsunagi_sync::ids::CaseId::new_random();
    let mut doc = automerge::AutoCommit::new();
    store.save_doc(&case, &mut doc).unwrap();
    std::fs::write(store.case_path(&case), input).unwrap();
    assert!(store.load_doc(&case).is_err());
}
