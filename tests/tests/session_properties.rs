//! Property tests over random op scripts for the session machine. `run_ops` already checks
//! every contract invariant after each call (it panics on a violation); the properties
//! below additionally recompute the key ones from the recorded steps, independently of the
//! runner's model. The committed `session_ops` fuzz corpus is pinned here too.

use std::path::PathBuf;

use molecule_mcp_core::testing::session::{
    BodyKind, Delivered, EventKind, Op, Run, corpus_scenarios, decode_ops, encode_ops,
    is_escalation_point, logs, run_ops, sends, session_ops_case,
};
use molecule_mcp_core::{Action, LogLevel, Phase, RequestKind};
use proptest::prelude::*;

fn body() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::Empty),
        Just(BodyKind::StatusOk),
        any::<u8>().prop_map(BodyKind::Secret),
        Just(BodyKind::EmptySecret),
        Just(BodyKind::BlankSecret),
        Just(BodyKind::NonStringSecret),
        Just(BodyKind::NonJson),
        Just(BodyKind::JsonList),
        any::<u8>().prop_map(BodyKind::Minted),
        Just(BodyKind::EchoToken),
        any::<u8>().prop_map(BodyKind::Garbage),
        any::<u8>().prop_map(BodyKind::Large),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(200u16),
        4 => Just(401u16),
        2 => Just(403u16),
        1 => Just(204u16),
        1 => Just(500u16),
        1 => Just(503u16),
        1 => Just(429u16),
        1 => Just(400u16),
        1 => any::<u16>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u16>().prop_map(|ms| Op::Advance { ms }),
        3 => Just(Op::AdvanceToNextTimeout),
        4 => (any::<u8>(), status(), proptest::option::of(0u8..128), body())
            .prop_map(|(slot, status, retry_after, body)| Op::RespondStatus { slot, status, retry_after, body }),
        8 => (status(), body()).prop_map(|(status, body)| Op::Cycle { status, body }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(slot, kind)| Op::RespondTransport { slot, kind }),
        1 => any::<u64>().prop_map(Op::RespondBogusId),
        1 => (any::<u8>(), status()).prop_map(|(slot, status)| Op::RespondSettled { slot, status }),
        2 => any::<u8>().prop_map(|slot| Op::PersistOk { slot }),
        1 => any::<u8>().prop_map(|slot| Op::PersistErr { slot }),
        1 => Just(Op::SpuriousTimeout),
        1 => any::<u16>().prop_map(|back_ms| Op::StaleTimeout { back_ms }),
    ]
}

/// Mostly a registered session (sometimes with a minted token) followed by random ops,
/// with long runs of one heartbeat status so the 23rd/43rd auth failure is actually
/// reached, and an occasional shutdown (rare, since it ends the interesting part).
fn script() -> impl Strategy<Value = Vec<Op>> {
    let register = prop_oneof![
        3 => Just(Some(Op::Cycle { status: 200, body: BodyKind::StatusOk })),
        1 => body().prop_map(|body| Some(Op::Cycle { status: 200, body })),
        1 => any::<u8>().prop_map(|n| Some(Op::Cycle { status: 200, body: BodyKind::Minted(n) })),
        1 => Just(None),
    ];
    let chunk = prop_oneof![
        12 => proptest::collection::vec(op(), 1..12),
        4 => (status(), 1usize..50).prop_map(|(status, n)| vec![Op::Cycle { status, body: BodyKind::Empty }; n]),
        1 => Just(vec![Op::Shutdown]),
    ];
    (register, proptest::collection::vec(chunk, 0..8)).prop_map(|(register, chunks)| {
        let mut ops: Vec<Op> = register.into_iter().collect();
        ops.extend(chunks.into_iter().flatten());
        ops
    })
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(1000)
}

