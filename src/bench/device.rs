//! A simulated field device: the real phone stack — a [`ReplicaStore`] on disk, a
//! [`SyncSession`], a [`SyncClient`] over HTTP — and the field operations of
//! [`CaseReplica`], driven with made-up but valid work (cases with a household, visits,
//! letters left, contact attempts with Japanese narratives, amended narratives).
//!
//! Each replica keeps one Automerge actor id for as long as the benchmark runs (as a phone
//! app that keeps its replicas open does), so that a day's edits do not add an actor per edit.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use automerge::{ActorId, AutoCommit, ChangeHash, ReadDoc, Value, ROOT};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use tsunagi_sync::actor::random_device_actor;
use tsunagi_sync::client::SyncClient;
use tsunagi_sync::document::{keys, ActivityDetails};
use tsunagi_sync::domain::{
    ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, Relation, Role, VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseId, DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewPerson};
use tsunagi_sync::session::{CaseEvent, SyncReport, SyncSession};
use tsunagi_sync::store::ReplicaStore;
use tsunagi_sync::validation::Actor;

use super::text::{self, Rng};

/// A staff member with one registered device.
#[derive(Debug, Clone)]
pub struct Person {
    /// Login name.
    pub login: String,
    /// Password.
    pub password: String,
    /// Staff id.
    pub staff: StaffId,
    /// The registered device.
    pub device: DeviceId,
    /// Role.
    pub role: Role,
}

impl Person {
    /// As the validation rules see this person on this device.
    pub fn actor(&self) -> Actor {
        Actor { staff: self.staff, device: self.device, role: self.role }
    }
}

/// The changes one edit made to one case (Automerge's binary change format).
#[derive(Debug, Clone)]
pub struct Edit {
    /// The case.
    pub case: CaseId,
    /// The new changes, in causal order.
    pub changes: Vec<Vec<u8>>,
}

impl Edit {
    /// Their size in bytes.
    pub fn bytes(&self) -> usize {
        self.changes.iter().map(Vec::len).sum()
    }
}

/// A field day's offline work on one device.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The edits, in the order they were made.
    pub edits: Vec<Edit>,
    /// Activities logged.
    pub activities: usize,
}

impl Batch {
    /// Changes made.
    pub fn changes(&self) -> usize {
        self.edits.iter().map(|e| e.changes.len()).sum()
    }

    /// Their size in bytes (the payload floor of uploading them).
    pub fn bytes(&self) -> usize {
        self.edits.iter().map(Edit::bytes).sum()
    }
}

/// A device's state before a sync, to tell afterwards what had to move.
#[derive(Debug, Default)]
pub struct Before {
    cases: HashMap<CaseId, (Vec<ChangeHash>, usize)>,
    /// Changes not yet acknowledged by the server (what has to go up), their bytes.
    pub up_bytes: usize,
    /// And their number.
    pub up_changes: usize,
}

/// What moved in a sync, at the level of Automerge changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Bytes of changes that had to go up.
    pub up_bytes: usize,
    /// Changes that had to go up.
    pub up_changes: usize,
    /// Bytes of changes that came down (the replica lacked them).
    pub down_bytes: usize,
    /// Changes that came down.
    pub down_changes: usize,
    /// Activities that arrived.
    pub down_activities: usize,
}

impl Moved {
    /// Adds another device's figures.
    pub fn add(&mut self, other: Moved) {
        self.up_bytes += other.up_bytes;
        self.up_changes += other.up_changes;
        self.down_bytes += other.down_bytes;
        self.down_changes += other.down_changes;
        self.down_activities += other.down_activities;
    }
}

/// The number of activities in a case document.
fn activity_count(doc: &AutoCommit) -> usize {
    match doc.get(ROOT, keys::ACTIVITIES) {
        Ok(Some((Value::Object(_), id))) => doc.length(&id),
        _ => 0,
    }
}

