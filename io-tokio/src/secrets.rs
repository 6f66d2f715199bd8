//! The process's one [`Redactor`]: every secret this process holds is remembered here as
//! soon as it is known (configured tokens at start-up, tokens and inbound secrets restored
//! from or written to the state directory), and every text the process shows — each stderr
//! write (`logging::write_stderr`) and each MCP output line — passes [`redact`] on its way
//! out. One point on the way out, so no path (a platform error body that echoes the
//! `Authorization` header, a URL, a debug line) can skip it.

use std::sync::{PoisonError, RwLock};

use molecule_mcp_core::redact::Redactor;

static KNOWN: RwLock<Redactor> = RwLock::new(Redactor::new());

/// Adds a secret value (whitespace around it is ignored).
pub fn remember(secret: &str) {
    KNOWN
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remember(secret);
}

/// `text` with every remembered secret and every secret-looking pattern replaced.
pub fn redact(text: &str) -> String {
    KNOWN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .redact(text)
}
