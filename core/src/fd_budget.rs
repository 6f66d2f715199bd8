//! How the process's file-descriptor limit is shared, so that heartbeats and inbox polls
//! always get a connection even when tool calls use every one they may.
//!
//! Every open request holds a socket. Tool calls are many and model-driven; the platform
//! loop (register, heartbeats, polls, downloads) is few and must never starve, because a
//! missed heartbeat is how the platform decides an agent is offline. So the limit is split
//! up front: [`RESERVED_FDS`] for everything that is not a request, a share for the platform
//! loop, and the rest (at most the configured cap) for tool calls. Past its share a tool call
//! is refused at once (a JSON-RPC error), never queued, and never takes the loop's sockets.

/// Descriptors kept out of both shares: stdio, the log writer, state-file writes, staged
/// uploads (4 at once), the runtime's own (epoll, eventfd, signal pipe), and up to 32 idle
/// pooled connections.
pub const RESERVED_FDS: u64 = 96;
/// Most requests the platform loop has out at once, whatever the limit.
pub const MAX_PLATFORM_REQUESTS: usize = 256;
/// Fewest requests the platform loop is given, even under a tiny limit: a register, a
/// heartbeat, a poll and a download.
pub const MIN_PLATFORM_REQUESTS: usize = 4;

/// The split of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Requests the platform loop may have out at once.
    pub platform_requests: usize,
    /// Tool calls that may run at once (each may hold a connection).
    pub tool_calls: usize,
}

/// Splits the soft limit `limit` (`None`: unknown, then the defaults apply): a quarter of
/// what is left after [`RESERVED_FDS`] goes to the platform loop (between
/// [`MIN_PLATFORM_REQUESTS`] and [`MAX_PLATFORM_REQUESTS`]), the rest to tool calls, at most
/// `configured_tool_calls` and at least one.
pub fn fd_budget(limit: Option<u64>, configured_tool_calls: usize) -> FdBudget {
    let Some(limit) = limit else {
        return FdBudget {
            platform_requests: MAX_PLATFORM_REQUESTS,
            tool_calls: configured_tool_calls.max(1),
        };
    };
    let usable = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let platform_requests = (usable / 4).clamp(MIN_PLATFORM_REQUESTS, MAX_PLATFORM_REQUESTS);
    let tool_calls = usable
        .saturating_sub(platform_requests)
        .min(configured_tool_calls)
        .max(1);
    FdBudget {
        platform_requests,
        tool_calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_never_exceed_the_limit_and_the_loop_always_gets_some() {
        assert_eq!(
            fd_budget(None, 64),
            FdBudget {
                platform_requests: 256,
                tool_calls: 64
            }
        );
        assert_eq!(
            fd_budget(Some(20_000), 64),
            FdBudget {
                platform_requests: 256,
                tool_calls: 64
            }
        );
        assert_eq!(
            fd_budget(Some(1_024), 512),
            FdBudget {
                platform_requests: 232,
                tool_calls: 512
            }
        );
        assert_eq!(
            fd_budget(Some(256), 64),
            FdBudget {
                platform_requests: 40,
                tool_calls: 64
            }
        );
        assert_eq!(
            fd_budget(Some(128), 64),
            FdBudget {
                platform_requests: 8,
                tool_calls: 24
            }
        );
        let tiny = fd_budget(Some(40), 64);
        assert_eq!(tiny.platform_requests, MIN_PLATFORM_REQUESTS);
        assert_eq!(tiny.tool_calls, 1);
        for limit in [200u64, 300, 500, 1_000, 4_096, 65_536] {
            let b = fd_budget(Some(limit), 512);
            assert!(
                (b.platform_requests + b.tool_calls) as u64 + RESERVED_FDS <= limit,
                "{limit}: {b:?}"
            );
        }
    }
}
