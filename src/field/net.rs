//! Talking to the server: `login` and `sync`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::signal::unix::{signal, SignalKind};
use tsunagi_sync::client::{ClientError, SyncClient};
use tsunagi_sync::ids::DeviceId;
use tsunagi_sync::session::{CaseEvent, SyncReport, SyncSession};
use tsunagi_sync::store::ReplicaStore;

use super::session::FieldSession;

/// The exit code of a revoked device whose store was wiped.
const EXIT_WIPED: u8 = 3;

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    Ok(password)
}

pub fn login(dir: &Path, server: &str, login: &str, device: &str, password_stdin: bool) -> anyhow::Result<ExitCode> {
    let device = DeviceId::parse(device).map_err(|e| anyhow!("--device {device:?}: {e}"))?;
    let password = read_password(password_stdin)?;
    let client = SyncClient::new(server).context("cannot use the server URL")?;
    let tokens = runtime()?.block_on(client.login(login, &password, device)).map_err(|e| match e {
        ClientError::Unauthenticated { .. } => {
            anyhow!("sign-in failed: wrong login or password, or device {device} is not registered to {login}")
        }
        e if e.requires_wipe() => anyhow!("sign-in failed: device {device} has been revoked"),
        e => anyhow::Error::new(e).context("sign-in failed"),
    })?;
    let session = FieldSession {
        server: client.base_url().to_owned(),
        device,
        staff: tokens.staff_id,
        role: tokens.role,
        refresh_token: tokens.refresh_token,
    };
    session.save(dir)?;
    println!("signed in as staff {} ({}) on device {device}", session.staff, session.role);
    Ok(ExitCode::SUCCESS)
}

/// One line summing up a sync.
fn summary(report: &SyncReport) -> String {
    let count = |f: fn(&CaseEvent) -> bool| report.events.iter().filter(|r| f(&r.event)).count();
    format!(
        "uploaded {}, received {}, assigned {}, purged {}, refused {}",
        report.uploaded(),
        report.received(),
        count(|e| matches!(e, CaseEvent::Assigned { .. })),
        count(|e| matches!(e, CaseEvent::Purged { .. })),
        count(|e| matches!(e, CaseEvent::Refused { .. })),
    )
}

/// The refusals and other events a counsellor must hear about.
fn print_details(report: &SyncReport) {
    for r in &report.events {
        match &r.event {
            CaseEvent::Refused { error, dropped, kept, .. } => {
                println!("  case {} refused ({}): {}", r.case_id, error.code, error.message);
                for v in &error.violations {
                    println!("    {} at {}: {}", v.code, v.path, v.message);
                }
                if *dropped > 0 {
                    let kept = kept.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                    println!("    {dropped} change(s) left the replica; kept in {kept}");
                }
            }
            CaseEvent::TooLarge { single_change: true, .. } => {
                println!("  case {}: a single change is larger than the server accepts", r.case_id)
            }
            CaseEvent::NotFound { .. } => println!("  case {}: not found on the server (kept here)", r.case_id),
            CaseEvent::Unavailable { .. } => {
                println!("  case {}: the server could not take it now (kept here; sent again next time)", r.case_id)
            }
            CaseEvent::PurgePending { unacknowledged, .. } => {
                println!("  case {}: to be deleted once {unacknowledged} change(s) are synced", r.case_id)
            }
            CaseEvent::Failed { reason } => {
                println!("  case {}: the server's answer was unusable: {reason}", r.case_id)
            }
            _ => {}
        }
    }
}

/// A progress bar on stderr while a sync brings many cases at once (a first sync, a large
/// reassignment): shown only when the server says more cases are to come.
#[derive(Default)]
struct Progress {
    arrived: usize,
    shown: bool,
}

impl Progress {
    const WIDTH: usize = 30;

    fn round(&mut self, round: &SyncReport) {
        self.arrived += round.events.iter().filter(|e| matches!(e.event, CaseEvent::Assigned { .. })).count();
        let pending = round.pending_assigned as usize;
        if pending == 0 && !self.shown {
            return;
        }
        let total = self.arrived + pending;
        let filled = (self.arrived * Self::WIDTH).checked_div(total).unwrap_or(Self::WIDTH);
        eprint!(
            "\rreceiving cases [{}{}] {}/{}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.arrived,
            total
        );
        self.shown = true;
        if pending == 0 {
            eprintln!();
        }
    }
}

enum Round {
    Done(SyncReport),
    Wiped,
}

struct Syncer {
    dir: std::path::PathBuf,
    client: SyncClient,
    session: FieldSession,
    sync: SyncSession,
    store: Option<ReplicaStore>,
    access: Option<String>,
}

impl Syncer {
    /// New tokens from the refresh token; the rotated refresh token is saved before use.
    async fn refresh(&mut self) -> Result<String, ClientError> {
        let tokens = self.client.refresh(&self.session.refresh_token).await?;
        self.session.refresh_token = tokens.refresh_token;
        self.session.save(&self.dir).map_err(|e| ClientError::Config(format!("{e:#}")))?;
        self.access = Some(tokens.access_token.clone());
        Ok(tokens.access_token)
    }

