//! Administration: the accounts and devices a deployment is made of, and the quarantine of
//! refused uploads. The `tsunagi admin` subcommands call these functions; so do tests.
//!
//! Every function checks its input and answers a typed [`AdminError`] whose message says
//! what to do; every action is written to the audit log (action `admin.…`; details are names
//! and ids, never a password). Functions are blocking (Argon2, diesel).
//!
//! ```no_run
//! # fn main() -> Result<(), tsunagi_server::admin::AdminError> {
//! use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
//! use tsunagi_server::store::{Database, DatabaseUrl};
//! use tsunagi_sync::domain::Role;
//! use tsunagi_sync::ids::MunicipalityCode;
//!
//! let db = Database::connect(&DatabaseUrl::Sqlite("tsunagi.sqlite3".into()), 4)?;
//! db.migrate()?;
//! let nagareyama = MunicipalityCode::parse("122203").unwrap();
//! admin::create_municipality(&db, nagareyama, "流山市")?;
//! admin::create_area(&db, nagareyama, "east", "東部")?;
//! let office = admin::create_organisation(&db, "流山市 福祉政策課", OrganisationKind::Direct)?;
//! let staff = NewStaff {
//!     login: "sato",
//!     display_name: "佐藤 花子",
//!     role: Role::Counsellor,
//!     organisation: office,
//!     municipality: nagareyama,
//!     area: Some("east"),
//! };
//! admin::create_staff(&db, &staff, "a long enough passphrase")?;
//! let phone = admin::register_device(&db, "sato", "佐藤 iPhone")?;
//! # let _ = phone;
//! # Ok(()) }
//! ```

use chrono::{NaiveDateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use uuid::Uuid;

use crate::auth::{normalise_login, password};
use crate::store::accounts::{self, Area, Device, Municipality, Organisation, Staff};
use crate::store::quarantine::{self, QuarantineSummary, QuarantinedBatch};
use crate::store::{audit, Database, DbConnection, StoreError};

/// Why an administrative action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A value does not fit.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which value.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such municipality.
    #[error("no municipality {0}; create it first (tsunagi admin create-municipality)")]
    UnknownMunicipality(MunicipalityCode),
    /// The municipality exists already.
    #[error("municipality {0} exists already")]
    DuplicateMunicipality(MunicipalityCode),
    /// No such area in the municipality.
    #[error("municipality {municipality} has no area {code:?}; create it first (tsunagi admin create-area)")]
    UnknownArea {
        /// The municipality.
        municipality: MunicipalityCode,
        /// The area code.
        code: String,
    },
    /// The area exists already.
    #[error("municipality {municipality} has an area {code:?} already")]
    DuplicateArea {
        /// The municipality.
        municipality: MunicipalityCode,
        /// The area code.
        code: String,
    },
    /// No such organisation.
    #[error("no organisation {0}; create it first (tsunagi admin create-organisation)")]
    UnknownOrganisation(Uuid),
    /// The login name is taken.
    #[error("the login name {0:?} is taken")]
    DuplicateLogin(String),
    /// No staff member has this login name.
    #[error("no staff member has the login name {0:?}")]
    UnknownLogin(String),
    /// The account is disabled.
    #[error("the account {0:?} is disabled")]
    InactiveStaff(String),
    /// No such device.
    #[error("no device {0}")]
    UnknownDevice(DeviceId),
    /// No such quarantined upload.
    #[error("no quarantined upload {0}")]
    UnknownQuarantine(String),
    /// The password does not meet the policy.
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

/// Whether a store error is a unique-constraint violation (a concurrent duplicate that got
/// past the check).
fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)))
}

