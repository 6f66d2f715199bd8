//! Where molecule-mcp keeps its files, resolved **once** at start-up:
//!
//! 1. `CONFIGS_DIR` when non-blank (created with parents, mode 0700, if missing);
//! 2. else `/configs` when it exists and is writable (the in-container layout);
//! 3. else `$HOME/.molecule-workspace` (created 0700).
//!
//! What is kept there, and under which names, is `molecule_mcp_core::state_layout`.

use std::path::{Path, PathBuf};

/// Why no state directory could be resolved.
#[derive(Debug)]
pub struct StateDirError(pub String);

impl std::fmt::Display for StateDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolves the state directory from the given environment lookups, creating it when needed.
pub fn resolve(configs_dir: Option<&str>, home: Option<&str>) -> Result<PathBuf, StateDirError> {
    let path = locate(configs_dir, home)?;
    create_private_dir(&path).map_err(|e| {
        StateDirError(match configs_dir.map(str::trim).filter(|d| !d.is_empty()) {
            Some(dir) => format!("CONFIGS_DIR='{dir}' cannot be created: {e}"),
            None => format!("cannot create {}: {e}", path.display()),
        })
    })?;
    Ok(path)
}

/// Where the state directory is (or would be), without creating anything: for `doctor`,
/// which reports on a setup and must leave the machine as it found it.
pub fn locate(configs_dir: Option<&str>, home: Option<&str>) -> Result<PathBuf, StateDirError> {
    if let Some(dir) = configs_dir.map(str::trim).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let configs = Path::new("/configs");
    if configs.is_dir() && is_writable(configs) {
        return Ok(configs.to_path_buf());
    }
    let home = home.map(str::trim).filter(|h| !h.is_empty()).ok_or_else(|| {
        StateDirError("neither CONFIGS_DIR nor HOME is set, so there is no place for molecule-mcp's state; set CONFIGS_DIR".to_owned())
    })?;
    Ok(Path::new(home).join(".molecule-workspace"))
}

/// [`locate`] from the process environment.
pub fn locate_from_env() -> Result<PathBuf, StateDirError> {
    let configs = std::env::var("CONFIGS_DIR").ok();
    let home = std::env::var("HOME").ok();
    locate(configs.as_deref(), home.as_deref())
}

/// Resolves from the process environment.
pub fn resolve_from_env() -> Result<PathBuf, StateDirError> {
    let configs = std::env::var("CONFIGS_DIR").ok();
    let home = std::env::var("HOME").ok();
    resolve(configs.as_deref(), home.as_deref())
}

/// Creates `path` (and parents) with mode 0700 for every directory it creates.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

fn is_writable(dir: &Path) -> bool {
    // Probe by creating a uniquely named file: permission bits alone lie for root and ACLs.
    let probe = dir.join(format!(".molecule-mcp-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mmcp-statedir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn explicit_configs_dir_wins_and_is_created_private() {
        let dir = tmp("explicit").join("nested");
        let got = resolve(Some(dir.to_str().unwrap()), Some("/nonexistent-home")).unwrap();
        assert_eq!(got, dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }

    #[test]
    fn blank_configs_dir_falls_back_to_home() {
        if Path::new("/configs").is_dir() {
            return; // the container layout takes precedence on such machines
        }
        let home = tmp("home");
        std::fs::create_dir_all(&home).unwrap();
        let got = resolve(Some("   "), Some(home.to_str().unwrap())).unwrap();
        assert_eq!(got, home.join(".molecule-workspace"));
        assert!(got.is_dir());
    }
}