    async fn round(&mut self) -> Result<Round, ClientError> {
        let result = self.try_round().await;
        match result {
            Err(e) if e.requires_wipe() => {
                if let Some(store) = self.store.take() {
                    store.wipe()?;
                }
                let _ = FieldSession::remove(&self.dir);
                Ok(Round::Wiped)
            }
            other => other.map(Round::Done),
        }
    }

    async fn try_round(&mut self) -> Result<SyncReport, ClientError> {
        let access = match self.access.clone() {
            Some(a) => a,
            None => self.refresh().await?,
        };
        let store = self.store.as_mut().expect("the store is open");
        let mut progress = Progress::default();
        match self.client.sync_with_progress(&access, &mut self.sync, store, |r| progress.round(r)).await {
            Err(ClientError::TokenExpired) => {
                let access = self.refresh().await?;
                let store = self.store.as_mut().expect("the store is open");
                self.client.sync_with_progress(&access, &mut self.sync, store, |r| progress.round(r)).await
            }
            other => other,
        }
    }
}

/// How long a round may go on after SIGINT/SIGTERM asked the client to stop: enough for a
/// request in flight to be answered and recorded, not for a round of retries against a server
/// that is down.
const GRACE: Duration = Duration::from_secs(10);

/// SIGINT and SIGTERM, caught (from the start of `sync`, once or periodic).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// What became of one round.
enum Outcome {
    Finished(Result<Round, ClientError>),
    /// Stopped by a second signal, or at the end of [`GRACE`]: dropped at an `await` (waiting
    /// for the server, or between retries), never inside a write to the store, which is
    /// synchronous. What the server had not acknowledged stays pending for the next sync.
    Abandoned,
}

/// Runs one round; a first signal gives it [`GRACE`] to finish and sets `stop`.
async fn run_round(syncer: &mut Syncer, signals: &mut Signals, stop: &mut bool) -> Outcome {
    let round = syncer.round();
    tokio::pin!(round);
    if !*stop {
        tokio::select! {
            result = &mut round => return Outcome::Finished(result),
            _ = signals.recv() => {
                *stop = true;
                eprintln!(
                    "stopping: finishing the current sync (at most {} s; press Ctrl-C again to stop at once)",
                    GRACE.as_secs()
                );
            }
        }
    }
    tokio::select! {
        result = &mut round => Outcome::Finished(result),
        _ = signals.recv() => Outcome::Abandoned,
        _ = tokio::time::sleep(GRACE) => Outcome::Abandoned,
    }
}

/// The exit code of a sync stopped by a signal before it finished (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

const ABANDONED: &str =
    "the sync was interrupted; nothing is lost: what the server did not acknowledge goes up with the next sync";

pub fn sync(dir: &Path, every: Option<u64>) -> anyhow::Result<ExitCode> {
    let session = FieldSession::load(dir)?;
    let store = ReplicaStore::open(dir).with_context(|| format!("cannot open the replica store {}", dir.display()))?;
    let client = SyncClient::new(&session.server).context("cannot use the server URL")?;
    let mut syncer =
        Syncer { dir: dir.to_path_buf(), client, session, sync: SyncSession::new(), store: Some(store), access: None };
    runtime()?.block_on(async move {
        let mut signals = Signals::catch()?;
        let mut stop = false;
        let Some(seconds) = every else {
            return match run_round(&mut syncer, &mut signals, &mut stop).await {
                Outcome::Finished(result) => match result.context("sync failed")? {
                    Round::Done(report) => {
                        println!("{}", summary(&report));
                        print_details(&report);
                        Ok(ExitCode::SUCCESS)
                    }
                    Round::Wiped => Ok(wiped(dir)),
                },
                Outcome::Abandoned => {
                    eprintln!("{ABANDONED}");
                    Ok(ExitCode::from(EXIT_INTERRUPTED))
                }
            };
        };
        let interval = Duration::from_secs(seconds.max(1));
        loop {
            match run_round(&mut syncer, &mut signals, &mut stop).await {
                Outcome::Finished(Ok(Round::Done(report))) => {
                    println!("{}", summary(&report));
                    print_details(&report);
                }
                Outcome::Finished(Ok(Round::Wiped)) => return Ok(wiped(dir)),
                Outcome::Finished(Err(e)) if e.requires_sign_in() => {
                    return Err(anyhow::Error::new(e).context("sync failed: sign in again"));
                }
                Outcome::Finished(Err(e)) => {
                    // The client has retried already; try again next round.
                    syncer.access = None;
                    println!("sync failed: {}", format!("{e:#}").replace('\n', " "));
                }
                Outcome::Abandoned => {
                    eprintln!("{ABANDONED}");
                    break;
                }
            }
            if stop {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = signals.recv() => break,
            }
        }
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn wiped(dir: &Path) -> ExitCode {
    eprintln!("this device has been revoked: its replica store {} and session were wiped; sync stopped", dir.display());
    ExitCode::from(EXIT_WIPED)
}
