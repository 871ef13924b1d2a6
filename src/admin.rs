//! `tsunagi admin …`: thin wrappers over `tsunagi_server::admin`. Results (ids) go to standard
//! output, one per line, so scripts can capture them; messages go to standard error.
//! Passwords are read from a no-echo prompt (asked twice) or, with `--password-stdin`, from
//! one line of standard input; never from an argument, where `ps` and shell history would
//! show them.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::auth::password;
use tsunagi_server::store::Database;
use tsunagi_server::sync::{Assignment, SyncEngine};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, DeviceId, MunicipalityCode, StaffId};
use uuid::Uuid;

use crate::settings;

#[derive(Args)]
pub struct AdminArgs {
    /// A file of KEY=VALUE lines (only TSUNAGI_DATABASE_URL matters here); the environment
    /// overrides it.
    #[arg(long, value_name = "FILE", env = "TSUNAGI_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a municipality (by its 6-digit local government code, e.g. 122203).
    CreateMunicipality {
        /// The code, with its check digit.
        #[arg(value_parser = MunicipalityCode::parse)]
        code: MunicipalityCode,
        /// Its name, e.g. 流山市.
        name: String,
    },
    /// Create an area of a municipality; prints its id.
    CreateArea {
        /// The municipality's code.
        #[arg(value_parser = MunicipalityCode::parse)]
        municipality: MunicipalityCode,
        /// The area's code (A-Z a-z 0-9 _ -), what staff accounts name.
        code: String,
        /// Its name, e.g. 東部.
        name: String,
    },
    /// Create an organisation; prints its id.
    CreateOrganisation {
        /// Its name.
        name: String,
        /// `direct` (the municipality's own office) or `contracted`.
        #[arg(long, value_parser = parse_kind)]
        kind: OrganisationKind,
    },
    /// Create a staff account; prints its id. The password is asked for (twice, no echo).
    CreateStaff {
        /// The login name (3-64 of a-z 0-9 . _ - @; stored lowercase).
        #[arg(long)]
        login: String,
        /// The name shown to people.
        #[arg(long)]
        name: String,
        /// counsellor, supervisor, meeting_tablet or administrator.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The organisation's id (from create-organisation).
        #[arg(long)]
        organisation: Uuid,
        /// The municipality's code.
        #[arg(long, value_parser = MunicipalityCode::parse)]
        municipality: MunicipalityCode,
        /// The area's code, for staff who work in one area.
        #[arg(long)]
        area: Option<String>,
        /// Read the password from one line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a staff member's password; every device of theirs must sign in again.
    SetPassword {
        /// The login name.
        #[arg(long)]
        login: String,
        /// Read the password from one line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Register a device for a staff member; prints the device id to configure the app with.
    RegisterDevice {
        /// The staff member's login name.
        #[arg(long)]
        login: String,
        /// A label for people, e.g. "佐藤 iPhone".
        #[arg(long)]
        label: String,
    },
    /// Revoke a device at once (lost or stolen): its next request tells it to wipe its data.
    RevokeDevice {
        /// The device id.
        #[arg(value_parser = DeviceId::parse)]
        device: DeviceId,
    },
    /// Assign a case: make a staff member its primary assignee, add them to its other
    /// assignees, or remove them. Their devices receive (or purge) it on their next sync.
    Assign {
        /// The case id.
        #[arg(value_parser = CaseId::parse)]
        case: CaseId,
        /// The staff member's login name.
        #[arg(long)]
        login: String,
        /// Make them the primary assignee (主担当者).
        #[arg(long, group = "how")]
        primary: bool,
        /// Add them to the other assignees.
        #[arg(long, group = "how")]
        other: bool,
        /// Remove them from the other assignees.
        #[arg(long, group = "how")]
        remove: bool,
    },
    /// Uploads the server refused, kept for an administrator.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Rebuild the query projections of every case from its document (once after an upgrade
    /// whose release notes ask for it; safe while the server runs).
    Reproject,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined uploads not yet decided (oldest first).
    List {
        /// Include those already decided.
        #[arg(long)]
        all: bool,
    },
    /// Show one quarantined upload: who sent it, why it was refused, its changes.
    Show {
        /// The id, as `quarantine list` prints it.
        id: String,
        /// Also write the upload, exactly as received (CBOR), to this file.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
}

fn parse_kind(s: &str) -> Result<OrganisationKind, String> {
    s.parse().map_err(|_| "expected direct or contracted".to_owned())
}

fn parse_role(s: &str) -> Result<Role, String> {
    // `meeting-tablet` reads more naturally on a command line than the stored key.
    Role::from_key(&s.replace('-', "_")).map_err(|e| e.to_string())
}

pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    settings::init_tracing();
    let db = settings::database(args.config.as_deref())?;
    // Administration works on a fresh database too: bring it up to date first.
    let applied = db.migrate().context("migrations failed")?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "applied migrations");
    }
    execute(&db, args.command)?;
    Ok(ExitCode::SUCCESS)
}

