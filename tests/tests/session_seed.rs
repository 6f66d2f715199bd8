//! The register / heartbeat / inbound-secret / escalation tests of the Python client's test
//! suite (`test_mcp_cli.py`, the "seed" tests), translated to the sans-io session: "the HTTP
//! fake was called" becomes "a `SendHttp` action was emitted", "exit 3"
//! becomes `Action::Fatal` with `exit_code() == 3`, `caplog` becomes `Action::Log`, and
//! `time.sleep` becomes simulated time. Each seed test keeps its Python name; the tests
//! after the seed block cover behaviour the Python suite never pinned.

use std::time::Duration;

use molecule_mcp_core::testing::session::{
    Harness, PLATFORM, authorization, body_json, fatal, header, logs, persists, sends, test_config,
};
use molecule_mcp_core::{
    Action, FatalReason, LogLevel, PersistFile, Phase, RequestKind, Secret, Timer,
    TransportErrorKind,
};

const NIL_WS: &str = "00000000-0000-0000-0000-000000000000";
const DELETED_WS: &str = "ws-deleted-12345678";
const REGISTERED: &str = r#"{"status":"registered","delivery_mode":"poll"}"#;
const OK: &str = r#"{"status":"ok"}"#;
const AUTH_ERROR: &str = r#"{"error":"invalid workspace auth token"}"#;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A session whose register was answered 200; its first heartbeat is in flight.
fn registered(workspace_id: &str, token: &str) -> Harness {
    let mut h = Harness::new(test_config(workspace_id, token));
    h.drain();
    h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    h
}

/// The Python suite's `_multi_iter_runner` helper: register OK, then one heartbeat per status.
/// Returns every action emitted by the heartbeat loop.
fn multi_iter_runner(statuses: &[u16]) -> Vec<Action> {
    let mut h = registered(DELETED_WS, "stale-token");
    let mut out = Vec::new();
    for status in statuses {
        let body = if *status < 400 { OK } else { AUTH_ERROR };
        out.extend(h.beat(*status, body));
    }
    out
}

fn inbound_secret_persists(actions: &[Action]) -> Vec<String> {
    persists(actions)
        .iter()
        .filter(|p| p.file == PersistFile::InboundSecret)
        .map(|p| p.value.expose().to_owned())
        .collect()
}

/// One heartbeat answered 200 with `body` on a fresh registered session.
fn heartbeat_answered_with(body: &str) -> (Harness, Vec<Action>) {
    let mut h = registered("ws-abc", "tok");
    let actions = h.beat(200, body);
    (h, actions)
}

// ==================== Standalone register + heartbeat (seed 9, 10) ====================

#[test]
fn test_register_called_at_startup() {
    let mut h = Harness::new(test_config(NIL_WS, "tok"));
    let first = h.drain();
    assert_eq!(
        first.len(),
        1,
        "the only thing a new session does is register: {first:?}"
    );
    let reg = sends(&first)[0];
    assert_eq!(reg.kind, RequestKind::Register);
    assert_eq!(reg.url, format!("{PLATFORM}/registry/register"));
    assert_eq!(body_json(reg)["id"], NIL_WS);
    assert_eq!(authorization(reg).as_deref(), Some("Bearer tok"));
    // Nothing else happens before register's outcome (no heartbeat racing it).
    assert!(h.advance(secs(5.0)).is_empty());
    h.respond(reg.id, 200, REGISTERED);
    for _ in 0..5 {
        h.beat(200, OK);
    }
    let registers = h.sent().filter(|r| r.kind == RequestKind::Register).count();
    assert_eq!(registers, 1, "register is called exactly once");
}

#[test]
fn test_heartbeat_thread_started() {
    let mut h = Harness::new(test_config(NIL_WS, "tok"));
    h.drain();
    let actions = h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    let beats: Vec<_> = sends(&actions)
        .into_iter()
        .filter(|r| r.kind == RequestKind::Heartbeat)
        .collect();
    assert_eq!(
        beats.len(),
        1,
        "the first heartbeat goes out right after register's outcome: {actions:?}"
    );
    assert_eq!(h.sent_at(beats[0].id), Some(Duration::ZERO));
    assert_eq!(body_json(beats[0])["workspace_id"], NIL_WS);
    assert_eq!(authorization(beats[0]).as_deref(), Some("Bearer tok"));
    assert_eq!(h.status().heartbeats_sent, 1);
}

// ==================== Register outcomes (seed 14–17) ====================