/// Japan Standard Time.
pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Today in Japan, 00:00.
pub fn today() -> DateTime<FixedOffset> {
    let now = Utc::now().with_timezone(&jst());
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
    jst().from_local_datetime(&midnight).single().unwrap_or(now)
}

/// One simulated device.
pub struct Device {
    /// Who uses it.
    pub person: Person,
    /// Its replica store.
    pub store: ReplicaStore,
    /// Its sync session.
    pub session: SyncSession,
    client: Option<(SyncClient, String)>,
    actors: HashMap<CaseId, ActorId>,
    /// Its own source of choices.
    pub rng: Rng,
}

impl Device {
    /// A device with an empty replica store in `dir`.
    pub fn new(dir: &Path, person: Person, rng: Rng) -> anyhow::Result<Device> {
        let store = ReplicaStore::open(dir.join(format!("device-{}", person.device)))
            .with_context(|| format!("the replica store of {} does not open", person.login))?;
        Ok(Device { person, store, session: SyncSession::new(), client: None, actors: HashMap::new(), rng })
    }

    /// The cases it holds.
    pub fn cases(&self) -> Vec<CaseId> {
        self.store.case_ids()
    }

    fn actor_id(&mut self, case: CaseId) -> ActorId {
        let device = self.person.device;
        self.actors.entry(case).or_insert_with(|| random_device_actor(&device)).clone()
    }

    /// Applies a field operation to the stored case and saves it; returns what it returned and
    /// the changes it made.
    pub fn edit<T>(
        &mut self,
        case: CaseId,
        op: impl FnOnce(&mut CaseReplica, &mut Rng) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Edit)> {
        let mut doc =
            self.store.load_doc(&case)?.with_context(|| format!("{} does not hold {case}", self.person.login))?;
        let before = doc.get_heads();
        let actor_id = self.actor_id(case);
        let mut replica = CaseReplica::from_doc(doc, self.person.actor()).with_actor_id(actor_id);
        let out = op(&mut replica, &mut self.rng)?;
        let changes = replica.changes_since(&before).iter().map(|c| c.raw_bytes().to_vec()).collect();
        self.store.save_doc(&case, replica.doc_mut())?;
        Ok((out, Edit { case, changes }))
    }

    /// Opens a case offline (a household of a parent and a child, the child the subject),
    /// with `activities` activities over the days before today, `chars` characters of
    /// narrative each.
    pub fn open_case(
        &mut self,
        municipality: MunicipalityCode,
        activities: usize,
        chars: usize,
    ) -> anyhow::Result<CaseId> {
        let today = today();
        let opened = today - Duration::days(activities as i64 + 7);
        let mut new = NewCase::new(municipality, opened.date_naive());
        let (family, kana) = text::family(&mut self.rng);
        let mut parent = NewPerson::new(format!("{family} 恵子"));
        parent.kana = Some(format!("{kana} けいこ"));
        parent.relation = Some(Relation::Mother);
        let mut child = NewPerson::new(format!("{family} 翔太"));
        child.kana = Some(format!("{kana} しょうた"));
        child.relation = Some(Relation::Son);
        child.is_subject = true;
        // Spread like real birth dates: one shared date would make every seeded case a
        // possible duplicate of every other (`attention`), which is not what is measured.
        child.birth_date = NaiveDate::from_ymd_opt(
            2000 + self.rng.below(20) as i32,
            1 + self.rng.below(12) as u32,
            1 + self.rng.below(28) as u32,
        );
        new.household = vec![parent, child];
        let mut replica = CaseReplica::open(new, self.person.actor()).context("cannot open a case")?;
        let case = replica.case_id()?;
        self.actors.insert(case, replica.doc().get_actor().clone());
        for i in 0..activities {
            let at = today - Duration::days((activities - i) as i64) + Duration::hours(10);
            log_activity_on(&mut replica, &mut self.rng, at, i, chars)?;
        }
        self.store.save_doc(&case, replica.doc_mut())?;
        Ok(case)
    }