fn sent_ids(run: &Run) -> Vec<u64> {
    run.steps
        .iter()
        .flat_map(|s| sends(&s.actions))
        .map(|r| r.id.0)
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        session_ops_case(&data);
    }

    #[test]
    fn decoding_is_stable_under_reencoding(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ops = decode_ops(&data);
        prop_assert_eq!(decode_ops(&encode_ops(&ops)), ops);
    }

    #[test]
    fn request_ids_are_fresh_and_answers_target_only_sent_ids(ops in script()) {
        let run = run_ops(&ops);
        let ids = sent_ids(&run);
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing: {:?}", ids);
        // Every answer the session acted on targeted an id it had emitted before.
        let mut emitted = Vec::new();
        for step in &run.steps {
            if let Delivered::Response { id, kind: Some(_), .. } | Delivered::Transport { id, kind: Some(_) } = &step.delivered {
                prop_assert!(emitted.contains(&id.0), "answer to never-sent id {:?}", id);
            }
            emitted.extend(sends(&step.actions).iter().map(|r| r.id.0));
        }
    }

    #[test]
    fn poll_timeout_is_later_than_now_whenever_nothing_is_queued(ops in script()) {
        let run = run_ops(&ops);
        for step in &run.steps {
            match step.poll_timeout {
                Some(t) => prop_assert!(t > step.at, "poll_timeout {:?} <= now {:?} after {:?}", t, step.at, step.delivered),
                None => prop_assert!(step.status.phase != Phase::Running, "None while running"),
            }
        }
    }

    #[test]
    fn error_count_equals_escalation_points_reached(ops in script()) {
        let run = run_ops(&ops);
        let mut n = 0u32;
        let mut expected = 0usize;
        let mut escalation_errors = 0usize;
        for step in &run.steps {
            if let Delivered::Response { kind: Some(RequestKind::Heartbeat), status, .. } = step.delivered {
                if (200..300).contains(&status) {
                    n = 0;
                } else if status == 401 || status == 403 {
                    n += 1;
                    expected += usize::from(is_escalation_point(n));
                }
            }
            escalation_errors += logs(&step.actions, LogLevel::Error)
                .iter()
                .filter(|m| m.contains("consecutive heartbeat auth failures"))
                .count();
        }
        prop_assert_eq!(escalation_errors, expected);
    }

    #[test]
    fn auth_counter_counts_401_403_and_resets_on_2xx(ops in script()) {
        let run = run_ops(&ops);
        let mut previous = 0u32;
        for step in &run.steps {
            let now = step.status.consecutive_auth_failures;
            match step.delivered {
                Delivered::Response { kind: Some(RequestKind::Heartbeat), status, .. } if (200..300).contains(&status) => {
                    prop_assert_eq!(now, 0, "2xx must reset the counter");
                }
                Delivered::Response { kind: Some(RequestKind::Heartbeat), status: 401 | 403, .. } => {
                    prop_assert_eq!(now, previous + 1);
                }
                Delivered::Response { .. }
                | Delivered::Nothing
                | Delivered::Transport { .. }
                | Delivered::Persist { .. }
                | Delivered::Timeout
                | Delivered::Shutdown => {
                    prop_assert_eq!(now, previous, "only heartbeat answers move the counter ({:?})", step.delivered);
                }
            }
            previous = now;
        }
    }

    #[test]
    fn identical_inputs_give_identical_traces(ops in script()) {
        let a = run_ops(&ops);
        let b = run_ops(&ops);
        prop_assert!(a.events == b.events);
        prop_assert!(a.events.iter().any(|e| matches!(e.kind, EventKind::Action(_))));
    }
}

/// The ERROR-count property compares against `is_escalation_point`; pin that helper to the
/// ladder itself: n = 3, then every 20th consecutive failure (23, 43, …).
#[test]
fn escalation_points_are_3_then_every_twentieth() {
    let points: Vec<u32> = (0..=200).filter(|n| is_escalation_point(*n)).collect();
    assert_eq!(points, vec![3, 23, 43, 63, 83, 103, 123, 143, 163, 183]);
}

/// The script generator must actually reach the later escalation points (and resets), or
/// the ERROR-count and reset properties would hold vacuously there.
#[test]
fn script_generator_reaches_the_later_escalation_points() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = script();
    let total = 300;
    let (mut reached_23, mut reached_43, mut reset_after_3) = (0, 0, 0);
    for _ in 0..total {
        let run = run_ops(&strategy.new_tree(&mut runner).unwrap().current());
        let mut max = 0;
        let mut reset = false;
        let mut previous = 0;
        for step in &run.steps {
            let n = step.status.consecutive_auth_failures;
            max = max.max(n);
            reset |= previous >= 3 && n == 0;
            previous = n;
        }
        reached_23 += usize::from(max >= 23);
        reached_43 += usize::from(max >= 43);
        reset_after_3 += usize::from(reset);
    }
    assert!(
        reached_23 >= total / 20 && reached_43 >= 1 && reset_after_3 >= total / 20,
        "of {total} scripts: {reached_23} reach 23 failures, {reached_43} reach 43, \
         {reset_after_3} reset after an escalation"
    );
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/session_ops")
}