#[test]
fn test_register_401_exits_with_actionable_error() {
    let mut h = Harness::new(test_config("ws-bad-token", "wrong-token"));
    h.drain();
    let actions = h.respond_oldest(RequestKind::Register, 401, "invalid workspace auth token");
    let (reason, message) = fatal(&actions).expect("register 401 must be fatal");
    assert_eq!(reason, FatalReason::RegisterRejected { status: 401 });
    assert_eq!(reason.exit_code(), 3);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("ws-bad-token"), "{message}");
    assert!(
        message.contains("Tokens tab") || message.to_lowercase().contains("canvas"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-token"),
        "the token must not be printed: {message}"
    );
    // Terminal: nothing more is sent, ever.
    assert_eq!(h.status().phase, Phase::Failed(reason));
    assert_eq!(h.session().poll_timeout(), None);
    assert!(h.advance(secs(3600.0)).is_empty());
    assert!(
        sends(&actions).is_empty(),
        "no heartbeat after a rejected register: {actions:?}"
    );
}

#[test]
fn test_register_403_also_exits() {
    let mut h = Harness::new(test_config("ws-hijack", "stolen-token"));
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        403,
        "C18: live tokens exist; bearer didn't match",
    );
    let (reason, message) = fatal(&actions).expect("register 403 must be fatal");
    assert_eq!(reason.exit_code(), 3);
    assert!(
        message.contains("403") && message.contains("ws-hijack"),
        "{message}"
    );
    assert_eq!(
        h.status().phase,
        Phase::Failed(FatalReason::RegisterRejected { status: 403 })
    );
}

#[test]
fn test_register_500_does_not_exit() {
    let mut h = Harness::new(test_config("ws-ok", "tok"));
    h.drain();
    let actions = h.respond_oldest(RequestKind::Register, 503, "service unavailable");
    assert!(
        fatal(&actions).is_none(),
        "503 is transient, not fatal: {actions:?}"
    );
    assert_eq!(h.status().phase, Phase::Running);
    let warns = logs(&actions, LogLevel::Warn);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("503") && w.contains("service unavailable")),
        "{warns:?}"
    );
    // The session keeps running: heartbeats start and keep following.
    assert!(
        sends(&actions)
            .iter()
            .any(|r| r.kind == RequestKind::Heartbeat)
    );
    for _ in 0..3 {
        h.beat(200, OK);
    }
    assert_eq!(h.status().heartbeats_ok, 3);
}

#[test]
fn test_register_payload_shape() {
    let mut h = Harness::new(test_config("ws-abc", "tok"));
    let actions = h.drain();
    let req = sends(&actions)[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url, "https://test.moleculesai.app/registry/register");
    let body = body_json(req);
    assert_eq!(body["id"], "ws-abc");
    assert_eq!(body["delivery_mode"], "poll");
    assert_eq!(body["url"], "");
    assert!(
        body.get("agent_card").is_some_and(|c| c.is_object()),
        "{body}"
    );
    assert_eq!(
        body["agent_card"],
        serde_json::json!({"name": "molecule-mcp-ws-abc", "skills": []})
    );
    assert_eq!(authorization(req).as_deref(), Some("Bearer tok"));
    assert_eq!(header(req, "Origin"), Some("https://test.moleculesai.app"));
    assert_eq!(header(req, "Content-Type"), Some("application/json"));
}

// ==================== Heartbeat request and cadence (seed 18) ====================

#[test]
fn test_heartbeat_loop_posts_to_correct_endpoint() {
    let mut h = registered("ws-abc", "tok");
    let first = h.latest(RequestKind::Heartbeat);
    let req = h.request(first).expect("sent").clone();
    assert_eq!(req.url, "https://test.moleculesai.app/registry/heartbeat");
    assert_eq!(body_json(&req)["workspace_id"], "ws-abc");
    assert_eq!(authorization(&req).as_deref(), Some("Bearer tok"));
    assert_eq!(header(&req, "Origin"), Some("https://test.moleculesai.app"));
    h.respond(first, 200, OK);
    // "sleeps exactly the configured interval": the next wake-up is the heartbeat on the
    // 20 s grid (plus < 1 s jitter), measured in simulated time.
    assert_eq!(h.session().next_timer(), Some(Timer::Heartbeat));
    let (second, _) = h.next_heartbeat();
    let gap = h.sent_at(second).unwrap() - h.sent_at(first).unwrap();
    assert!(gap >= secs(20.0) && gap < secs(21.0), "gap {gap:?}");
}

// ==================== Inbound secret persistence (seed 19–26) ====================

