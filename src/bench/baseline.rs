//! The baseline: the same work synced with the **standard Automerge sync protocol**, in
//! process, the way a generic Automerge sync server (automerge-repo's, for instance) does it.
//!
//! - One server document per case, one peer per device, and per (device, case) one
//!   [`sync::State`] on each side.
//! - A **round trip** is one exchange of messages for all documents of a device: the device
//!   generates a message for every document it holds (`generate_sync_message`), the server
//!   receives them all (`receive_sync_message`) and generates its answers for every document of
//!   that device, and the device receives those. A device syncs by repeating round trips until
//!   neither side has anything to say. Bytes are the encoded messages (`Message::encode`),
//!   with no framing at all: the baseline pays nothing for HTTP, WebSocket or envelopes.
//! - Between syncs the peers disconnect. Both sides keep their sync states **persisted**
//!   (`State::encode`, which keeps the shared heads) and restore them on reconnect: the most
//!   favourable set-up for the standard protocol (a server that forgets its peers' states would
//!   spend more).
//! - The baseline replays the very changes the tsunagi run made ([`Step::Edit`]), so both
//!   move the same payload. It validates nothing, projects nothing and stores nothing: its
//!   "server CPU" is only the time spent in the server side's `receive_sync_message` and
//!   `generate_sync_message` calls (one thread, so time ≈ CPU).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use automerge::sync::{self, Message, SyncDoc};
use automerge::{Automerge, Change};
use tsunagi_sync::ids::CaseId;

use super::device::Edit;

/// One step of a scenario, as the tsunagi run did it.
#[derive(Debug, Clone)]
pub enum Step {
    /// A device edited a case offline.
    Edit {
        /// Which device (index in [`Input::devices`]).
        device: usize,
        /// The changes it made.
        edit: Edit,
    },
    /// A device synced.
    Sync {
        /// Which device.
        device: usize,
    },
}

/// Where the baseline starts: the server's documents and each device's replicas, as the
/// tsunagi run had them when the measured phase began.
#[derive(Debug, Default)]
pub struct Input {
    /// The server's document of each case (`save()` bytes).
    pub server: HashMap<CaseId, Vec<u8>>,
    /// Each device's cases: its replica in sync with the server (`Some`), or a case it must
    /// fetch (`None`: it knows the id but holds nothing).
    pub devices: Vec<Vec<(CaseId, Option<Vec<u8>>)>>,
}

/// What the baseline measured over the sync steps.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sync steps.
    pub syncs: u64,
    /// Round trips.
    pub round_trips: u64,
    /// Bytes of messages from the devices.
    pub bytes_up: u64,
    /// Bytes of messages from the server.
    pub bytes_down: u64,
    /// The duration of each round trip.
    pub latencies: Vec<Duration>,
    /// The time of all sync steps.
    pub wall: Duration,
    /// The time of the server side's calls.
    pub server_time: Duration,
}

/// A device's side: its documents, its sync states, and the server's sync states for it.
struct Peer {
    docs: BTreeMap<CaseId, Automerge>,
    mine: HashMap<CaseId, sync::State>,
    server_side: HashMap<CaseId, sync::State>,
}

/// The baseline world.
pub struct Baseline {
    server: HashMap<CaseId, Automerge>,
    peers: Vec<Peer>,
}

/// A sync state as it is after being persisted and restored (only the shared heads survive).
fn reloaded(state: &sync::State) -> anyhow::Result<sync::State> {
    sync::State::decode(&state.encode()).context("a sync state does not decode")
}

impl Baseline {
    /// Loads the documents; every replica held is first brought in sync with the server's
    /// document (unmeasured: that is where the tsunagi run starts too), and the sync states
    /// are persisted and restored, as after a disconnect.
    pub fn new(input: &Input) -> anyhow::Result<Baseline> {
        let mut server = HashMap::new();
        for (case, bytes) in &input.server {
            server.insert(*case, Automerge::load(bytes).context("a server document does not load")?);
        }
        let mut peers = Vec::new();
        for cases in &input.devices {
            let mut peer = Peer { docs: BTreeMap::new(), mine: HashMap::new(), server_side: HashMap::new() };
            for (case, bytes) in cases {
                let doc = match bytes {
                    Some(bytes) => Automerge::load(bytes).context("a replica does not load")?,
                    None => Automerge::new(),
                };
                peer.docs.insert(*case, doc);
            }
            let held: Vec<CaseId> = cases.iter().filter(|(_, bytes)| bytes.is_some()).map(|(case, _)| *case).collect();
            if !held.is_empty() {
                exchange(&mut server, &mut peer, &mut Outcome::default())?;
                for case in held {
                    for states in [&mut peer.mine, &mut peer.server_side] {
                        if let Some(state) = states.get_mut(&case) {
                            *state = reloaded(state)?;
                        }
                    }
                }
            }
            peers.push(peer);
        }
        Ok(Baseline { server, peers })
    }

