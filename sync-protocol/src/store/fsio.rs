//! Crash-safe file primitives: private files and directories, atomic replace, durable delete.
//!
//! Every write goes to `<name>.tmp` in the same directory (created fresh, mode 0600),
//! is flushed with `sync_all`, renamed over `<name>`, and the directory is then fsynced so
//! that the rename itself survives a power cut. A crash at any point leaves either the old
//! `<name>` or the new one, never a mix; at worst a stray `<name>.tmp`, which
//! [`remove_temporaries`] deletes the next time the store is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::error::{io_error, StoreError};

/// The suffix of temporary files.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Creates `path` (and its parents) as a directory only its owner can enter (0700 on Unix),
/// and narrows the mode of an existing one that is open to group or others.
///
/// When the directory did not exist, its parent is fsynced so that the new entry is durable.
pub(super) fn ensure_private_dir(path: &Path) -> Result<(), StoreError> {
    let existed = path.is_dir();
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|e| io_error("create directory", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|e| io_error("read metadata of", path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error("restrict permissions (0700) of", path, e))?;
        }
    }
    if !existed {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Options that create a file readable and writable by its owner only (0600 on Unix).
pub(super) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Replaces `dir/name` with `bytes`, atomically and durably (see the module doc).
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    // A leftover temporary (we hold the store lock, so nobody else is writing it) is removed
    // so that `create_new` below makes a fresh file with our mode, whatever the old one had.
    remove_if_exists(&tmp)?;
    let written = (|| {
        let mut file =
            private_options().write(true).create_new(true).open(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        file.write_all(bytes).map_err(|e| io_error("write", &tmp, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &target).map_err(|e| io_error("rename into place", &target, e))
    })();
    if written.is_err() {
        // Best effort: the old `name` is intact either way, and a stray temporary is
        // removed at the next open.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Deletes `path` if it exists, then fsyncs `dir` (its directory) so that the deletion is
/// durable. Returns whether there was a file to delete.
pub(super) fn remove_durably(path: &Path, dir: &Path) -> Result<bool, StoreError> {
    let removed = remove_if_exists(path)?;
    if removed {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Deletes `path` if it exists (no fsync). Returns whether there was a file to delete.
pub(super) fn remove_if_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("delete", path, e)),
    }
}

/// Deletes every regular file named `*.tmp` in `dir` (temporaries a crash left behind) and
/// fsyncs `dir` if it deleted any. Returns how many it deleted.
pub(super) fn remove_temporaries(dir: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error("list", dir, e))? {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let is_tmp = entry.file_name().to_str().is_some_and(|n| n.ends_with(TMP_SUFFIX));
        let is_file = entry.file_type().map_err(|e| io_error("read file type of", entry.path(), e))?.is_file();
        if is_tmp && is_file && remove_if_exists(&entry.path())? {
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Fsyncs a directory, so that the creations, renames and deletions in it are durable.
///
/// On Unix the directory is opened and `sync_all()`ed; a file system that does not support
/// that (`ErrorKind::Unsupported`) is tolerated, any other error is reported. Elsewhere (Windows)
/// the standard library cannot open a directory for syncing, and NTFS journals the metadata of a
/// rename itself, so this does nothing.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
            Err(e) => Err(io_error("fsync directory", dir, e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Reads a whole file; `None` if it does not exist.
pub(super) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Opens (creating it if needed, mode 0600) the lock file. The caller locks it.
pub(super) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("open lock file", path, e))
}