    /// Logs `count` activities (one per case, cycling through `cases`) at times of today.
    pub fn log_activities(&mut self, cases: &[CaseId], count: usize, chars: usize) -> anyhow::Result<Batch> {
        let mut batch = Batch::default();
        if cases.is_empty() {
            return Ok(batch);
        }
        let order = self.rng.distinct(cases.len(), count.min(cases.len()));
        for i in 0..count {
            let case = cases[order[i % order.len()]];
            let at = today() + Duration::hours(9) + Duration::minutes(40 * i as i64);
            let ((), edit) = self.edit(case, |replica, rng| {
                log_activity_on(replica, rng, at, i, chars)?;
                Ok(())
            })?;
            batch.edits.push(edit);
            batch.activities += 1;
        }
        Ok(batch)
    }

    /// Amends the narratives of `count` activities this staff member recorded (one per case,
    /// cycling through `cases`): a sentence is added and a few characters change, which
    /// Automerge records as character-level edits.
    pub fn amend_narratives(&mut self, cases: &[CaseId], count: usize) -> anyhow::Result<Batch> {
        let mut batch = Batch::default();
        if cases.is_empty() {
            return Ok(batch);
        }
        let order = self.rng.distinct(cases.len(), count.min(cases.len()));
        let staff = self.person.staff;
        for i in 0..count {
            let case = cases[order[i % order.len()]];
            let (amended, edit) = self.edit(case, |replica, rng| {
                let view = replica.view()?;
                let own: Vec<(ActivityId, String)> = view
                    .activities
                    .values()
                    .filter(|a| a.recorded_by == staff && a.voided.is_none())
                    .map(|a| (a.id, a.narrative.clone()))
                    .collect();
                if own.is_empty() {
                    return Ok(false);
                }
                let (id, old) = own[rng.below(own.len())].clone();
                let new = format!("{}{}", old.replacen("訪問", "家庭訪問", 1), text::addendum(rng));
                replica.amend_narrative(id, &new)?;
                Ok(true)
            })?;
            if !amended {
                bail!("{} has no activity of its own to amend in case {case}", self.person.login);
            }
            batch.edits.push(edit);
        }
        Ok(batch)
    }

    /// A field day: `activities` activities logged and `amendments` narratives amended,
    /// spread over `cases`.
    pub fn field_day(
        &mut self,
        cases: &[CaseId],
        activities: usize,
        amendments: usize,
        chars: usize,
    ) -> anyhow::Result<Batch> {
        let mut batch = self.log_activities(cases, activities, chars)?;
        let amended = self.amend_narratives(cases, amendments)?;
        batch.edits.extend(amended.edits);
        Ok(batch)
    }

    /// Signs in over HTTP (`POST /v1/auth/login`).
    pub async fn sign_in(&mut self, base_url: &str) -> anyhow::Result<()> {
        let client = SyncClient::builder(base_url).build().context("cannot build the sync client")?;
        let tokens = client
            .login(&self.person.login, &self.person.password, self.person.device)
            .await
            .with_context(|| format!("{} cannot sign in", self.person.login))?;
        self.client = Some((client, tokens.access_token));
        Ok(())
    }

    /// One sync with the server over HTTP (as many rounds as the client needs); fails unless
    /// every case synced cleanly.
    pub async fn sync(&mut self) -> anyhow::Result<SyncReport> {
        let (client, token) =
            self.client.as_ref().with_context(|| format!("{} is not signed in", self.person.login))?;
        let report = client
            .sync(token, &mut self.session, &mut self.store)
            .await
            .with_context(|| format!("{} cannot sync", self.person.login))?;
        check(&report, &self.person.login)?;
        Ok(report)
    }

