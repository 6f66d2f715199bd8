//! The I/O half of configuration: snapshot the process environment and read the token
//! files, so `molecule_mcp_core::config::validate` can stay a pure function.

use std::collections::BTreeMap;
use std::path::Path;

use molecule_mcp_core::config::{FileRead, RawConfig, token_file_path};

/// Variables read besides the ones config validation knows (`molecule_mcp_core::config::VARIABLES`).
pub const EXTRA_VARIABLES: &[&str] = &["CONFIGS_DIR", "DELEGATION_SYNC_VIA_INBOX", "DELEGATION_TIMEOUT", "WORKSPACE_TIER"];

/// True for every variable the program reads (documented in the README's table).
pub fn is_read(name: &str) -> bool {
    molecule_mcp_core::config::VARIABLES.contains(&name) || EXTRA_VARIABLES.contains(&name)
}

/// Reads a file for the config without following the error into a panic.
pub fn read_file(path: &Path) -> FileRead {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return FileRead::PermissionDenied,
        Err(e) => return FileRead::Unreadable(e.to_string()),
        Ok(m) if !m.is_file() => return FileRead::NotRegularFile,
        Ok(_) => {}
    }
    // Tokens are tiny; refuse to slurp something huge by mistake.
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() > 64 * 1024 => FileRead::Unreadable("file is larger than 64 KiB; expected a single token".to_owned()),
        Ok(bytes) => FileRead::Contents(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => FileRead::PermissionDenied,
        Err(e) => FileRead::Unreadable(e.to_string()),
    }
}

/// Snapshot of `env` (any iterator of pairs) plus the token-file reads for `state_dir`.
pub fn raw_config(env: impl IntoIterator<Item = (String, String)>, state_dir: &Path) -> RawConfig {
    let env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| is_read(k)).collect();
    let token_file = token_file_path(&env).map(|p| read_file(Path::new(p)));
    RawConfig {
        token_file,
        state_auth_token: read_file(&state_dir.join(".auth_token")),
        state_dir: state_dir.display().to_string(),
        env,
    }
}

/// Snapshot of the real process environment (non-UTF-8 values are skipped).
pub fn from_process(state_dir: &Path) -> RawConfig {
    raw_config(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))), state_dir)
}
