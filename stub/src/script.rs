//! Scripted overrides: "the next N (or all) requests matching METHOD + path get an action".
//!
//! Scripts run before every other stub behaviour (CORS, rate limit, auth, handlers), so they
//! can fake anything a real platform, proxy or network might do. Matching scripts are tried in
//! the order they were added; the first one with uses left (and, with [`Script::within`], not
//! yet expired) wins and consumes one use.
//!
//! Path patterns (the query string is never part of the match):
//! * `/registry/heartbeat` — exact path;
//! * `/workspaces/:id/activity` — `:name` segments match any one non-empty segment;
//! * `/workspaces/*` — a trailing `*` matches any path starting with what precedes it.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// What happens to a request matched by a [`Script`].
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with exactly this status, these headers and these body bytes (any bytes: empty,
    /// HTML, non-UTF-8, megabytes). No `Content-Type` is added unless given.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Answer `status` with a JSON body that echoes the request back, as a careless proxy
    /// or platform error page does: `{"error": "...", "hint": "...", "headers": {...}}`
    /// where `error` quotes the `Authorization` header and `hint` the path with its query
    /// (tests check that the runtime never shows what a platform echoes of its secrets).
    EchoRequest { status: u16 },
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Never answer; the connection stays open until the client gives up or the stub stops.
    Hang,
    /// Close the connection without writing any response.
    Drop,
    /// Send the status line, the headers (with `Content-Length` of the full body) and the first
    /// `sent` bytes of `body`, then close the connection.
    ResetMidBody {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
        sent: usize,
    },
}

impl Action {
    /// A response with an empty body.
    pub fn status(status: u16) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A JSON response (`Content-Type: application/json`).
    pub fn json(status: u16, body: &serde_json::Value) -> Action {
        Action::Respond {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// A response with the given content type and raw body bytes.
    pub fn body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Action {
        Action::Respond {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// One scripted override; see the module docs for matching rules.
#[derive(Debug, Clone)]
pub struct Script {
    method: String,
    pattern: String,
    remaining: Option<u32>,
    /// After this instant the script no longer matches (see [`Script::within`]).
    expires: Option<Instant>,
    pub(crate) action: Action,
}

impl Script {
    /// Applies `action` to every request whose method is `method` (case-insensitive; `"*"` for
    /// any) and whose path matches `pattern`, until [`Script::times`] limits it.
    pub fn new(method: &str, pattern: &str, action: Action) -> Script {
        Script {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_string(),
            remaining: None,
            expires: None,
            action,
        }
    }

    /// Only the next `n` matching requests (`0` makes the script inert).
    pub fn times(mut self, n: u32) -> Script {
        self.remaining = Some(n);
        self
    }

    /// Only requests arriving within `window` from now: a fault that lasts for a while, like a
    /// real outage, instead of waiting for however long the client takes to ask again.
    pub fn within(mut self, window: Duration) -> Script {
        self.expires = Instant::now().checked_add(window);
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        if self.exhausted() {
            return false;
        }
        if self.method != "*" && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        if let Some(prefix) = self.pattern.strip_suffix('*') {
            return path.starts_with(prefix);
        }
        let want = self.pattern.split('/');
        let got = path.split('/');
        want.clone().count() == got.clone().count()
            && want.zip(got).all(|(w, g)| {
                if w.starts_with(':') {
                    !g.is_empty()
                } else {
                    w == g
                }
            })
    }

    /// Consumes one use; returns false once the script is exhausted.
    pub(crate) fn consume(&mut self) -> bool {
        match &mut self.remaining {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.remaining == Some(0) || self.expires.is_some_and(|at| Instant::now() >= at)
    }
}

/// Removes and returns the action of the first live script matching the request.
pub(crate) fn take(scripts: &mut Vec<Script>, method: &str, path: &str) -> Option<Action> {
    scripts.retain(|s| !s.exhausted());
    let idx = scripts.iter().position(|s| s.matches(method, path))?;
    let script = scripts.get_mut(idx)?;
    let action = script.consume().then(|| script.action.clone());
    if script.exhausted() {
        scripts.remove(idx);
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_within_a_window_stops_matching_when_it_ends() {
        let mut scripts = vec![
            Script::new("GET", "/x", Action::status(500)).within(Duration::ZERO),
            Script::new("GET", "/x", Action::status(503))
                .times(2)
                .within(Duration::from_secs(3600)),
        ];
        let status = |a: Option<Action>| match a {
            Some(Action::Respond { status, .. }) => Some(status),
            _ => None,
        };
        assert_eq!(status(take(&mut scripts, "GET", "/x")), Some(503));
        assert_eq!(scripts.len(), 1, "the expired script is dropped");
        assert_eq!(status(take(&mut scripts, "GET", "/x")), Some(503));
        assert_eq!(status(take(&mut scripts, "GET", "/x")), None);
    }

    #[test]
    fn patterns_match_exact_param_and_prefix() {
        let s = |p: &str| Script::new("get", p, Action::status(500));
        assert!(s("/health").matches("GET", "/health"));
        assert!(!s("/health").matches("POST", "/health"));
        assert!(!s("/health").matches("GET", "/healthz"));
        assert!(s("/workspaces/:id/activity").matches("GET", "/workspaces/abc/activity"));
        assert!(!s("/workspaces/:id/activity").matches("GET", "/workspaces//activity"));
        assert!(!s("/workspaces/:id/activity").matches("GET", "/workspaces/abc/activity/ack"));
        assert!(s("/workspaces/*").matches("GET", "/workspaces/abc/anything"));
        assert!(Script::new("*", "/x", Action::Hang).matches("DELETE", "/x"));
    }

    #[test]
    fn take_counts_down_and_removes() {
        let mut v = vec![
            Script::new("GET", "/a", Action::status(501)).times(2),
            Script::new("GET", "/a", Action::status(502)),
        ];
        let status = |a: Option<Action>| match a {
            Some(Action::Respond { status, .. }) => status,
            Some(
                Action::Delay(_)
                | Action::Hang
                | Action::Drop
                | Action::ResetMidBody { .. }
                | Action::EchoRequest { .. },
            )
            | None => 0,
        };
        assert_eq!(status(take(&mut v, "GET", "/a")), 501);
        assert_eq!(status(take(&mut v, "GET", "/a")), 501);
        assert_eq!(v.len(), 1);
        assert_eq!(status(take(&mut v, "GET", "/a")), 502);
        assert_eq!(status(take(&mut v, "GET", "/a")), 502);
        assert_eq!(status(take(&mut v, "GET", "/b")), 0);
        assert!(
            take(
                &mut vec![Script::new("GET", "/a", Action::Hang).times(0)],
                "GET",
                "/a"
            )
            .is_none()
        );
    }
}