fn execute(db: &Database, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateMunicipality { code, name } => {
            admin::create_municipality(db, code, &name)?;
            println!("{code}");
        }
        AdminCommand::CreateArea { municipality, code, name } => {
            println!("{}", admin::create_area(db, municipality, &code, &name)?);
        }
        AdminCommand::CreateOrganisation { name, kind } => {
            println!("{}", admin::create_organisation(db, &name, kind)?);
        }
        AdminCommand::CreateStaff { login, name, role, organisation, municipality, area, password_stdin } => {
            let password = new_password(&login, password_stdin)?;
            let staff = NewStaff {
                login: &login,
                display_name: &name,
                role,
                organisation,
                municipality,
                area: area.as_deref(),
            };
            println!("{}", admin::create_staff(db, &staff, &password)?);
        }
        AdminCommand::SetPassword { login, password_stdin } => {
            let password = new_password(&login, password_stdin)?;
            admin::set_password(db, &login, &password)?;
            eprintln!("password set; every device of {login} must sign in again");
        }
        AdminCommand::RegisterDevice { login, label } => {
            println!("{}", admin::register_device(db, &login, &label)?);
        }
        AdminCommand::RevokeDevice { device } => {
            let done = admin::revoke_device(db, device)?;
            if done.already_revoked {
                eprintln!("device {device} was already revoked at {} UTC", done.revoked_at.format("%Y-%m-%d %H:%M:%S"));
            } else {
                eprintln!(
                    "device {device} revoked; {} refresh token(s) revoked; its next request will tell it to wipe its data",
                    done.refresh_tokens_revoked
                );
            }
        }
        AdminCommand::Assign { case, login, primary, other, remove } => {
            let how = match (primary, other, remove) {
                (true, false, false) => Assignment::Primary,
                (false, true, false) => Assignment::Other,
                (false, false, true) => Assignment::Remove,
                _ => bail!("say how: --primary, --other or --remove"),
            };
            let staff = db
                .read(|conn| tsunagi_server::store::accounts::find_staff_by_login(conn, &login.trim().to_lowercase()))?
                .with_context(|| format!("no staff member with login {login}"))?;
            let staff = StaffId::parse(&staff.id).context("a stored staff id does not parse")?;
            SyncEngine::new(db.clone()).assign(&case, &staff, how, None)?;
            eprintln!("case {case}: assignment recorded; devices see it on their next sync");
        }
        AdminCommand::Reproject => {
            let count = tsunagi_server::store::projections::reproject_all(db)?;
            eprintln!("{count} case(s) reprojected");
        }
        AdminCommand::Quarantine(QuarantineCommand::List { all }) => {
            let rows = admin::list_quarantine(db, !all)?;
            if rows.is_empty() {
                eprintln!("no {}quarantined uploads", if all { "" } else { "undecided " });
            } else {
                println!("id\treceived_at\tcase_id\tstaff_id\tdevice_id\tcode\tbytes\tdecision");
            }
            for q in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    q.id,
                    q.received_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    q.case_id,
                    q.staff_id,
                    q.device_id,
                    q.code,
                    q.upload_bytes,
                    q.decision.as_deref().unwrap_or("-")
                );
            }
        }
        AdminCommand::Quarantine(QuarantineCommand::Show { id, save }) => {
            let batch = admin::show_quarantine(db, &id)?;
            if let Some(path) = &save {
                std::fs::write(path, &batch.upload).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {} bytes to {}", batch.upload.len(), path.display());
            }
            println!("{}", serde_json::to_string_pretty(&describe(&batch))?);
        }
    }
    Ok(())
}

/// A quarantined upload for people: metadata, the violations, and a summary of each change
/// (hash, author, sequence number, time); never the case content itself.
fn describe(batch: &tsunagi_server::store::quarantine::QuarantinedBatch) -> serde_json::Value {
    use serde_json::json;
    let violations = serde_json::from_str::<serde_json::Value>(&batch.violations)
        .unwrap_or_else(|_| serde_json::Value::String(batch.violations.clone()));
    let upload = match tsunagi_sync::wire::decode_cbor::<tsunagi_sync::wire::DocumentUpload>(&batch.upload) {
        Ok(upload) => {
            let changes: Vec<serde_json::Value> = upload
                .changes
                .iter()
                .map(|bytes| match tsunagi_sync::validation::decode_change(bytes.as_slice().to_vec()) {
                    Ok(change) => json!({
                        "hash": change.hash().to_string(),
                        "actor": change.actor_id().to_hex_string(),
                        "seq": change.seq(),
                        "time": change.timestamp(),
                        "deps": change.deps().len(),
                        "bytes": bytes.len(),
                    }),
                    Err(e) => json!({ "bytes": bytes.len(), "error": e }),
                })
                .collect();
            json!({
                "since": upload.since.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                "changes": changes,
                "sync_message_bytes": upload.sync_message.as_ref().map(|m| m.len()),
            })
        }
        Err(e) => json!({ "error": format!("the upload does not decode: {e}") }),
    };
    json!({
        "id": batch.id,
        "received_at": batch.received_at.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
        "case_id": batch.case_id,
        "staff_id": batch.staff_id,
        "device_id": batch.device_id,
        "code": batch.code,
        "violations": violations,
        "decided_at": batch.decided_at.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
        "decision": batch.decision,
        "upload_bytes": batch.upload.len(),
        "upload": upload,
    })
}

/// A new password: one line of standard input, or asked twice without echo.
fn new_password(login: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password).to_owned();
        if password.is_empty() {
            bail!("no password on standard input (expected one line)");
        }
        password
    } else {
        if !std::io::stderr().is_terminal() && !Path::new("/dev/tty").exists() {
            bail!("no terminal to ask for the password on; use --password-stdin");
        }
        let first = rpassword::prompt_password(format!("New password for {login}: "))
            .context("cannot ask for the password (no terminal? use --password-stdin)")?;
        password::check_policy(&first)?;
        let second = rpassword::prompt_password("Repeat it: ").context("cannot ask for the password")?;
        if first != second {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    };
    password::check_policy(&password)?;
    Ok(password)
}
