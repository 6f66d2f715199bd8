//! Golden action transcripts (rustls-style) for scripted session scenarios: the compact
//! rendering of every input and action (time in whole simulated seconds, request id, kind
//! and url path, log level and the first words of each message) is compared to a constant,
//! so any change in what the session does, in which order or when shows up as a readable
//! diff. To update after an intended change, paste the `actual` block from the failure.

use molecule_mcp_core::RequestKind;
use molecule_mcp_core::testing::session::{Harness, persists, test_config};

const WS: &str = "ws-deleted-12345678";
const AUTH_ERROR: &str = r#"{"error":"invalid workspace auth token"}"#;

fn check(name: &str, actual: &str, expected: &str) {
    // The constants start with a newline so they read as a block.
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    assert!(
        actual == expected,
        "{name} transcript changed.\n--- expected ---\n{expected}--- actual ---\n{actual}---"
    );
}

/// Register (delivers a secret) → write it → three beats, the second repeating the secret
/// (no rewrite) and the third rotating it → shutdown with a beat in flight.
fn happy_path() -> String {
    let mut h = Harness::new(test_config(WS, "tok"));
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        200,
        r#"{"status":"registered","platform_inbound_secret":"s-1"}"#,
    );
    let write = persists(&actions)[0].id;
    h.persist_done(write, Ok(()));
    h.beat(200, r#"{"status":"ok"}"#);
    h.beat(200, r#"{"status":"ok","platform_inbound_secret":"s-1"}"#);
    let actions = h.beat(200, r#"{"status":"ok","platform_inbound_secret":"s-2"}"#);
    let write = persists(&actions)[0].id;
    h.persist_done(write, Ok(()));
    h.next_heartbeat();
    h.shutdown();
    h.advance_to_next_timeout();
    h.transcript()
}

/// Four 401s (WARN, WARN, ERROR, silence), recovery (INFO), one more 401 (WARN 1/3), and a
/// 500 that does not touch the counter.
fn escalation_path() -> String {
    let mut h = Harness::new(test_config(WS, "stale-token"));
    h.drain();
    h.respond_oldest(RequestKind::Register, 200, r#"{"status":"registered"}"#);
    for status in [401, 401, 401, 401, 200, 401, 500] {
        h.beat(status, if status == 200 { "{}" } else { AUTH_ERROR });
    }
    h.transcript()
}

/// Register 503 (retry with backoff, heartbeats start anyway), then the retry is rejected
/// with 401: fatal, and nothing happens afterwards.
fn register_rejected_after_retry() -> String {
    let mut h = Harness::new(test_config(WS, "tok"));
    h.drain();
    h.respond_oldest(RequestKind::Register, 503, "service unavailable");
    h.beat(200, "{}");
    while h.in_flight(RequestKind::Register).is_empty() {
        h.advance_to_next_timeout();
    }
    h.respond_oldest(RequestKind::Register, 401, "invalid workspace auth token");
    h.advance_to_next_timeout();
    h.transcript()
}

#[test]
fn golden_happy_path() {
    check("happy_path", &happy_path(), HAPPY_PATH);
}

#[test]
fn golden_escalation_path() {
    check("escalation_path", &escalation_path(), ESCALATION_PATH);
}

#[test]
fn golden_register_rejected_after_retry() {
    check(
        "register_rejected_after_retry",
        &register_rejected_after_retry(),
        REGISTER_REJECTED_AFTER_RETRY,
    );
}

const HAPPY_PATH: &str = r#"
    0s -> SEND #1 POST /registry/register register
    0s <- #1 register 200
    0s -> LOG INFO registered workspace ws-deleted-12345678 with platform
    0s -> PERSIST #1 InboundSecret
    0s -> SEND #2 POST /registry/heartbeat heartbeat
    0s <- persist #1 ok
    0s <- #2 heartbeat 200
   20s -> SEND #3 POST /registry/heartbeat heartbeat
   20s <- #3 heartbeat 200
   40s -> SEND #4 POST /registry/heartbeat heartbeat
   40s <- #4 heartbeat 200
   40s -> PERSIST #2 InboundSecret
   40s <- persist #2 ok
   60s -> SEND #5 POST /registry/heartbeat heartbeat
   60s <- shutdown
   60s -> LOG INFO shutting down: heartbeats stopped
"#;
const ESCALATION_PATH: &str = r#"
    0s -> SEND #1 POST /registry/register register
    0s <- #1 register 200
    0s -> LOG INFO registered workspace ws-deleted-12345678 with platform
    0s -> SEND #2 POST /registry/heartbeat heartbeat
    0s <- #2 heartbeat 401
    0s -> LOG WARN heartbeat HTTP 401 for workspace ws-deleted-12345678 (auth failure 1/3): token …
   20s -> SEND #3 POST /registry/heartbeat heartbeat
   20s <- #3 heartbeat 401
   20s -> LOG WARN heartbeat HTTP 401 for workspace ws-deleted-12345678 (auth failure 2/3): token …
   40s -> SEND #4 POST /registry/heartbeat heartbeat
   40s <- #4 heartbeat 401
   40s -> LOG ERROR 3 consecutive heartbeat auth failures (HTTP 401) for workspace ws-deleted-12345678: …
   60s -> SEND #5 POST /registry/heartbeat heartbeat
   60s <- #5 heartbeat 401
   80s -> SEND #6 POST /registry/heartbeat heartbeat
   80s <- #6 heartbeat 200
   80s -> LOG INFO heartbeat accepted again after 4 auth failure(s)
  100s -> SEND #7 POST /registry/heartbeat heartbeat
  100s <- #7 heartbeat 401
  100s -> LOG WARN heartbeat HTTP 401 for workspace ws-deleted-12345678 (auth failure 1/3): token …
  120s -> SEND #8 POST /registry/heartbeat heartbeat
  120s <- #8 heartbeat 500
  120s -> LOG WARN heartbeat HTTP 500: {"error":"invalid workspace auth token"}
"#;
const REGISTER_REJECTED_AFTER_RETRY: &str = r#"
    0s -> SEND #1 POST /registry/register register
    0s <- #1 register 503
    0s -> LOG WARN register POST returned HTTP 503: service unavailable; retrying in 1s …
    0s -> SEND #2 POST /registry/heartbeat heartbeat
    0s <- #2 heartbeat 200
    1s -> SEND #3 POST /registry/register register
    1s <- #3 register 401
    1s -> FATAL exit=3 register rejected with HTTP 401: the token from MOLECULE_WORKSPACE_TOKEN is …
"#;
