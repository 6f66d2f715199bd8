//! What the platform tools need to know besides their arguments and the workspaces:
//! [`ToolSettings`] (tier, RBAC roles, delegation timeouts) and the client-side [`Rbac`]
//! check.
//!
//! The values come from the environment through the one configuration parser,
//! [`crate::config::validate`] (`ValidConfig::tool_settings`); the defaults are here.

use std::collections::BTreeMap;
use std::time::Duration;

/// Client-side RBAC. Roles default to `["operator"]`: this runtime reads no `config.yaml`
/// with role overrides, so `overrides` is only set by embedders and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rbac {
    /// Role names.
    pub roles: Vec<String>,
    /// Role → allowed actions; an entry replaces that role's built-in set.
    pub overrides: BTreeMap<String, Vec<String>>,
}

impl Default for Rbac {
    fn default() -> Self {
        Rbac {
            roles: vec!["operator".to_owned()],
            overrides: BTreeMap::new(),
        }
    }
}

impl Rbac {
    /// True when any role grants `action` (`memory.read`, `memory.write`, `delegate`, `approve`).
    pub fn permits(&self, action: &str) -> bool {
        self.roles.iter().any(|role| {
            if role == "admin" {
                return true;
            }
            match self.overrides.get(role) {
                Some(actions) => actions.iter().any(|a| a == action),
                None => builtin_actions(role).contains(&action),
            }
        })
    }
}

fn builtin_actions(role: &str) -> &'static [&'static str] {
    match role {
        "admin" | "operator" => &["delegate", "approve", "memory.read", "memory.write"],
        "read-only" | "memory-readonly" => &["memory.read"],
        "no-delegation" => &["approve", "memory.read", "memory.write"],
        "no-approval" => &["delegate", "memory.read", "memory.write"],
        _ => &[],
    }
}

/// `WORKSPACE_TIER` when unset or unusable.
pub const DEFAULT_TIER: u32 = 1;
/// `DELEGATION_TIMEOUT` when unset or unusable.
pub const DEFAULT_DELEGATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest accepted `DELEGATION_TIMEOUT`; larger values are cut to it.
pub const MAX_DELEGATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Tunables of the tools, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSettings {
    /// `WORKSPACE_TIER` (default 1); tier 0 = root, the only tier allowed GLOBAL memory writes.
    pub tier: u32,
    /// Client-side RBAC.
    pub rbac: Rbac,
    /// `DELEGATION_SYNC_VIA_INBOX`: `delegate_task` goes through `/delegate` + polling
    /// instead of a direct A2A call.
    pub sync_via_inbox: bool,
    /// `DELEGATION_TIMEOUT` (default 300 s): how long sync-via-polling waits.
    pub delegation_timeout: Duration,
    /// Pause between `/delegations` polls (3 s).
    pub delegation_poll_interval: Duration,
    /// Hard overall deadline of one `delegate_task` A2A exchange, retries included (600 s).
    pub a2a_deadline: Duration,
    /// First retry delay for undelivered A2A attempts (1 s, doubled per attempt, max 16×).
    pub retry_base_delay: Duration,
    /// `MOLECULE_MCP_MAX_CONCURRENT_CALLS` (default [`DEFAULT_MAX_CONCURRENT_CALLS`],
    /// 1..=[`MAX_CONCURRENT_CALLS`]): tool calls running at once; one more is refused.
    pub max_concurrent_calls: usize,
}

/// Default of [`ToolSettings::max_concurrent_calls`]: far above what an agent runs at once,
/// far below what would exhaust memory or the process's file descriptors (each running
/// call may hold a connection).
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 64;
/// Highest accepted `MOLECULE_MCP_MAX_CONCURRENT_CALLS`: stays below the common soft limit
/// of 1024 open files, so heartbeats and polls always find a descriptor.
pub const MAX_CONCURRENT_CALLS: usize = 512;

impl Default for ToolSettings {
    fn default() -> Self {
        ToolSettings {
            tier: DEFAULT_TIER,
            rbac: Rbac::default(),
            sync_via_inbox: false,
            delegation_timeout: DEFAULT_DELEGATION_TIMEOUT,
            delegation_poll_interval: Duration::from_secs(3),
            a2a_deadline: Duration::from_secs(600),
            retry_base_delay: Duration::from_secs(1),
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_table() {
        let role = |r: &str| Rbac {
            roles: vec![r.to_owned()],
            overrides: BTreeMap::new(),
        };
        assert!(Rbac::default().permits("memory.write"));
        assert!(role("read-only").permits("memory.read"));
        assert!(!role("read-only").permits("memory.write"));
        assert!(!role("memory-readonly").permits("memory.write"));
        assert!(role("no-delegation").permits("memory.write"));
        assert!(!role("no-delegation").permits("delegate"));
        assert!(!role("unknown").permits("memory.read"));
        let overridden = Rbac {
            roles: vec!["operator".into()],
            overrides: BTreeMap::from([("operator".to_owned(), vec!["memory.read".to_owned()])]),
        };
        assert!(overridden.permits("memory.read"));
        assert!(!overridden.permits("memory.write"));
        let admin = Rbac {
            roles: vec!["admin".into()],
            overrides: BTreeMap::from([("admin".to_owned(), vec![])]),
        };
        assert!(admin.permits("memory.write"));
    }
}