/// The committed corpus is exactly the encoding of the named scenarios (so it cannot rot
/// silently). `REGENERATE_SESSION_OPS_CORPUS=1` rewrites it.
#[test]
fn committed_session_ops_corpus_matches_the_scenarios() {
    let regenerate = std::env::var_os("REGENERATE_SESSION_OPS_CORPUS").is_some();
    for (name, ops) in corpus_scenarios() {
        let path = corpus_dir().join(name);
        let bytes = encode_ops(&ops);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, bytes,
            "{name} is stale; rerun with REGENERATE_SESSION_OPS_CORPUS=1"
        );
        assert_eq!(decode_ops(&committed), ops, "{name} does not round-trip");
        session_ops_case(&committed);
    }
}

/// Each scenario reaches the state its name promises (so the corpus seeds the fuzzer
/// with genuinely different behaviour).
#[test]
fn corpus_scenarios_reach_their_intended_states() {
    for (name, ops) in corpus_scenarios() {
        let run = run_ops(&ops);
        let actions: Vec<&Action> = run.steps.iter().flat_map(|s| s.actions.iter()).collect();
        let owned: Vec<Action> = actions.iter().map(|a| (*a).clone()).collect();
        let errors = logs(&owned, LogLevel::Error);
        let fatal = owned.iter().any(|a| matches!(a, Action::Fatal { .. }));
        let persists = owned
            .iter()
            .filter(|a| matches!(a, Action::Persist(_)))
            .count();
        let token_changed = owned
            .iter()
            .any(|a| matches!(a, Action::TokenChanged { .. }));
        match name {
            "happy_path" => assert!(
                errors.is_empty() && persists == 1 && run.status.heartbeats_ok == 3,
                "{name}"
            ),
            "auth_401_x3" => assert_eq!(errors.len(), 1, "{name}"),
            "auth_401_x23" => assert_eq!(
                (errors.len(), run.status.consecutive_auth_failures),
                (2, 23),
                "{name}"
            ),
            "auth_403_x25_then_200" => assert_eq!(
                (errors.len(), run.status.consecutive_auth_failures),
                (2, 1),
                "{name}"
            ),
            "auth_resets_on_200" => assert!(
                errors.is_empty() && run.status.consecutive_auth_failures == 2,
                "{name}"
            ),
            "rate_limited_retry_after" => {
                let beats: Vec<_> = run
                    .events
                    .iter()
                    .filter_map(|e| match &e.kind {
                        EventKind::Action(Action::SendHttp(r))
                            if r.kind == RequestKind::Heartbeat =>
                        {
                            Some(e.at)
                        }
                        EventKind::Action(_) | EventKind::Input(_) | EventKind::Timeout => None,
                    })
                    .collect();
                // The 95 s Retry-After is honoured up to RetryAfterCap::HEARTBEAT (60 s): a
                // longer silence would get the workspace marked offline.
                assert!(
                    beats.len() == 2
                        && beats[1].as_secs() >= 60
                        && beats[1] < std::time::Duration::from_secs(95),
                    "{name}: {beats:?}"
                );
            }
            "register_401_fatal" => assert!(
                fatal && matches!(run.status.phase, Phase::Failed(_)),
                "{name}"
            ),
            "register_503_then_retry" => assert!(
                token_changed && run.status.registered && errors.len() == 1,
                "{name}"
            ),
            "transport_failures_and_timeouts" => assert!(
                run.status.ignored_inputs >= 2 && !run.status.registered,
                "{name}"
            ),
            "shutdown_mid_flight" => assert!(
                run.status.phase == Phase::Stopped && run.status.ignored_inputs >= 3,
                "{name}"
            ),
            other => panic!("scenario {other} has no expectation here"),
        }
    }
}