/// Checks a name for people: trimmed, 1 to `max` characters, no control characters.
fn check_name(field: &'static str, raw: &str, max: usize) -> Result<String, AdminError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AdminError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > max {
        return Err(AdminError::invalid(field, format!("at most {max} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(AdminError::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Checks an area code: 1 to 32 of `A-Z a-z 0-9 _ -`.
fn check_area_code(raw: &str) -> Result<String, AdminError> {
    let code = raw.trim();
    let ok = (1..=32).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(AdminError::invalid("area code", "1 to 32 characters of A-Z, a-z, 0-9, _ and - (e.g. east, 03)"));
    }
    Ok(code.to_owned())
}

/// Now, in UTC, to the microsecond (what PostgreSQL keeps; SQLite keeps the same).
fn now() -> NaiveDateTime {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6).naive_utc()
}

fn record(
    c: &mut DbConnection,
    staff: Option<&StaffId>,
    device: Option<&DeviceId>,
    action: &str,
    detail: &str,
) -> Result<(), StoreError> {
    audit::record(c, now(), staff, device, None, action, detail)
}

/// Creates a municipality.
pub fn create_municipality(db: &Database, code: MunicipalityCode, name: &str) -> Result<(), AdminError> {
    let name = check_name("municipality name", name, 100)?;
    db.write(|c| {
        if accounts::find_municipality(c, &code)?.is_some() {
            return Err(AdminError::DuplicateMunicipality(code));
        }
        let row = Municipality { code: code.to_string(), name: name.clone(), created_at: now() };
        accounts::insert_municipality(c, &row).map_err(|e| {
            if is_unique_violation(&e) {
                AdminError::DuplicateMunicipality(code)
            } else {
                e.into()
            }
        })?;
        record(c, None, None, "admin.create_municipality", &format!("municipality={code}"))?;
        Ok(())
    })
}

/// Creates an area of a municipality; returns its id. `code` is what staff accounts and case
/// documents name.
pub fn create_area(db: &Database, municipality: MunicipalityCode, code: &str, name: &str) -> Result<Uuid, AdminError> {
    let code = check_area_code(code)?;
    let name = check_name("area name", name, 100)?;
    let duplicate = || AdminError::DuplicateArea { municipality, code: code.clone() };
    db.write(|c| {
        if accounts::find_municipality(c, &municipality)?.is_none() {
            return Err(AdminError::UnknownMunicipality(municipality));
        }
        if accounts::find_area(c, &municipality, &code)?.is_some() {
            return Err(duplicate());
        }
        let id = Uuid::new_v4();
        let row = Area { id: id.to_string(), municipality: municipality.to_string(), code: code.clone(), name };
        accounts::insert_area(c, &row).map_err(|e| if is_unique_violation(&e) { duplicate() } else { e.into() })?;
        record(c, None, None, "admin.create_area", &format!("municipality={municipality} area={code} id={id}"))?;
        Ok(id)
    })
}

/// Whether an organisation is the municipality's own office or a contracted provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganisationKind {
    /// 直営: the municipality's own office.
    Direct,
    /// 委託: a contracted provider (社会福祉協議会, NPO, ...).
    Contracted,
}

impl OrganisationKind {
    /// The stored key.
    pub fn as_key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Contracted => "contracted",
        }
    }
}

impl std::str::FromStr for OrganisationKind {
    type Err = AdminError;
    fn from_str(s: &str) -> Result<Self, AdminError> {
        match s {
            "direct" => Ok(Self::Direct),
            "contracted" => Ok(Self::Contracted),
            _ => Err(AdminError::invalid("organisation kind", "direct or contracted")),
        }
    }
}

/// Creates an organisation; returns its id.
pub fn create_organisation(db: &Database, name: &str, kind: OrganisationKind) -> Result<Uuid, AdminError> {
    let name = check_name("organisation name", name, 200)?;
    db.write(|c| {
        let id = Uuid::new_v4();
        let row = Organisation { id: id.to_string(), name, kind: kind.as_key().to_owned(), created_at: now() };
        accounts::insert_organisation(c, &row)?;
        record(c, None, None, "admin.create_organisation", &format!("organisation={id} kind={}", kind.as_key()))?;
        Ok(id)
    })
}

/// A staff account to create (the password is passed apart, so that this can be printed).
#[derive(Debug, Clone, Copy)]
pub struct NewStaff<'a> {
    /// The login name (stored lowercase; 3 to 64 of `a-z 0-9 . _ - @`).
    pub login: &'a str,
    /// The name shown to people.
    pub display_name: &'a str,
    /// The role.
    pub role: Role,
    /// The organisation (from [`create_organisation`]).
    pub organisation: Uuid,
    /// The municipality.
    pub municipality: MunicipalityCode,
    /// The area code within the municipality, if the account belongs to one.
    pub area: Option<&'a str>,
}

