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
    probe_write(dir).is_ok()
}

/// Checks that files can really be created in `dir` (a probe file is written and removed):
/// permission bits alone lie for root, ACLs and read-only mounts. The error names the
/// directory and says how to fix it, for the exit-2 message at start-up.
pub fn check_writable(dir: &Path) -> Result<(), StateDirError> {
    probe_write(dir).map_err(|e| {
        let shown = dir.display();
        StateDirError(format!(
            "the state directory {shown} is not writable ({e}), so queued messages and handled ids could not be \
             saved. Fix: make it writable for this user (e.g. `chmod u+rwx {shown}`, or check that its file system \
             is not mounted read-only or full), or set CONFIGS_DIR to a writable directory"
        ))
    })
}

/// Creates, writes and removes a uniquely named file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let probe = dir.join(format!(".molecule-mcp-probe-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    // Remove whatever was created, even when the write itself failed.
    let _ = std::fs::remove_file(&probe);
    written
}

/// Warnings for secrets that other local users could read: the state directory (it holds
/// minted tokens and the inbox) and `token_file`, when their mode grants group or others
/// any access. Each names the path and the `chmod` that fixes it. Nothing is changed: the
/// operator may share them on purpose.
pub fn permission_warnings(state_dir: &Path, token_file: Option<&Path>) -> Vec<String> {
    let mut warnings = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |path: &Path, what: &str, fix: &str| {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warnings.push(format!(
                        "{what} {} is accessible to other users (mode {mode:03o}); it holds workspace tokens. \
                         Fix: chmod {fix} {}",
                        path.display(),
                        path.display()
                    ));
                }
            }
        };
        check(state_dir, "the state directory", "700");
        if let Some(file) = token_file {
            check(file, "the token file", "600");
        }
    }
    #[cfg(not(unix))]
    let _ = (state_dir, token_file);
    warnings
}

/// The soft limit on open files (`Max open files` in `/proc/self/limits`), if it can be read.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    fn the_write_probe_names_the_directory_and_the_fix() {
        let dir = tmp("probe");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(check_writable(&dir).is_ok());
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "the probe file is removed"
        );
        // A directory that does not exist cannot be written, whoever runs the test.
        let missing = dir.join("missing");
        let err = check_writable(&missing).unwrap_err().0;
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("Fix:") && err.contains("CONFIGS_DIR"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn shared_state_dirs_and_token_files_are_named_with_their_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp("modes");
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "t").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(permission_warnings(&dir, Some(&token)).is_empty());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = permission_warnings(&dir, Some(&token));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains(&format!("chmod 700 {}", dir.display())),
            "{w:?}"
        );
        assert!(
            w[1].contains(&format!("chmod 600 {}", token.display())),
            "{w:?}"
        );
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
