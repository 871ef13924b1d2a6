//! Actor ids: who wrote an Automerge change.
//!
//! Every change a device uploads must be authored by that device. An actor id is the
//! device's 16-byte id followed by a suffix of the device's choosing (1 to 16 bytes); a
//! device picks a fresh suffix per replica (per install, per restore) so two replicas of
//! one device never reuse `(actor, seq)` pairs. The server writes with its own actor, whose
//! first byte pattern cannot collide with a device because device ids are registered UUIDs.
//!
//! ```
//! use tsunagi_sync::actor::{device_actor, device_of_actor};
//! use tsunagi_sync::ids::DeviceId;
//! let device = DeviceId::new_random();
//! let actor = device_actor(&device, &[1, 2, 3, 4]).unwrap();
//! assert_eq!(device_of_actor(&actor), Some(device));
//! ```

use automerge::{ActorId, Change};

use crate::ids::DeviceId;

/// The longest suffix a device may add after its 16-byte id.
pub const MAX_SUFFIX_LEN: usize = 16;

/// Why an actor id or a batch of changes was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The suffix is empty or longer than [`MAX_SUFFIX_LEN`].
    #[error("an actor suffix has 1 to {MAX_SUFFIX_LEN} bytes, got {0}")]
    SuffixLength(usize),
    /// A change in the batch was written by someone other than the uploading device.
    #[error("change {index} is authored by actor {actor}, not by device {device}")]
    ForeignActor {
        /// Position of the change in the batch.
        index: usize,
        /// The change's actor id, hex.
        actor: String,
        /// The device that uploaded the batch.
        device: DeviceId,
    },
}

/// Builds the actor id a device writes with: its 16-byte id, then `suffix`.
pub fn device_actor(device: &DeviceId, suffix: &[u8]) -> Result<ActorId, ActorError> {
    if suffix.is_empty() || suffix.len() > MAX_SUFFIX_LEN {
        return Err(ActorError::SuffixLength(suffix.len()));
    }
    let mut bytes = Vec::with_capacity(16 + suffix.len());
    bytes.extend_from_slice(device.as_bytes());
    bytes.extend_from_slice(suffix);
    Ok(ActorId::from(bytes))
}

/// A device actor id with a random 8-byte suffix: what a new replica uses.
pub fn random_device_actor(device: &DeviceId) -> ActorId {
    let suffix = *uuid::Uuid::new_v4().as_bytes();
    // 8 random bytes are plenty to keep one device's replicas apart.
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(device.as_bytes());
    bytes.extend_from_slice(&suffix[..8]);
    ActorId::from(bytes)
}

/// The device an actor id belongs to, if it has the device-actor form.
pub fn device_of_actor(actor: &ActorId) -> Option<DeviceId> {
    let bytes = actor.to_bytes();
    if bytes.len() <= 16 || bytes.len() > 16 + MAX_SUFFIX_LEN {
        return None;
    }
    let head: [u8; 16] = bytes[..16].try_into().ok()?;
    DeviceId::from_uuid(uuid::Uuid::from_bytes(head)).ok()
}

/// Checks that every change in `changes` was authored by `device`.
pub fn check_authorship(changes: &[Change], device: &DeviceId) -> Result<(), ActorError> {
    for (index, change) in changes.iter().enumerate() {
        if device_of_actor(change.actor_id()).as_ref() != Some(device) {
            return Err(ActorError::ForeignActor { index, actor: change.actor_id().to_hex_string(), device: *device });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{transaction::Transactable, AutoCommit, ROOT};

    fn change_by(actor: ActorId) -> Change {
        let mut doc = AutoCommit::new().with_actor(actor);
        doc.put(ROOT, "x", 1).unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    #[test]
    fn actor_ids_carry_the_device() {
        let device = DeviceId::new_random();
        let actor = random_device_actor(&device);
        assert_eq!(actor.to_bytes().len(), 24);
        assert_eq!(device_of_actor(&actor), Some(device));
        assert!(device_actor(&device, &[]).is_err());
        assert!(device_actor(&device, &[0; 17]).is_err());
        assert_eq!(device_of_actor(&ActorId::from(device.as_bytes().to_vec())), None);
    }

    #[test]
    fn batches_by_another_author_are_refused() {
        let me = DeviceId::new_random();
        let other = DeviceId::new_random();
        let mine = change_by(random_device_actor(&me));
        let theirs = change_by(random_device_actor(&other));
        assert!(check_authorship(std::slice::from_ref(&mine), &me).is_ok());
        let err = check_authorship(&[mine, theirs], &me).unwrap_err();
        assert!(matches!(err, ActorError::ForeignActor { index: 1, .. }));
        assert!(check_authorship(&[change_by(ActorId::random())], &me).is_err());
    }
}