/// Creates a staff account with a password (at least 12 characters); returns its id.
pub fn create_staff(db: &Database, new: &NewStaff<'_>, password: &str) -> Result<StaffId, AdminError> {
    let login = normalise_login(new.login).ok_or_else(|| {
        AdminError::invalid(
            "login name",
            "3 to 64 characters of a-z, 0-9, '.', '_', '-' and '@', starting with a letter or digit",
        )
    })?;
    let display_name = check_name("display name", new.display_name, 100)?;
    let area = new.area.map(check_area_code).transpose()?;
    let password_hash = password::hash_password(password)?;
    let (municipality, organisation) = (new.municipality, new.organisation);
    db.write(|c| {
        if accounts::find_municipality(c, &municipality)?.is_none() {
            return Err(AdminError::UnknownMunicipality(municipality));
        }
        if let Some(code) = &area {
            if accounts::find_area(c, &municipality, code)?.is_none() {
                return Err(AdminError::UnknownArea { municipality, code: code.clone() });
            }
        }
        if accounts::find_organisation(c, &organisation.to_string())?.is_none() {
            return Err(AdminError::UnknownOrganisation(organisation));
        }
        if accounts::find_staff_by_login(c, &login)?.is_some() {
            return Err(AdminError::DuplicateLogin(login.clone()));
        }
        let id = StaffId::new_random();
        let row = Staff {
            id: id.to_string(),
            login: login.clone(),
            display_name,
            role: new.role.as_key().to_owned(),
            organisation_id: organisation.to_string(),
            municipality: municipality.to_string(),
            area: area.clone(),
            password_hash,
            active: true,
            failed_logins: 0,
            locked_until: None,
            created_at: now(),
        };
        accounts::insert_staff(c, &row).map_err(|e| {
            if is_unique_violation(&e) {
                AdminError::DuplicateLogin(login.clone())
            } else {
                e.into()
            }
        })?;
        let detail = format!(
            "login={login} role={} municipality={municipality} organisation={organisation}{}",
            new.role.as_key(),
            area.as_ref().map(|a| format!(" area={a}")).unwrap_or_default()
        );
        record(c, Some(&id), None, "admin.create_staff", &detail)?;
        Ok(id)
    })
}

fn staff_by_login(c: &mut DbConnection, raw: &str) -> Result<Staff, AdminError> {
    let login = normalise_login(raw).ok_or_else(|| AdminError::UnknownLogin(raw.trim().to_owned()))?;
    accounts::find_staff_by_login(c, &login)?.ok_or(AdminError::UnknownLogin(login))
}

/// Sets a staff member's password (at least 12 characters) and ends every login of theirs:
/// each device must sign in again with the new password.
pub fn set_password(db: &Database, login: &str, password: &str) -> Result<(), AdminError> {
    let hash = password::hash_password(password)?;
    db.write(|c| {
        let staff = staff_by_login(c, login)?;
        let id = staff.staff_id()?;
        accounts::set_password_hash(c, &id, &hash)?;
        let mut ended = 0;
        for device in accounts::devices_of(c, &id)? {
            ended += accounts::revoke_device_tokens(c, &device.device_id()?, now())?;
        }
        record(c, Some(&id), None, "admin.set_password", &format!("login={} ended_tokens={ended}", staff.login))?;
        Ok(())
    })
}

/// Registers a device for a staff member; returns its id, which the app is configured with
/// (its 16 bytes open every actor id the device writes with).
pub fn register_device(db: &Database, login: &str, label: &str) -> Result<DeviceId, AdminError> {
    let label = check_name("device label", label, 100)?;
    db.write(|c| {
        let staff = staff_by_login(c, login)?;
        if !staff.active {
            return Err(AdminError::InactiveStaff(staff.login));
        }
        let staff_id = staff.staff_id()?;
        let id = DeviceId::new_random();
        let row =
            Device { id: id.to_string(), staff_id: staff.id.clone(), label, registered_at: now(), revoked_at: None };
        accounts::insert_device(c, &row)?;
        record(c, Some(&staff_id), Some(&id), "admin.register_device", &format!("login={}", staff.login))?;
        Ok(id)
    })
}

/// What [`revoke_device`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRevocation {
    /// When the device was revoked (now, or earlier if it already was).
    pub revoked_at: NaiveDateTime,
    /// Whether it was revoked before this call.
    pub already_revoked: bool,
    /// How many of its refresh tokens this call revoked.
    pub refresh_tokens_revoked: usize,
}

/// Revokes a device at once (a lost or stolen phone): it can no longer sign in, refresh or
/// sync, and its next request is answered `device_revoked`, telling the app to wipe its data.
/// Revoking a revoked device again changes nothing.
pub fn revoke_device(db: &Database, device: DeviceId) -> Result<DeviceRevocation, AdminError> {
    db.write(|c| {
        let row = accounts::find_device(c, &device)?.ok_or(AdminError::UnknownDevice(device))?;
        let at = now();
        let newly = accounts::revoke_device(c, &device, at)?;
        let tokens = accounts::revoke_device_tokens(c, &device, at)?;
        let staff = StaffId::parse(&row.staff_id).ok();
        record(
            c,
            staff.as_ref(),
            Some(&device),
            "admin.revoke_device",
            &format!("already_revoked={} revoked_tokens={tokens}", !newly),
        )?;
        Ok(DeviceRevocation {
            revoked_at: row.revoked_at.unwrap_or(at),
            already_revoked: !newly,
            refresh_tokens_revoked: tokens,
        })
    })
}

