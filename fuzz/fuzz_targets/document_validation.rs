//! Reading and validating whole documents: arbitrary bytes loaded as an Automerge document
//! (as a restored backup or an assigned document would be), read as a case and validated as
//! a brand-new case uploaded by a counsellor. Never a panic.
#![no_main]

use automerge::Automerge;
use libfuzzer_sys::fuzz_target;
use tsunagi_sync::document::read_case;
use tsunagi_sync::ids::{DeviceId, StaffId};
use tsunagi_sync::validation::{validate_update, Acting, Actor};

fuzz_target!(|data: &[u8]| {
    // Loading goes through the product's guard (Automerge can panic on crafted bytes; the
    // product reports them as unloadable). libfuzzer-sys's hook would abort on those caught
    // panics, so restore the default hook once; a panic that escapes is still a crash.
    static HOOK: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| drop(std::panic::take_hook()));
    let Ok(Ok(doc)) = tsunagi_sync::validation::untrusted(|| Automerge::load(data)) else { return };
    let reading = read_case(&doc);
    let acting = Acting::Staff(Actor::counsellor(
        StaffId::parse("0b6f2d1e-8a3c-4c55-9e77-1f2a3b4c5d6e").expect("a staff id"),
        DeviceId::parse("5d1c9a7e-2b4f-4e8a-b1c3-d4e5f6a7b8c9").expect("a device id"),
    ));
    let validated = validate_update(&doc, &[], &acting);
    if let Ok(view) = validated {
        assert!(reading.issues.is_empty(), "a valid case reads without issues");
        assert_eq!(reading.view, Some(view));
    }
});
