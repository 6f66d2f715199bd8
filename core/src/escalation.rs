//! The heartbeat auth-failure ladder, as a pure function of the number of
//! consecutive 401/403 answers, plus the operator-facing texts.
//!
//! * `n < 3`: WARNING every time (could be a transient blip);
//! * `n == 3`, and then every 20 ticks (`n = 23, 43, …`): a loud, actionable ERROR, so a
//!   session that started tailing logs after the first ERROR still sees one;
//! * every other `n`: nothing (no spam between re-logs).
//!
//! Only 401/403 count. 5xx, 429 and transport errors never touch the counter (that would
//! tell the operator their token is revoked when the platform merely blipped); a 2xx
//! resets it.

use crate::sanitize::EMPTY_BODY;

/// Consecutive auth failures that trigger the first ERROR.
pub const LOUD_THRESHOLD: u32 = 3;
/// After the first ERROR, re-log every this many further failures.
pub const RELOG_INTERVAL: u32 = 20;

/// What to log for the `n`-th consecutive auth failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailureLog {
    /// Below the threshold.
    Warning,
    /// At the threshold or a re-log point.
    Error,
    /// Between re-log points.
    Silent,
}

/// Classifies the `n`-th consecutive auth failure (`n >= 1`).
pub fn classify(n: u32) -> AuthFailureLog {
    if n < LOUD_THRESHOLD {
        AuthFailureLog::Warning
    } else if (n - LOUD_THRESHOLD).is_multiple_of(RELOG_INTERVAL) {
        AuthFailureLog::Error
    } else {
        AuthFailureLog::Silent
    }
}

/// True when `status` means "this credential is not accepted".
pub fn is_auth_failure(status: u16) -> bool {
    status == 401 || status == 403
}

pub(crate) fn warning_text(n: u32, status: u16, workspace_id: &str) -> String {
    format!(
        "heartbeat HTTP {status} for workspace {workspace_id} (auth failure {n}/{LOUD_THRESHOLD}): \
         token may be revoked. Will retry; if this persists, regenerate the token from the canvas → Tokens tab."
    )
}

pub(crate) fn error_text(n: u32, status: u16, workspace_id: &str, token_source: &str) -> String {
    format!(
        "{n} consecutive heartbeat auth failures (HTTP {status}) for workspace {workspace_id}: \
         the token from {token_source} has been REVOKED, likely because workspace {workspace_id} \
         was deleted server-side or its token was rotated. The MCP server is still running but \
         every platform call will fail. Regenerate the workspace + token from the canvas \
         (Tokens tab), update your MCP config, and restart your runtime (re-onboard)."
    )
}

pub(crate) fn register_rejected_text(
    status: u16,
    workspace_id: &str,
    token_source: &str,
    excerpt: &str,
) -> String {
    let detail = if excerpt.is_empty() {
        String::new()
    } else {
        format!(" Platform said: {excerpt}.")
    };
    // The platform's CORS check answers 403 with an empty body when `Origin` is not its own
    // URL (the tools send `Origin` for that reason, see cli/src/tools/client.rs): then the
    // token may be fine and PLATFORM_URL is the suspect.
    let cors = if status == 403 && (excerpt.is_empty() || excerpt == EMPTY_BODY) {
        " An empty 403 usually means the platform refused the request's Origin instead: check that \
         PLATFORM_URL is exactly the platform's public URL (scheme://host[:port], the one the canvas uses)."
    } else {
        ""
    };
    format!(
        "register rejected with HTTP {status}: the token from {token_source} is invalid for \
         workspace {workspace_id}.{detail} Regenerate it from the canvas → Tokens tab, update \
         your MCP config, and restart.{cors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_matches_reference() {
        let errors: Vec<u32> = (1..=100)
            .filter(|n| classify(*n) == AuthFailureLog::Error)
            .collect();
        assert_eq!(errors, vec![3, 23, 43, 63, 83]);
        assert_eq!(classify(1), AuthFailureLog::Warning);
        assert_eq!(classify(2), AuthFailureLog::Warning);
        assert_eq!(classify(4), AuthFailureLog::Silent);
        assert_eq!(classify(22), AuthFailureLog::Silent);
        assert_eq!(classify(u32::MAX), classify(u32::MAX)); // no overflow
    }

    #[test]
    fn an_empty_403_at_register_points_at_the_origin_too() {
        let cors = register_rejected_text(403, "ws-1", "MOLECULE_WORKSPACE_TOKEN", EMPTY_BODY);
        assert!(
            cors.contains("Tokens tab") && cors.contains("PLATFORM_URL") && cors.contains("Origin"),
            "{cors}"
        );
        let token = register_rejected_text(
            401,
            "ws-1",
            "MOLECULE_WORKSPACE_TOKEN",
            "invalid workspace auth token",
        );
        assert!(!token.contains("Origin"), "{token}");
        let policy = register_rejected_text(
            403,
            "ws-1",
            "MOLECULE_WORKSPACE_TOKEN",
            "forbidden by policy",
        );
        assert!(
            !policy.contains("Origin"),
            "a 403 with a reason is about that reason: {policy}"
        );
    }

    #[test]
    fn error_text_is_actionable() {
        let t = error_text(
            3,
            401,
            "ws-deleted-12345678",
            "MOLECULE_WORKSPACE_TOKEN_FILE",
        )
        .to_lowercase();
        assert!(t.contains("revoked") && t.contains("deleted"));
        assert!(t.contains("regenerate") && t.contains("tokens"));
        assert!(t.contains("ws-deleted-12345678"));
        assert!(t.contains("molecule_workspace_token_file"));
    }
}
