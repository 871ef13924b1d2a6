//! Decoding a `POST /v1/sync` body, CBOR and JSON, as the server does before anything else:
//! any bytes must give a request or a `WireError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi_sync::wire::{Format, SyncRequest, SyncResponse};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Cbor, Format::Json] {
        if let Ok(request) = SyncRequest::decode(format, data) {
            // What decodes re-encodes and decodes to the same request.
            let again = SyncRequest::decode(format, &format.encode(&request)).expect("a request round-trips");
            assert_eq!(again, request);
        }
        // The client decodes the server's answers with the same code.
        let _ = SyncResponse::decode(format, data);
    }
});
