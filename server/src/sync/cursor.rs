//! The sync cursor (`docs/protocol.md`, section 9).
//!
//! Opaque to clients; 33 bytes: a version byte (`1`), the device id (16 bytes), the number
//! of the response that carried it (8 bytes, big-endian) and the commit clock read when that
//! request started (8 bytes, big-endian; [`crate::store::documents::clock`]).
//!
//! A cursor tells the server two things about the device that sends it back:
//!
//! - it stored that response, so every response numbered up to it (the whole cases they sent,
//!   the purges they ordered) has reached the device;
//! - it holds every change of its cases stamped with that clock value or less, so for a case
//!   the request does not list, the changes stamped later are what it lacks.
//!
//! The device id is checked so that a cursor copied to another device is worthless, and a
//! cursor the server cannot have issued (a later response than the device has had, a clock
//! ahead of the database's, as after restoring a backup) counts as none: the device then
//! lists every case, which is always safe. A forged cursor gains nothing: what a device may
//! see is decided by the visibility rule on every request, never by its cursor.

use tsunagi_sync::ids::DeviceId;
use tsunagi_sync::wire::Bytes;

const VERSION: u8 = 1;
const LEN: usize = 1 + 16 + 8 + 8;

/// A decoded cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The number of the response that carried it.
    pub response: i64,
    /// The commit clock when that request started.
    pub clock: i64,
}

impl Cursor {
    /// The bytes sent to `device`.
    pub fn encode(&self, device: &DeviceId) -> Bytes {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(device.as_uuid().as_bytes());
        bytes.extend_from_slice(&self.response.to_be_bytes());
        bytes.extend_from_slice(&self.clock.to_be_bytes());
        Bytes(bytes)
    }

    /// The cursor `device` sent, if it is one the server can have issued to it before the
    /// response numbered `response` and with the clock at `clock`.
    pub fn decode(bytes: &[u8], device: &DeviceId, response: i64, clock: i64) -> Option<Self> {
        if bytes.len() != LEN || bytes[0] != VERSION || &bytes[1..17] != device.as_uuid().as_bytes() {
            return None;
        }
        let number = |range: std::ops::Range<usize>| bytes.get(range)?.try_into().ok().map(i64::from_be_bytes);
        let cursor = Self { response: number(17..25)?, clock: number(25..33)? };
        (cursor.response >= 1 && cursor.response < response && cursor.clock >= 0 && cursor.clock <= clock)
            .then_some(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_back_as_issued() {
        let device = DeviceId::new_random();
        let cursor = Cursor { response: 7, clock: 1234 };
        let bytes = cursor.encode(&device);
        assert_eq!(bytes.len(), LEN);
        assert_eq!(Cursor::decode(bytes.as_slice(), &device, 8, 1234), Some(cursor));
        assert_eq!(Cursor::decode(bytes.as_slice(), &device, 100, 99_999), Some(cursor));
    }

    #[test]
    fn a_cursor_the_server_cannot_have_issued_counts_as_none() {
        let device = DeviceId::new_random();
        let bytes = Cursor { response: 7, clock: 1234 }.encode(&device);
        // Another device's cursor.
        assert_eq!(Cursor::decode(bytes.as_slice(), &DeviceId::new_random(), 8, 1234), None);
        // A response not issued yet, or a clock ahead of the database (a restored backup).
        assert_eq!(Cursor::decode(bytes.as_slice(), &device, 7, 1234), None);
        assert_eq!(Cursor::decode(bytes.as_slice(), &device, 8, 1233), None);
        // Truncated, padded, another version, garbage.
        assert_eq!(Cursor::decode(&bytes.as_slice()[..32], &device, 8, 1234), None);
        let mut padded = bytes.as_slice().to_vec();
        padded.push(0);
        assert_eq!(Cursor::decode(&padded, &device, 8, 1234), None);
        let mut other = bytes.as_slice().to_vec();
        other[0] = 2;
        assert_eq!(Cursor::decode(&other, &device, 8, 1234), None);
        assert_eq!(Cursor::decode(b"AZNrLqE3c1IAAAAD", &device, 8, 1234), None);
        // Negative numbers never come from the server.
        let negative = Cursor { response: 3, clock: -1 }.encode(&device);
        assert_eq!(Cursor::decode(negative.as_slice(), &device, 8, 1234), None);
    }
}
