//! Change intake as `POST /v1/sync` does it: arbitrary bytes, cut into "changes", applied to a
//! real case document and validated as a counsellor's upload. Refusals are fine; a panic, a
//! hang or an accepted document that does not read as a case is a bug.
#![no_main]

use std::sync::OnceLock;

use automerge::Automerge;
use libfuzzer_sys::fuzz_target;
use tsunagi_sync::document::read_case;
use tsunagi_sync::ids::{DeviceId, StaffId};
use tsunagi_sync::validation::{apply_and_validate, Acting, Actor};

/// The staff member and device of the seeds (`sync-protocol/examples/fuzz_seeds.rs`).
fn actor() -> Actor {
    Actor::counsellor(
        StaffId::parse("0b6f2d1e-8a3c-4c55-9e77-1f2a3b4c5d6e").expect("a staff id"),
        DeviceId::parse("5d1c9a7e-2b4f-4e8a-b1c3-d4e5f6a7b8c9").expect("a device id"),
    )
}

/// A small real case (a household member and a visit), written by the seed generator.
fn base() -> &'static Automerge {
    static BASE: OnceLock<Automerge> = OnceLock::new();
    BASE.get_or_init(|| Automerge::load(include_bytes!("../base.case")).expect("the base case loads"))
}

fuzz_target!(|data: &[u8]| {
    // The product catches Automerge's own panics on malformed changes (see
    // `tsunagi_sync::validation::untrusted`) and refuses the batch; libfuzzer-sys's hook would
    // abort on those caught panics, so replace it once with a silent one (the default hook
    // would print, and symbolise, a backtrace for every caught panic: thousands a minute). A
    // panic that escapes is still a crash.
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
    // Length-prefixed chunks: [len (2 bytes, little-endian)][bytes]… — up to 16 "changes".
    let mut changes = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && changes.len() < 16 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        changes.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    if let Ok((doc, view)) = apply_and_validate(base(), &changes, &Acting::Staff(actor())) {
        let reading = read_case(&doc);
        assert!(reading.issues.is_empty(), "an accepted case reads without issues: {:?}", reading.issues);
        assert_eq!(reading.view.as_ref(), Some(&view));
    }
});