/// Quarantined uploads, oldest first (without their bytes); only undecided ones if
/// `undecided_only`.
pub fn list_quarantine(db: &Database, undecided_only: bool) -> Result<Vec<QuarantineSummary>, AdminError> {
    db.write(|c| {
        let rows = quarantine::list(c, undecided_only)?;
        record(
            c,
            None,
            None,
            "admin.list_quarantine",
            &format!("undecided_only={undecided_only} count={}", rows.len()),
        )?;
        Ok(rows)
    })
}

/// One quarantined upload, whole. Reading it is reading case content: it is audited with
/// the case id.
pub fn show_quarantine(db: &Database, id: &str) -> Result<QuarantinedBatch, AdminError> {
    let id = Uuid::try_parse(id.trim())
        .map_err(|_| AdminError::invalid("quarantine id", "a UUID, as `quarantine list` shows"))?
        .to_string();
    db.write(|c| {
        let batch = quarantine::find(c, &id)?.ok_or_else(|| AdminError::UnknownQuarantine(id.clone()))?;
        let case = tsunagi_sync::ids::CaseId::parse(&batch.case_id).ok();
        audit::record(c, now(), None, None, case.as_ref(), "admin.show_quarantine", &format!("quarantine={id}"))?;
        Ok(batch)
    })
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use diesel::prelude::*;

    use super::*;
    use crate::store::schema::{audit_log, devices, refresh_tokens};
    use crate::testing::{Backend, TestDatabase};

    const PASSWORD: &str = "a long enough passphrase";

    fn database(backend: Backend) -> (TestDatabase, Database) {
        let test = TestDatabase::new(backend);
        let db = Database::connect(&test.url, 4).unwrap();
        db.migrate().unwrap();
        (test, db)
    }

    fn nagareyama() -> MunicipalityCode {
        MunicipalityCode::parse("122203").unwrap()
    }

    fn accounts_are_created_checked_and_audited(backend: Backend) {
        let (_test, db) = database(backend);
        let m = nagareyama();
        create_municipality(&db, m, " 流山市 ").unwrap();
        assert!(matches!(create_municipality(&db, m, "again"), Err(AdminError::DuplicateMunicipality(_))));
        assert!(matches!(
            create_municipality(&db, MunicipalityCode::parse("122173").unwrap(), " "),
            Err(AdminError::Invalid { .. })
        ));
        let other = MunicipalityCode::parse("122173").unwrap();
        assert!(matches!(create_area(&db, other, "east", "東部"), Err(AdminError::UnknownMunicipality(_))));
        create_area(&db, m, "east", "東部").unwrap();
        assert!(matches!(create_area(&db, m, "east", "東部"), Err(AdminError::DuplicateArea { .. })));
        assert!(matches!(create_area(&db, m, "東", "東部"), Err(AdminError::Invalid { field: "area code", .. })));
        let org = create_organisation(&db, "流山市社会福祉協議会", "contracted".parse().unwrap()).unwrap();
        assert!("janitorial".parse::<OrganisationKind>().is_err());

        let mut new = NewStaff {
            login: "Sato",
            display_name: "佐藤 花子",
            role: Role::Counsellor,
            organisation: org,
            municipality: m,
            area: Some("east"),
        };
        let sato = create_staff(&db, &new, PASSWORD).unwrap();
        assert!(matches!(create_staff(&db, &new, PASSWORD), Err(AdminError::DuplicateLogin(l)) if l == "sato"));
        new.login = "tanaka";
        assert!(matches!(create_staff(&db, &new, "short"), Err(AdminError::Password(_))));
        assert!(matches!(
            create_staff(&db, &NewStaff { area: Some("west"), ..new }, PASSWORD),
            Err(AdminError::UnknownArea { .. })
        ));
        assert!(matches!(
            create_staff(&db, &NewStaff { organisation: Uuid::new_v4(), ..new }, PASSWORD),
            Err(AdminError::UnknownOrganisation(_))
        ));
        assert!(matches!(
            create_staff(&db, &NewStaff { municipality: other, ..new }, PASSWORD),
            Err(AdminError::UnknownMunicipality(_))
        ));
        assert!(matches!(
            create_staff(&db, &NewStaff { login: "x y", ..new }, PASSWORD),
            Err(AdminError::Invalid { .. })
        ));

        assert!(matches!(register_device(&db, "nobody", "phone"), Err(AdminError::UnknownLogin(_))));
        let phone = register_device(&db, "SATO", "佐藤 iPhone").unwrap();
        let stored = db.read(|c| accounts::find_device(c, &phone)).unwrap().unwrap();
        assert_eq!(stored.staff_id, sato.to_string());

        set_password(&db, "sato", "another long passphrase").unwrap();
        assert!(matches!(set_password(&db, "sato", "short"), Err(AdminError::Password(_))));

        let first = revoke_device(&db, phone).unwrap();
        assert!(!first.already_revoked);
        let second = revoke_device(&db, phone).unwrap();
        assert!(second.already_revoked);
        assert_eq!(second.revoked_at, first.revoked_at);
        assert!(matches!(revoke_device(&db, DeviceId::new_random()), Err(AdminError::UnknownDevice(_))));

        let mut conn = db.conn().unwrap();
        let revoked: Option<NaiveDateTime> =
            devices::table.find(phone.to_string()).select(devices::revoked_at).first(&mut *conn).unwrap();
        assert!(revoked.is_some());
        let log: Vec<(String, String)> = audit_log::table
            .order(audit_log::id)
            .select((audit_log::action, audit_log::detail))
            .load(&mut *conn)
            .unwrap();
        let actions: Vec<&str> = log.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            actions,
            [
                "admin.create_municipality",
                "admin.create_area",
                "admin.create_organisation",
                "admin.create_staff",
                "admin.register_device",
                "admin.set_password",
                "admin.revoke_device",
                "admin.revoke_device"
            ]
        );
        for (_, detail) in &log {
            assert!(!detail.contains("passphrase"), "{detail}");
        }
        let tokens: i64 = refresh_tokens::table.count().get_result(&mut *conn).unwrap();
        assert_eq!(tokens, 0);
    }

    #[test]
    fn accounts_are_created_checked_and_audited_sqlite() {
        accounts_are_created_checked_and_audited(Backend::Sqlite);
    }

    #[test]
    fn accounts_are_created_checked_and_audited_postgres() {
        accounts_are_created_checked_and_audited(Backend::Postgres);
    }

    fn quarantine_is_listed_and_shown(backend: Backend) {
        let (_test, db) = database(backend);
        let (case, staff, device) =
            (tsunagi_sync::ids::CaseId::new_random(), StaffId::new_random(), DeviceId::new_random());
        let id = db
            .write(|c| {
                quarantine::keep(
                    c,
                    now(),
                    quarantine::Quarantined {
                        case: &case,
                        staff: &staff,
                        device: &device,
                        code: "invalid_change",
                        violations: "[]".into(),
                        upload: vec![1, 2, 3, 4, 5],
                    },
                )
            })
            .unwrap();
        let listed = list_quarantine(&db, true).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].upload_bytes, listed[0].code.as_str()),
            (id.as_str(), 5, "invalid_change")
        );
        {
            use crate::store::schema::quarantine;
            let mut conn = db.conn().unwrap();
            diesel::update(quarantine::table.find(&id))
                .set((quarantine::decided_at.eq(now()), quarantine::decision.eq("discarded")))
                .execute(&mut *conn)
                .unwrap();
        }
        assert!(list_quarantine(&db, true).unwrap().is_empty());
        assert_eq!(list_quarantine(&db, false).unwrap().len(), 1);
        let shown = show_quarantine(&db, &id).unwrap();
        assert_eq!(shown.upload, vec![1, 2, 3, 4, 5]);
        assert_eq!(shown.decision.as_deref(), Some("discarded"));
        assert!(matches!(show_quarantine(&db, &Uuid::new_v4().to_string()), Err(AdminError::UnknownQuarantine(_))));
        assert!(matches!(show_quarantine(&db, "nope"), Err(AdminError::Invalid { .. })));
        let mut conn = db.conn().unwrap();
        let audited: Vec<Option<String>> = audit_log::table
            .filter(audit_log::action.eq("admin.show_quarantine"))
            .select(audit_log::case_id)
            .load(&mut *conn)
            .unwrap();
        assert_eq!(audited, vec![Some(case.to_string())]);
    }

    #[test]
    fn quarantine_is_listed_and_shown_sqlite() {
        quarantine_is_listed_and_shown(Backend::Sqlite);
    }

    #[test]
    fn quarantine_is_listed_and_shown_postgres() {
        quarantine_is_listed_and_shown(Backend::Postgres);
    }
}