#[test]
fn test_heartbeat_persists_inbound_secret_from_response() {
    let (_, actions) =
        heartbeat_answered_with(r#"{"status":"ok","platform_inbound_secret":"fresh-secret"}"#);
    let p = persists(&actions);
    assert_eq!(p.len(), 1, "{actions:?}");
    assert_eq!(p[0].file, PersistFile::InboundSecret);
    assert_eq!(p[0].value.expose(), "fresh-secret");
    assert_eq!(p[0].workspace_id, "ws-abc");
}

#[test]
fn test_heartbeat_persist_skips_when_secret_absent() {
    let (_, actions) = heartbeat_answered_with(r#"{"status":"ok"}"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
}

#[test]
fn test_heartbeat_persist_skips_on_empty_secret() {
    let (_, actions) = heartbeat_answered_with(r#"{"status":"ok","platform_inbound_secret":""}"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
    let (_, actions) = heartbeat_answered_with(r#"{"status":"ok","platform_inbound_secret":null}"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
}

#[test]
fn test_heartbeat_persist_swallows_non_json_body() {
    let (mut h, actions) = heartbeat_answered_with("not json");
    assert!(persists(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        h.status().heartbeats_ok,
        1,
        "a non-JSON 2xx is still a successful beat"
    );
    let (next, _) = h.next_heartbeat();
    assert!(h.request(next).is_some(), "the loop continues");
}

#[test]
fn test_heartbeat_persist_handles_non_dict_body() {
    let (_, actions) = heartbeat_answered_with(r#"["unexpected", "list"]"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
}

#[test]
fn test_heartbeat_persist_swallows_save_exceptions() {
    let (mut h, actions) = heartbeat_answered_with(r#"{"platform_inbound_secret":"x-secret"}"#);
    let id = persists(&actions)[0].id;
    let after = h.persist_done(id, Err("disk full".to_owned()));
    let warns = logs(&after, LogLevel::Warn);
    assert_eq!(warns.len(), 1, "{after:?}");
    assert!(warns[0].contains("disk full"), "{warns:?}");
    assert!(
        !warns[0].contains("x-secret"),
        "the secret must not be logged: {warns:?}"
    );
    assert!(logs(&after, LogLevel::Error).is_empty());
    assert_eq!(
        h.status().phase,
        Phase::Running,
        "heartbeat liveness > secret persistence"
    );
    let more = h.beat(200, OK);
    assert!(
        sends(&more)
            .iter()
            .any(|r| r.kind == RequestKind::Heartbeat)
    );
}

#[test]
fn test_heartbeat_loop_calls_persist_on_success() {
    let (_, actions) =
        heartbeat_answered_with(r#"{"status":"ok","platform_inbound_secret":"s-1"}"#);
    assert_eq!(
        inbound_secret_persists(&actions),
        vec!["s-1".to_owned()],
        "persist once per successful heartbeat"
    );
}

#[test]
fn test_heartbeat_loop_skips_persist_on_4xx() {
    let mut h = registered("ws-abc", "tok");
    let actions = h.beat(401, r#"{"platform_inbound_secret":"must-not-be-saved"}"#);
    assert!(
        persists(&actions).is_empty(),
        "4xx must not persist: {actions:?}"
    );
    let actions = h.beat(500, r#"{"platform_inbound_secret":"must-not-be-saved"}"#);
    assert!(
        persists(&actions).is_empty(),
        "5xx must not persist: {actions:?}"
    );
}

// ==================== Auth-failure escalation (seed 27–31) ====================

#[test]
fn test_heartbeat_single_401_logs_warning_not_error() {
    let actions = multi_iter_runner(&[401]);
    let warns = logs(&actions, LogLevel::Warn);
    assert!(
        warns.iter().any(|w| w.contains("401")),
        "expected a WARNING about 401: {actions:?}"
    );
    assert!(
        logs(&actions, LogLevel::Error).is_empty(),
        "single 401 must not escalate: {actions:?}"
    );
}

#[test]
fn test_heartbeat_three_consecutive_401s_escalates_to_error() {
    let actions = multi_iter_runner(&[401, 401, 401]);
    let errors = logs(&actions, LogLevel::Error);
    assert_eq!(
        errors.len(),
        1,
        "exactly one ERROR after 3 consecutive 401s: {actions:?}"
    );
    let msg = errors.join(" ").to_lowercase();
    assert!(msg.contains("revoked") || msg.contains("deleted"), "{msg}");
    assert!(
        msg.contains("regenerate") || msg.contains("re-onboard") || msg.contains("tokens"),
        "{msg}"
    );
    assert!(msg.contains("ws-deleted"), "{msg}");
    assert!(msg.contains(DELETED_WS), "{msg}");
    assert!(!msg.contains("stale-token"), "{msg}");
}

#[test]
fn test_heartbeat_403_treated_same_as_401() {
    let actions = multi_iter_runner(&[403, 403, 403]);
    let errors = logs(&actions, LogLevel::Error);
    assert_eq!(
        errors.len(),
        1,
        "expected ERROR after 3 consecutive 403s: {actions:?}"
    );
    assert!(errors[0].to_lowercase().contains("revoked"), "{errors:?}");
}

#[test]
fn test_heartbeat_recovery_resets_consecutive_counter() {
    let actions = multi_iter_runner(&[401, 401, 200, 401]);
    assert!(logs(&actions, LogLevel::Error).is_empty(), "{actions:?}");
    let mut h = registered(DELETED_WS, "stale-token");
    h.beat(401, AUTH_ERROR);
    h.beat(401, AUTH_ERROR);
    assert_eq!(h.status().consecutive_auth_failures, 2);
    h.beat(200, OK);
    assert_eq!(h.status().consecutive_auth_failures, 0);
    h.beat(401, AUTH_ERROR);
    assert_eq!(h.status().consecutive_auth_failures, 1);
}

#[test]
fn test_heartbeat_500_does_not_increment_auth_counter() {
    let actions = multi_iter_runner(&[500, 500, 500]);
    let errors = logs(&actions, LogLevel::Error);
    assert!(
        !errors.iter().any(|e| e.to_lowercase().contains("revoked")),
        "{errors:?}"
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        logs(&actions, LogLevel::Warn).len(),
        3,
        "each 5xx is a WARNING: {actions:?}"
    );
}

// ==================== Beyond the seed ====================

/// The agent-card pins the Python suite gained later (defaults, name override, CSV skills,
/// description only when set) are unit tests of
/// `ValidConfig::agent_card` in `core/tests/config.rs`; this one pins the last of them,
/// "register payload carries the built card", end to end: environment → validated config
/// → session → the register body.
#[test]
fn register_payload_carries_the_configured_agent_card() {
    use molecule_mcp_core::config::{FileRead, RawConfig, validate};
    let env = [
        ("WORKSPACE_ID", NIL_WS),
        ("PLATFORM_URL", "https://test.moleculesai.app/"),
        ("MOLECULE_WORKSPACE_TOKEN", "tok"),
        ("MOLECULE_AGENT_NAME", " Reviewer "),
        ("MOLECULE_AGENT_DESCRIPTION", "Reviews code"),
        ("MOLECULE_AGENT_SKILLS", "code, ,review,"),
    ];
    let raw = RawConfig {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        token_file: None,
        state_auth_token: FileRead::Missing,
        state_dir: "/tmp/state".to_owned(),
    };
    let config = validate(&raw).expect("valid config");
    let mut h = Harness::new(config.session_config(0).expect("one workspace"));
    let actions = h.drain();
    let req = sends(&actions)[0];
    assert_eq!(req.kind, RequestKind::Register);
    assert_eq!(req.url, "https://test.moleculesai.app/registry/register");
    assert_eq!(
        body_json(req)["agent_card"],
        serde_json::json!({
            "name": "Reviewer",
            "description": "Reviews code",
            "skills": [{"name": "code"}, {"name": "review"}],
        })
    );
}

#[test]
fn escalation_relogs_exactly_every_twenty_failures() {
    let mut h = registered(DELETED_WS, "stale-token");
    let mut error_at = Vec::new();
    let mut warn_at = Vec::new();
    for n in 1..=100u32 {
        let actions = h.beat(401, AUTH_ERROR);
        if !logs(&actions, LogLevel::Error).is_empty() {
            error_at.push(n);
        }
        if !logs(&actions, LogLevel::Warn).is_empty() {
            warn_at.push(n);
        }
    }
    assert_eq!(error_at, vec![3, 23, 43, 63, 83]);
    assert_eq!(warn_at, vec![1, 2], "silent between re-logs");
    assert_eq!(h.status().consecutive_auth_failures, 100);
    assert_eq!(
        h.status().phase,
        Phase::Running,
        "the session never stops on its own"
    );
}

#[test]
fn secret_is_persisted_only_when_it_changes() {
    let mut h = registered("ws-abc", "tok");
    let mut written = Vec::new();
    for _ in 0..50 {
        let actions = h.beat(200, r#"{"status":"ok","platform_inbound_secret":"s-A"}"#);
        for p in persists(&actions) {
            written.push(p.value.expose().to_owned());
            h.persist_done(p.id, Ok(()));
        }
    }
    assert_eq!(
        written,
        vec!["s-A"],
        "50 beats with the same secret → one write"
    );
    let actions = h.beat(200, r#"{"status":"ok","platform_inbound_secret":"s-B"}"#);
    assert_eq!(
        inbound_secret_persists(&actions),
        vec!["s-B"],
        "a rotated secret is written once"
    );
    let id = persists(&actions)[0].id;
    h.persist_done(id, Ok(()));
    let actions = h.beat(200, r#"{"status":"ok","platform_inbound_secret":"s-B"}"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
}

#[test]
fn failed_secret_write_is_retried_on_next_beat() {
    let mut h = registered("ws-abc", "tok");
    let body = r#"{"status":"ok","platform_inbound_secret":"s-A"}"#;
    let actions = h.beat(200, body);
    let first = persists(&actions)[0].id;
    h.persist_done(first, Err("read-only file system".to_owned()));
    let actions = h.beat(200, body);
    let retry = persists(&actions);
    assert_eq!(retry.len(), 1, "the failed write is retried: {actions:?}");
    assert_ne!(retry[0].id, first);
    let id = retry[0].id;
    h.persist_done(id, Ok(()));
    assert!(persists(&h.beat(200, body)).is_empty());
}

#[test]
fn known_inbound_secret_suppresses_the_first_write() {
    let mut cfg = test_config("ws-abc", "tok");
    cfg.known_inbound_secret = Some(Secret::new("on-disk"));
    let mut h = Harness::new(cfg);
    h.drain();
    h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    let actions = h.beat(200, r#"{"platform_inbound_secret":"on-disk"}"#);
    assert!(persists(&actions).is_empty(), "{actions:?}");
    let actions = h.beat(200, r#"{"platform_inbound_secret":"rotated"}"#);
    assert_eq!(inbound_secret_persists(&actions), vec!["rotated"]);
}

#[test]
fn register_secret_is_persisted() {
    let mut h = Harness::new(test_config("ws-abc", "tok"));
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        201,
        r#"{"status":"registered","platform_inbound_secret":"from-register"}"#,
    );
    assert_eq!(inbound_secret_persists(&actions), vec!["from-register"]);
}

#[test]
fn hung_heartbeats_at_a_one_second_cadence_never_cost_a_tick() {
    // Each beat's deadline is ¾ of the interval, so a hung beat is settled before the next
    // tick even when jitter brings that tick early; none is skipped as "still outstanding".
    let mut cfg = test_config("ws-abc", "tok");
    cfg.heartbeat_interval = secs(1.0);
    let mut h = Harness::new(cfg);
    h.drain();
    h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    let before = h
        .sent()
        .filter(|r| r.kind == RequestKind::Heartbeat)
        .count();
    let until = h.elapsed() + secs(120.0);
    while h.elapsed() < until {
        h.advance_to_next_timeout(); // nothing is ever answered
    }
    let sent = h
        .sent()
        .filter(|r| r.kind == RequestKind::Heartbeat)
        .count()
        - before;
    assert!(
        (119..=121).contains(&sent),
        "{sent} beats in 120 s of hangs"
    );
    let start = h.now() - h.elapsed();
    for req in h.sent().filter(|r| r.kind == RequestKind::Heartbeat) {
        let at = h.sent_at(req.id).expect("sent");
        assert!(
            req.deadline <= start + at + secs(0.75),
            "deadline within ¾ of the interval"
        );
    }
}

#[test]
fn register_rejection_falls_back_once_to_the_saved_minted_token() {
    let mut cfg = test_config("ws-abc", "stale-configured");
    cfg.fallback_token = Some((Secret::new("saved-minted"), "/state/.auth_token".to_owned()));
    let mut h = Harness::new(cfg);
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        401,
        r#"{"error":"invalid workspace auth token"}"#,
    );
    assert!(
        fatal(&actions).is_none(),
        "not fatal while the saved token is untried: {actions:?}"
    );
    assert!(actions.iter().any(
        |a| matches!(a, Action::TokenChanged { token, .. } if token.expose() == "saved-minted")
    ));
    let warn = logs(&actions, LogLevel::Warn).join("\n");
    assert!(
        warn.contains("saved in /state/.auth_token") && warn.contains("HTTP 401"),
        "{warn}"
    );
    assert!(
        !warn.contains("stale-configured") && !warn.contains("saved-minted"),
        "no token in logs: {warn}"
    );
    let retry = sends(&actions);
    assert_eq!(retry.len(), 1, "register is sent again at once");
    assert_eq!(
        authorization(retry[0]).as_deref(),
        Some("Bearer saved-minted")
    );

    // The saved token is rejected too: now it is fatal, naming what was tried.
    let actions = h.respond_latest(RequestKind::Register, 403, "");
    let (reason, message) = fatal(&actions).expect("fatal after the fallback");
    assert_eq!(reason.exit_code(), 3);
    assert!(message.contains("/state/.auth_token"), "{message}");
    assert!(!message.contains("saved-minted"), "{message}");
}

#[test]
fn a_fallback_equal_to_the_configured_token_is_not_retried() {
    let mut cfg = test_config("ws-abc", "same");
    cfg.fallback_token = Some((Secret::new("same"), "/state/.auth_token".to_owned()));
    let mut h = Harness::new(cfg);
    h.drain();
    let actions = h.respond_oldest(RequestKind::Register, 401, "");
    assert!(fatal(&actions).is_some(), "{actions:?}");
}

#[test]
fn minted_auth_token_is_adopted_persisted_and_used() {
    let mut h = Harness::new(test_config("ws-abc", "bootstrap-tok"));
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        200,
        r#"{"status":"registered","auth_token":"minted-tok-123"}"#,
    );
    let changed: Vec<&Secret> = actions
        .iter()
        .filter_map(|a| match a {
            Action::TokenChanged {
                token,
                workspace_id,
            } if workspace_id == "ws-abc" => Some(token),
            Action::TokenChanged { .. }
            | Action::SendHttp(_)
            | Action::Log(_)
            | Action::Persist(_)
            | Action::Fatal { .. } => None,
        })
        .collect();
    assert_eq!(changed.len(), 1, "{actions:?}");
    assert_eq!(changed[0].expose(), "minted-tok-123");
    let p = persists(&actions);
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].file, p[0].value.expose()),
        (PersistFile::AuthToken, "minted-tok-123")
    );
    assert_eq!(h.session().token().expose(), "minted-tok-123");
    // The heartbeat sent in the same breath, and every later request, use the new token.
    let beat = sends(&actions)
        .into_iter()
        .find(|r| r.kind == RequestKind::Heartbeat)
        .expect("first heartbeat");
    assert_eq!(
        authorization(beat).as_deref(),
        Some("Bearer minted-tok-123")
    );
    h.beat(200, OK);
    let (next, _) = h.next_heartbeat();
    assert_eq!(
        authorization(h.request(next).unwrap()).as_deref(),
        Some("Bearer minted-tok-123")
    );
    for a in &actions {
        assert!(!format!("{a:?}").contains("minted-tok-123"), "{a:?}");
    }
}

#[test]
fn failed_save_of_minted_token_is_an_error_but_not_fatal() {
    let mut h = Harness::new(test_config("ws-abc", "bootstrap-tok"));
    h.drain();
    let actions = h.respond_oldest(
        RequestKind::Register,
        200,
        r#"{"auth_token":"minted-tok-123"}"#,
    );
    let id = persists(&actions)[0].id;
    let after = h.persist_done(id, Err("permission denied".to_owned()));
    let errors = logs(&after, LogLevel::Error);
    assert_eq!(errors.len(), 1, "{after:?}");
    assert!(
        errors[0].contains("permission denied") && errors[0].contains("Tokens tab"),
        "{errors:?}"
    );
    assert_eq!(h.status().phase, Phase::Running);
}

#[test]
fn configured_token_is_not_logged_after_a_mint() {
    let mut h = Harness::new(test_config("ws-abc", "configured-tok-XYZ"));
    h.drain();
    h.respond_oldest(
        RequestKind::Register,
        200,
        r#"{"auth_token":"minted-tok-123"}"#,
    );
    let actions = h.beat(
        500,
        "proxy echoed: Bearer configured-tok-XYZ and Bearer minted-tok-123",
    );
    let id = h.next_heartbeat().0;
    let mut all = actions;
    all.extend(h.fail(
        id,
        TransportErrorKind::Io,
        "reset while sending configured-tok-XYZ",
    ));
    for a in &all {
        let text = format!("{a:?}");
        assert!(
            !text.contains("configured-tok-XYZ") && !text.contains("minted-tok-123"),
            "{text}"
        );
    }
    assert_eq!(logs(&all, LogLevel::Warn).len(), 2, "{all:?}");
}

#[test]
fn rate_limited_heartbeat_honours_retry_after() {
    let mut h = registered("ws-abc", "tok");
    let first = h.latest(RequestKind::Heartbeat);
    let actions = h.respond_retry_after(first, 429, secs(95.0), "slow down");
    assert!(
        logs(&actions, LogLevel::Warn)
            .iter()
            .any(|w| w.contains("429")),
        "{actions:?}"
    );
    assert_eq!(
        h.status().consecutive_auth_failures,
        0,
        "429 is not an auth failure"
    );
    let (next, _) = h.next_heartbeat();
    let at = h.sent_at(next).unwrap();
    // 95 s is more than RetryAfterCap::HEARTBEAT (60 s; the platform marks a workspace
    // offline after about a minute without a beat): the first grid tick at or after the
    // capped wait is 80 s (plus jitter below 1 s), where 95 s used to give 100 s.
    assert!(
        at >= secs(80.0) && at < secs(81.0),
        "next heartbeat at {at:?}"
    );
}

#[test]
fn rate_limited_heartbeat_honours_a_retry_after_below_the_cap() {
    let mut h = registered("ws-abc", "tok");
    let first = h.latest(RequestKind::Heartbeat);
    h.respond_retry_after(first, 429, secs(45.0), "slow down");
    let (next, _) = h.next_heartbeat();
    let at = h.sent_at(next).unwrap();
    assert!(at >= secs(45.0), "next heartbeat at {at:?}");
}

#[test]
fn hanging_heartbeat_times_out_at_its_deadline_and_a_late_answer_is_ignored() {
    let mut h = registered("ws-abc", "tok");
    let hung = h.latest(RequestKind::Heartbeat);
    let deadline = h.request(hung).unwrap().deadline;
    assert_eq!(h.session().poll_timeout(), Some(deadline));
    assert_eq!(
        deadline - h.now(),
        secs(10.0),
        "heartbeat deadline = min(request timeout, interval)"
    );
    let actions = h.advance_to_next_timeout();
    assert_eq!(h.elapsed(), secs(10.0));
    let warns = logs(&actions, LogLevel::Warn);
    assert!(
        warns.len() == 1 && warns[0].contains("Timeout"),
        "{actions:?}"
    );
    assert!(h.in_flight(RequestKind::Heartbeat).is_empty());
    let before = h.status();
    let late = h.respond(hung, 401, AUTH_ERROR);
    assert!(late.is_empty(), "a late answer is ignored: {late:?}");
    assert_eq!(h.status().ignored_inputs, before.ignored_inputs + 1);
    assert_eq!(h.status().consecutive_auth_failures, 0);
    let (next, _) = h.next_heartbeat();
    let at = h.sent_at(next).unwrap();
    assert!(
        at >= secs(20.0) && at < secs(21.0),
        "cadence unaffected: {at:?}"
    );
}

#[test]
fn register_deadline_is_enforced_from_the_start() {
    let mut h = Harness::new(test_config("ws-abc", "tok"));
    let reg = sends(&h.drain())[0].clone();
    assert_eq!(
        h.session().poll_timeout(),
        Some(reg.deadline),
        "the register deadline is armed at construction"
    );
    let actions = h.advance_to_next_timeout();
    assert_eq!(h.elapsed(), secs(10.0));
    assert!(
        logs(&actions, LogLevel::Warn)
            .iter()
            .any(|w| w.contains("register") && w.contains("Timeout")),
        "{actions:?}"
    );
    assert!(
        sends(&actions)
            .iter()
            .any(|r| r.kind == RequestKind::Heartbeat),
        "heartbeats start anyway"
    );
    assert_eq!(h.session().next_timer(), Some(Timer::RegisterRetry));
}

#[test]
fn register_5xx_is_retried_with_growing_backoff() {
    let mut h = Harness::new(test_config("ws-abc", "tok"));
    h.drain();
    let mut gaps = Vec::new();
    for _ in 0..8 {
        h.respond_oldest(RequestKind::Register, 503, "upstream down");
        let last_answer = h.elapsed();
        // Keep heartbeats answered so only the register retry is outstanding.
        loop {
            if let Some(id) = h.in_flight(RequestKind::Heartbeat).first().copied() {
                h.respond(id, 200, OK);
            }
            if !h.in_flight(RequestKind::Register).is_empty() {
                break;
            }
            h.advance_to_next_timeout();
        }
        let retry = h.oldest(RequestKind::Register);
        gaps.push(h.sent_at(retry).unwrap() - last_answer);
    }
    let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0];
    for (gap, base) in gaps.iter().zip(bases) {
        assert!(
            *gap >= secs(base) && *gap <= secs(base * 1.25),
            "gaps {gaps:?}"
        );
    }
    h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    assert!(h.status().registered);
    h.advance(secs(600.0));
    let registers = h.sent().filter(|r| r.kind == RequestKind::Register).count();
    assert_eq!(registers, 9, "no register after success");
}

#[test]
fn register_retry_honours_retry_after_and_transport_failures_retry_too() {
    let mut h = Harness::new(test_config("ws-abc", "tok"));
    h.drain();
    let id = h.oldest(RequestKind::Register);
    h.respond_retry_after(id, 429, secs(30.0), "");
    assert_eq!(
        h.in_flight(RequestKind::Heartbeat).len(),
        1,
        "heartbeats started"
    );
    h.beat(200, OK);
    while h.in_flight(RequestKind::Register).is_empty() {
        h.advance_to_next_timeout();
        if let Some(hb) = h.in_flight(RequestKind::Heartbeat).first().copied() {
            h.respond(hb, 200, OK);
        }
    }
    let retry = h.oldest(RequestKind::Register);
    let at = h.sent_at(retry).unwrap();
    assert!(
        at >= secs(30.0) && at < secs(31.0),
        "Retry-After honoured: {at:?}"
    );
    let actions = h.fail_oldest(RequestKind::Register, TransportErrorKind::Connect);
    assert!(
        logs(&actions, LogLevel::Warn)
            .iter()
            .any(|w| w.contains("Connect")),
        "{actions:?}"
    );
    assert_eq!(h.status().phase, Phase::Running);
}

#[test]
fn shutdown_stops_everything() {
    let mut h = registered("ws-abc", "tok");
    let hb = h.latest(RequestKind::Heartbeat);
    let actions = h.respond(hb, 200, r#"{"platform_inbound_secret":"pending-write"}"#);
    let pending = persists(&actions)[0].id;
    let (in_flight, _) = h.next_heartbeat();
    let actions = h.shutdown();
    assert_eq!(logs(&actions, LogLevel::Info).len(), 1);
    assert!(
        sends(&actions).is_empty() && persists(&actions).is_empty(),
        "{actions:?}"
    );
    assert_eq!(h.status().phase, Phase::Stopped);
    assert_eq!(h.session().poll_timeout(), None);
    assert_eq!(h.session().in_flight().count(), 0);
    let mut later = h.advance(secs(6.0 * 3600.0));
    later.extend(h.respond(in_flight, 401, AUTH_ERROR));
    later.extend(h.persist_done(pending, Err("late".to_owned())));
    later.extend(h.shutdown());
    later.extend(h.handle_timeout());
    assert!(
        later.is_empty(),
        "terminal state absorbs everything: {later:?}"
    );
    assert_eq!(h.status().consecutive_auth_failures, 0);
}

#[test]
fn six_hours_of_heartbeats_run_in_simulated_time() {
    let mut h = registered("ws-abc", "tok");
    let mut last_uptime = None;
    let mut times = Vec::new();
    for _ in 0..1080 {
        let (id, _) = h.next_heartbeat();
        let uptime = body_json(h.request(id).unwrap())["uptime_seconds"]
            .as_u64()
            .unwrap();
        if let Some(prev) = last_uptime {
            assert!(uptime > prev, "uptime must increase: {prev} then {uptime}");
        }
        last_uptime = Some(uptime);
        times.push(h.sent_at(id).unwrap());
        h.respond(id, 200, OK);
    }
    assert_eq!(h.status().heartbeats_ok, 1080);
    for (k, at) in times.iter().enumerate() {
        let grid = secs(20.0 * k as f64);
        assert!(*at >= grid && *at < grid + secs(1.0), "beat {k} at {at:?}");
    }
    assert!(h.elapsed() >= secs(6.0 * 3600.0 - 20.0));
    assert!(last_uptime.unwrap() >= 21_580);
}

#[test]
fn cadence_does_not_drift_when_responses_take_seconds() {
    let mut h = registered("ws-abc", "tok");
    let mut times = Vec::new();
    for _ in 0..100 {
        let (id, _) = h.next_heartbeat();
        times.push(h.sent_at(id).unwrap());
        h.advance(secs(7.5));
        h.respond(id, 200, OK);
    }
    for (k, at) in times.iter().enumerate() {
        let grid = secs(20.0 * k as f64);
        assert!(
            *at >= grid && *at < grid + secs(1.0),
            "beat {k} drifted to {at:?}"
        );
    }
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > secs(19.0) && gap < secs(21.0), "gap {gap:?}");
    }
}
