//! Durable, private file writes: temp file (unique name, mode 0600 from creation) → write
//! → fsync → rename over the target → fsync the directory. A reader never sees a partial
//! file, concurrent writers never share a temp name, every write is fsync'd, and the
//! value is never world-readable, not even transiently.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Atomically replaces `path` with `contents` (mode 0600), creating parent dirs (0700).
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    crate::state_dir::create_private_dir(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let result = write_then_rename(&tmp, path, contents);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc_o_nofollow());
    }
    let mut file = options.open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Best effort: some filesystems refuse fsync on directories.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Appends `contents` to `path` (created mode 0600 when missing, emptied first when
/// `restart`) and fsyncs it; the cost depends on `contents` only. A restart or a creation
/// also fsyncs the directory, so the file's name is as durable as its data.
pub fn append_private(path: &Path, contents: &[u8], restart: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let created = !path.exists();
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if restart {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc_o_nofollow());
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_data()?;
    if (restart || created)
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Best effort, as in `write_then_rename`.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn libc_o_nofollow() -> i32 {
    // O_NOFOLLOW on Linux (all architectures we build for); avoids a libc dependency.
    #[cfg(target_os = "linux")]
    {
        0o400000
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Moves the state file `path` aside to a backup next to it, named by
/// [`molecule_mcp_core::state_layout::set_aside_name`] with the current Unix time, never
/// replacing an existing backup. Returns the backup's path.
pub fn set_aside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shown = path.to_string_lossy();
    for attempt in 1..=100 {
        let backup = std::path::PathBuf::from(molecule_mcp_core::state_layout::set_aside_name(
            &shown, secs, attempt,
        ));
        // One process owns the state dir, so checking first cannot race another writer.
        if backup.symlink_metadata().is_err() {
            std::fs::rename(path, &backup)?;
            return Ok(backup);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "100 backups of this second already exist",
    ))
}

/// Reads a small text file, trimmed; `None` when missing, unreadable or blank.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_private_mode_and_replaces() {
        let dir = std::env::temp_dir()
            .join(format!("mmcp-persist-{}", std::process::id()))
            .join("sub");
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(".platform_inbound_secret");
        write_private_atomic(&path, b"first").unwrap();
        write_private_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn append_adds_lines_and_restart_empties_first() {
        let dir = std::env::temp_dir().join(format!("mmcp-append-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".mcp_inbox_journal");
        append_private(&path, b"one\n", false).unwrap();
        append_private(&path, b"two\n", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        append_private(&path, b"three\n", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn set_aside_keeps_every_backup() {
        let dir = std::env::temp_dir().join(format!("mmcp-aside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".mcp_inbox_state");
        std::fs::write(&path, b"{broken").unwrap();
        let first = set_aside(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        let second = set_aside(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first).unwrap(), b"{broken");
        assert!(std::fs::read(&second).unwrap().is_empty());
        assert!(!path.exists());
        assert!(
            first
                .to_string_lossy()
                .contains(".mcp_inbox_state.corrupt-")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Reads `path` whole if it holds at most `max` bytes: `Ok(None)` when it does not exist,
/// `Err` with [`std::io::ErrorKind::FileTooLarge`] past `max` (the read itself stops at
/// `max + 1` bytes, so a file that grows meanwhile cannot make it unbounded).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        )
    };
    if file.metadata()?.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn bounded_reads_refuse_large_files_and_report_missing_ones() {
        let dir = std::env::temp_dir().join(format!("mmcp-bounded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let small = dir.join("small");
        std::fs::write(&small, b"12345").expect("write");
        assert_eq!(
            read_bounded(&small, 5).expect("read"),
            Some(b"12345".to_vec())
        );
        let err = read_bounded(&small, 4).expect_err("too large");
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(
            read_bounded(&dir.join("missing"), 4).expect("missing"),
            None
        );
        // A sparse 3 GB file is refused from its metadata, without reading it.
        let huge = dir.join("huge");
        std::fs::File::create(&huge)
            .and_then(|f| f.set_len(3 * 1024 * 1024 * 1024))
            .expect("sparse");
        let err = read_bounded(&huge, 64 * 1024).expect_err("huge");
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
