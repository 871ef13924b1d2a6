//! `DIR/session.json`: who this field client is signed in as (server, device, staff, role,
//! refresh token). Written atomically with mode 0600; the access token is never stored.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, StaffId};
use tsunagi_sync::validation::Actor;

/// The name of the session file in the store directory.
pub const SESSION_FILE: &str = "session.json";

/// A signed-in field client.
#[derive(Debug, Clone)]
pub struct FieldSession {
    pub server: String,
    pub device: DeviceId,
    pub staff: StaffId,
    pub role: Role,
    pub refresh_token: String,
}

impl FieldSession {
    /// The actor editing replicas.
    pub fn actor(&self) -> Actor {
        Actor { staff: self.staff, device: self.device, role: self.role }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(SESSION_FILE)
    }

    /// Reads `DIR/session.json`; a missing file means "not signed in".
    pub fn load(dir: &Path) -> anyhow::Result<FieldSession> {
        let path = Self::path(dir);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(anyhow!(
                    "not signed in: no {} (run `tsunagi field login --dir {}` first)",
                    path.display(),
                    dir.display()
                ))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |name: &str| -> anyhow::Result<String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{}: missing {name}", path.display()))
        };
        Ok(FieldSession {
            server: field("server")?,
            device: DeviceId::parse(&field("device_id")?).map_err(|e| anyhow!("{}: device_id: {e}", path.display()))?,
            staff: StaffId::parse(&field("staff_id")?).map_err(|e| anyhow!("{}: staff_id: {e}", path.display()))?,
            role: Role::from_key(&field("role")?).map_err(|e| anyhow!("{}: role: {e}", path.display()))?,
            refresh_token: field("refresh_token")?,
        })
    }

    /// Writes `DIR/session.json` (mode 0600) crash-safely: a fresh temporary file, fsynced,
    /// renamed over the old one, then the directory fsynced.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = Self::path(dir);
        let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
        let body = json!({
            "server": self.server,
            "device_id": self.device.to_string(),
            "staff_id": self.staff.to_string(),
            "role": self.role.as_key(),
            "refresh_token": self.refresh_token,
        });
        let mut bytes = serde_json::to_vec_pretty(&body)?;
        bytes.push(b'\n');
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(&bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
        Ok(())
    }

    /// Deletes the session file (after a wipe).
    pub fn remove(dir: &Path) -> anyhow::Result<()> {
        match fs::remove_file(Self::path(dir)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", Self::path(dir).display())),
        }
    }
}