    /// Every case's saved document.
    pub fn documents(&self) -> anyhow::Result<Vec<(CaseId, Vec<u8>)>> {
        let mut out = Vec::new();
        for case in self.cases() {
            let bytes = self.store.load(&case)?.with_context(|| format!("{case} vanished from the store"))?;
            out.push((case, bytes));
        }
        Ok(out)
    }

    /// The state before a sync (every replica read from the store).
    pub fn before(&self) -> anyhow::Result<Before> {
        let mut before = Before::default();
        for case in self.cases() {
            let Some(mut doc) = self.store.load_doc(&case)? else { continue };
            let since = self.store.since(&case)?;
            for change in doc.get_changes(&since) {
                before.up_bytes += change.raw_bytes().len();
                before.up_changes += 1;
            }
            before.cases.insert(case, (doc.get_heads(), activity_count(&doc)));
        }
        Ok(before)
    }

    /// What moved since `before`, from the replicas now in the store.
    pub fn moved(&self, before: &Before) -> anyhow::Result<Moved> {
        let mut moved = Moved { up_bytes: before.up_bytes, up_changes: before.up_changes, ..Moved::default() };
        for case in self.cases() {
            let Some(mut doc) = self.store.load_doc(&case)? else { continue };
            let (heads, activities) = before.cases.get(&case).cloned().unwrap_or_default();
            for change in doc.get_changes(&heads) {
                moved.down_bytes += change.raw_bytes().len();
                moved.down_changes += 1;
            }
            moved.down_activities += activity_count(&doc).saturating_sub(activities);
        }
        Ok(moved)
    }
}

/// Fails on any outcome of a sync but a clean one: the benchmark measures the normal path.
pub fn check(report: &SyncReport, who: &str) -> anyhow::Result<()> {
    for event in &report.events {
        match &event.event {
            CaseEvent::Synced { .. } | CaseEvent::Assigned { .. } => {}
            other => bail!("{who}: unexpected sync outcome for case {}: {other:?}", event.case_id),
        }
    }
    if report.sync_again() {
        bail!("{who}: the sync stopped with more to do");
    }
    Ok(())
}

/// Logs one activity: a visit, a letter left or a contact attempt, in turn.
pub fn log_activity_on(
    replica: &mut CaseReplica,
    rng: &mut Rng,
    at: DateTime<FixedOffset>,
    turn: usize,
    chars: usize,
) -> anyhow::Result<ActivityId> {
    let narrative = text::narrative(rng, chars);
    let activity = match turn % 3 {
        0 => {
            let view = replica.view()?;
            let subject = view.household.iter().find(|(_, p)| p.is_subject).map(|(id, _)| *id);
            let met = rng.below(2) == 0;
            let details = match subject {
                Some(person) if met => ActivityDetails::Visit {
                    outcome: VisitOutcome::Met,
                    met_person_ids: BTreeSet::from([person]),
                    letter_left: false,
                },
                _ => ActivityDetails::Visit {
                    outcome: VisitOutcome::NotHome,
                    met_person_ids: BTreeSet::new(),
                    letter_left: true,
                },
            };
            NewActivity::new(at, Place::Home, details).ending_at(at + Duration::minutes(30))
        }
        1 => NewActivity::new(
            at,
            Place::Home,
            ActivityDetails::LetterLeft {
                items: [LetterItem::Letter, LetterItem::Leaflet].into(),
                left_at: *rng.pick(&[LetterPlace::Door, LetterPlace::Mailbox]),
                reply_received_on: None,
            },
        ),
        _ => NewActivity::new(
            at,
            Place::Phone,
            ActivityDetails::ContactAttempt {
                channel: *rng.pick(&[ContactChannel::Phone, ContactChannel::Sns]),
                outcome: *rng.pick(&[ContactOutcome::NoAnswer, ContactOutcome::MessageLeft, ContactOutcome::Reached]),
            },
        ),
    };
    Ok(replica.log_activity(activity.with_narrative(narrative))?)
}
