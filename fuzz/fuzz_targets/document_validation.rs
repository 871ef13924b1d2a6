//! Reading and validating whole documents: arbitrary bytes loaded as a saved document (as a
//! replica file, an assigned document or a restored backup would be) through the product's
//! loader, read as a case and validated as a brand-new case uploaded by a counsellor. Never a
//! panic, never a runaway allocation.
//!
//! The loader refuses a chunk whose checksum does not match before Automerge parses it, so
//! the input is loaded twice: as it is, and with every document and change chunk given the
//! checksum of its contents, so that the fuzzer reaches Automerge's parsers behind the check
//! (as a crafted file would).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tsunagi_sync::document::{load_saved, read_case};
use tsunagi_sync::ids::{DeviceId, StaffId};
use tsunagi_sync::validation::{validate_update, Acting, Actor};

fuzz_target!(|data: &[u8]| {
    // Automerge can panic on crafted bytes; the loader catches that and reports the bytes as
    // unloadable. libfuzzer-sys's hook would abort on those caught panics, so replace it once
    // with a silent one; a panic that escapes is still a crash.
    static HOOK: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
    validate(data);
    let repaired = with_valid_checksums(data);
    if repaired != data {
        validate(&repaired);
    }
});

fn validate(data: &[u8]) {
    let Ok(mut doc) = load_saved(data) else { return };
    let reading = read_case(&doc);
    let acting = Acting::Staff(Actor::counsellor(
        StaffId::parse("0b6f2d1e-8a3c-4c55-9e77-1f2a3b4c5d6e").expect("a staff id"),
        DeviceId::parse("5d1c9a7e-2b4f-4e8a-b1c3-d4e5f6a7b8c9").expect("a device id"),
    ));
    let validated = validate_update(doc.document(), &[], &acting);
    if let Ok(view) = validated {
        assert!(reading.issues.is_empty(), "a valid case reads without issues");
        assert_eq!(reading.view, Some(view));
    }
}

/// `data` with the checksum of every document (type 0) and change (type 1) chunk set to the
/// first 4 bytes of the SHA-256 of its type, length and data; anything that is not a
/// well-formed chunk header ends the walk and is left as it is.
fn with_valid_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut offset = 0;
    while out.len() >= offset + 10 && out[offset..offset + 4] == [0x85, 0x6f, 0x4a, 0x83] {
        let (mut length, mut i) = (0u64, offset + 9);
        loop {
            let (Some(&byte), shift @ 0..=56) = (out.get(i), 7 * (i - offset - 9)) else { return out };
            length |= u64::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let Some(end) = usize::try_from(length).ok().and_then(|l| i.checked_add(l)).filter(|e| *e <= out.len())
        else {
            return out;
        };
        if out[offset + 8] <= 1 {
            let hash = Sha256::digest(&out[offset + 8..end]);
            out[offset + 4..offset + 8].copy_from_slice(&hash[..4]);
        }
        offset = end;
    }
    out
}
