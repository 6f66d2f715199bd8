//! [`TempDir`]: a fresh private directory (mode 0700) under the system temp dir, removed on
//! drop. The demo gives the `molecule-mcp` it spawns one as its `CONFIGS_DIR` (and so do the
//! end-to-end tests, the bench and the soak), so no run ever touches a real state directory
//! or another run's files.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A private temporary directory, removed (with its contents) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    text: String,
}

impl TempDir {
    /// Creates `<tmp>/molecule-mcp-<tag>-<pid>-<n>-<nanos>`, unique per call.
    pub fn new(tag: &str) -> io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "molecule-mcp-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // Environment variables carry the path as text: refuse one that is not UTF-8.
        let text = path
            .to_str()
            .ok_or_else(|| io::Error::other(format!("temp dir {} is not UTF-8", path.display())))?
            .to_owned();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        Ok(TempDir { path, text })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory as text (for `CONFIGS_DIR`).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_unique_and_removed_on_drop() {
        let a = TempDir::new("selftest").expect("a");
        let b = TempDir::new("selftest").expect("b");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), b"x").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert_eq!(b.as_str(), b.path().to_str().expect("utf-8"));
    }
}