    /// Replays the steps; returns what the sync steps cost.
    pub fn run(&mut self, steps: &[Step]) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        for step in steps {
            match step {
                Step::Edit { device, edit } => {
                    let peer = self.peers.get_mut(*device).context("an edit of an unknown device")?;
                    let doc = peer.docs.get_mut(&edit.case).context("an edit of a case the device lacks")?;
                    let changes = edit
                        .changes
                        .iter()
                        .map(|bytes| Change::from_bytes(bytes.clone()).context("a change does not decode"))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    doc.apply_changes(changes).context("a change does not apply")?;
                }
                Step::Sync { device } => {
                    let peer = self.peers.get_mut(*device).context("a sync of an unknown device")?;
                    let started = Instant::now();
                    exchange(&mut self.server, peer, &mut outcome)?;
                    outcome.wall += started.elapsed();
                    outcome.syncs += 1;
                    // Disconnect: only the persisted part of each state survives.
                    for state in peer.mine.values_mut().chain(peer.server_side.values_mut()) {
                        *state = reloaded(state)?;
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// Round trips between a device and the server until neither has anything to send.
fn exchange(server: &mut HashMap<CaseId, Automerge>, peer: &mut Peer, outcome: &mut Outcome) -> anyhow::Result<()> {
    for _ in 0..1000 {
        let started = Instant::now();
        let mut up = Vec::new();
        for (case, doc) in &peer.docs {
            let state = peer.mine.entry(*case).or_default();
            if let Some(message) = doc.generate_sync_message(state) {
                up.push((*case, message.encode()));
            }
        }
        let server_started = Instant::now();
        for (case, bytes) in &up {
            let doc = server.get_mut(case).context("a device syncs a case the server lacks")?;
            let state = peer.server_side.entry(*case).or_default();
            let message = Message::decode(bytes).context("a sync message does not decode")?;
            doc.receive_sync_message(state, message).context("the server cannot receive a sync message")?;
        }
        let mut down = Vec::new();
        for case in peer.docs.keys() {
            let doc = server.get(case).context("a device syncs a case the server lacks")?;
            let state = peer.server_side.entry(*case).or_default();
            if let Some(message) = doc.generate_sync_message(state) {
                down.push((*case, message.encode()));
            }
        }
        outcome.server_time += server_started.elapsed();
        if up.is_empty() && down.is_empty() {
            return Ok(());
        }
        for (case, bytes) in &down {
            let doc = peer.docs.get_mut(case).context("an answer for an unknown case")?;
            let state = peer.mine.entry(*case).or_default();
            let message = Message::decode(bytes).context("a sync message does not decode")?;
            doc.receive_sync_message(state, message).context("the device cannot receive a sync message")?;
        }
        outcome.round_trips += 1;
        outcome.bytes_up += up.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        outcome.bytes_down += down.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        outcome.latencies.push(started.elapsed());
    }
    bail!("the standard sync protocol did not converge within 1000 round trips")
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn doc_with(key: &str) -> AutoCommit {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, key, "x").unwrap();
        doc
    }

    #[test]
    fn a_reconnect_with_nothing_new_costs_one_round_trip() {
        let case = CaseId::new_random();
        let bytes = doc_with("a").save();
        let input = Input { server: HashMap::from([(case, bytes.clone())]), devices: vec![vec![(case, Some(bytes))]] };
        let mut baseline = Baseline::new(&input).unwrap();
        let outcome = baseline.run(&[Step::Sync { device: 0 }]).unwrap();
        assert_eq!(outcome.syncs, 1);
        assert_eq!(outcome.round_trips, 1);
        assert!(outcome.bytes_up > 0 && outcome.bytes_down > 0);
    }

    #[test]
    fn an_edit_reaches_the_server_and_a_new_device_fetches_everything() {
        let case = CaseId::new_random();
        let mut doc = doc_with("a");
        let bytes = doc.save();
        let heads = doc.get_heads();
        doc.put(ROOT, "b", "y").unwrap();
        let changes = doc.get_changes(&heads).iter().map(|c| c.raw_bytes().to_vec()).collect();
        let input = Input {
            server: HashMap::from([(case, bytes.clone())]),
            devices: vec![vec![(case, Some(bytes))], vec![(case, None)]],
        };
        let mut baseline = Baseline::new(&input).unwrap();
        let steps = [
            Step::Edit { device: 0, edit: Edit { case, changes } },
            Step::Sync { device: 0 },
            Step::Sync { device: 1 },
        ];
        let outcome = baseline.run(&steps).unwrap();
        assert_eq!(outcome.syncs, 2);
        assert_eq!(baseline.server[&case].get_heads(), doc.get_heads());
        assert_eq!(baseline.peers[1].docs[&case].get_heads(), doc.get_heads());
    }
}
