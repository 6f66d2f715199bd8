//! The I/O half of configuration: snapshot the process environment and read the token
//! files, so `molecule_mcp_core::config::validate` can stay a pure function.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use molecule_mcp_core::config::{FileRead, RawConfig, token_file_path};

/// Variables read besides the ones config validation knows (`molecule_mcp_core::config::VARIABLES`).
pub const EXTRA_VARIABLES: &[&str] = &["CONFIGS_DIR"];

/// True for every variable the program reads (documented in the README's table).
pub fn is_read(name: &str) -> bool {
    molecule_mcp_core::config::VARIABLES.contains(&name) || EXTRA_VARIABLES.contains(&name)
}

/// Largest token file read: a token is one line, so a bigger file is a mistake (a 3 GB
/// file must not be read into memory to find that out).
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Reads a file for the config without following the error into a panic. The size is
/// checked before reading and the read itself is bounded (the file may grow in between).
pub fn read_file(path: &Path) -> FileRead {
    use std::io::Read as _;
    let too_large =
        || FileRead::Unreadable("file is larger than 64 KiB; expected a single token".to_owned());
    let denied_or = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileRead::Missing
        } else if e.kind() == std::io::ErrorKind::PermissionDenied {
            FileRead::PermissionDenied
        } else {
            FileRead::Unreadable(e.to_string())
        }
    };
    match std::fs::metadata(path) {
        Err(e) => return denied_or(e),
        Ok(m) if !m.is_file() => return FileRead::NotRegularFile,
        Ok(m) if m.len() > MAX_TOKEN_FILE_BYTES => return too_large(),
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    match std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
    {
        Ok(n) if n as u64 > MAX_TOKEN_FILE_BYTES => too_large(),
        Ok(_) => FileRead::Contents(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Unreadable(e.to_string()),
        Err(e) => denied_or(e),
    }
}

/// Snapshot of `env` (any iterator of pairs) plus the token-file reads for `state_dir`.
pub fn raw_config(env: impl IntoIterator<Item = (String, String)>, state_dir: &Path) -> RawConfig {
    let env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| is_read(k)).collect();
    let token_file = token_file_path(&env).map(|p| read_file(Path::new(p)));
    RawConfig {
        token_file,
        state_auth_token: read_file(
            &state_dir.join(molecule_mcp_core::StateFile::AuthToken.base_name()),
        ),
        state_dir: state_dir.display().to_string(),
        env,
    }
}

/// Snapshot of the real process environment (non-UTF-8 values are skipped).
pub fn from_process(state_dir: &Path) -> RawConfig {
    raw_config(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        state_dir,
    )
}

/// Largest `--workspaces-file` accepted (10,000 workspaces take about 1.2 MB).
pub const MAX_WORKSPACES_FILE: u64 = 64 * 1024 * 1024;

/// Why `--workspaces-file` could not be used. The message names the file as given.
#[derive(Debug)]
pub enum WorkspacesFileError {
    /// `stat` or `read` failed.
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A directory, socket, …
    NotRegularFile {
        /// The path as given.
        path: PathBuf,
    },
    /// Larger than [`MAX_WORKSPACES_FILE`].
    TooLarge {
        /// The path as given.
        path: PathBuf,
    },
    /// Not UTF-8.
    NotUtf8 {
        /// The path as given.
        path: PathBuf,
    },
}

impl std::fmt::Display for WorkspacesFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkspacesFileError::Unreadable { path, error } => write!(
                f,
                "--workspaces-file '{}' cannot be read: {error}",
                path.display()
            ),
            WorkspacesFileError::NotRegularFile { path } => write!(
                f,
                "--workspaces-file '{}' is not a regular file",
                path.display()
            ),
            WorkspacesFileError::TooLarge { path } => write!(
                f,
                "--workspaces-file '{}' is larger than {} MiB",
                path.display(),
                MAX_WORKSPACES_FILE / (1024 * 1024)
            ),
            WorkspacesFileError::NotUtf8 { path } => write!(
                f,
                "--workspaces-file '{}' is not valid UTF-8",
                path.display()
            ),
        }
    }
}

impl std::error::Error for WorkspacesFileError {}

/// Puts the contents of `--workspaces-file` into `raw` as `MOLECULE_WORKSPACES`, so it is
/// validated exactly like the variable.
pub fn apply_workspaces_file(raw: &mut RawConfig, path: &Path) -> Result<(), WorkspacesFileError> {
    let unreadable = |error| WorkspacesFileError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(WorkspacesFileError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_WORKSPACES_FILE {
        return Err(WorkspacesFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    // Bounded again while reading: the file may have grown since the size check.
    let bytes = molecule_mcp_io_tokio::persist::read_bounded(path, MAX_WORKSPACES_FILE)
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::FileTooLarge {
                WorkspacesFileError::TooLarge {
                    path: path.to_path_buf(),
                }
            } else {
                unreadable(error)
            }
        })?
        .ok_or_else(|| {
            unreadable(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file disappeared",
            ))
        })?;
    let text = String::from_utf8(bytes).map_err(|_| WorkspacesFileError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    raw.env
        .insert(molecule_mcp_core::config::WORKSPACES.to_owned(), text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_file_replaces_the_variable_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("mmcp-wsfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("ws.json");
        std::fs::write(
            &file,
            r#"[{"id":"aaaaaaaa-0000-4000-8000-000000000001","token":"t"}]"#,
        )
        .expect("write");
        let mut raw = raw_config([("MOLECULE_WORKSPACES".to_owned(), "[]".to_owned())], &dir);
        apply_workspaces_file(&mut raw, &file).expect("applies");
        assert!(raw.env["MOLECULE_WORKSPACES"].contains("aaaaaaaa-0000-4000-8000-000000000001"));
        let missing = apply_workspaces_file(&mut raw, &dir.join("nope.json"))
            .expect_err("missing file")
            .to_string();
        assert!(missing.contains("nope.json"), "{missing}");
        assert!(
            apply_workspaces_file(&mut raw, &dir)
                .expect_err("a directory")
                .to_string()
                .contains("not a regular file")
        );
        std::fs::write(&file, [0xff, 0xfe]).expect("write");
        assert!(
            apply_workspaces_file(&mut raw, &file)
                .expect_err("bad utf-8")
                .to_string()
                .contains("UTF-8")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
