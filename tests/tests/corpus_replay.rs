//! Replays the committed fuzz corpora on stable, through exactly the `*_case(&[u8])`
//! functions the cargo-fuzz targets in `fuzz/fuzz_targets/` call (each target is a one-line
//! shim), so a corpus input that breaks an invariant fails `cargo test` without nightly or
//! libFuzzer:
//!
//! | target            | case function                                              |
//! |-------------------|------------------------------------------------------------|
//! | `session_ops`     | `molecule_mcp_core::testing::session::session_ops_case`    |
//! | `config_validate` | `molecule_mcp_core::testing::config::config_validate_case` |
//! | `inbox_ops`       | `molecule_mcp_core::testing::inbox::inbox_ops_case`        |
//! | `mcp_frames`      | `molecule_mcp_cli::mcp::fuzz::frames_case` (cli feature `fuzzing`) |
//!
//! Every file of each corpus directory is replayed (including inputs a fuzzing run added).
//! The `inbox_ops` seeds are, like the `session_ops` ones (`session_properties.rs`), the
//! encoding of named scripts below, so they cannot rot silently:
//! `REGENERATE_INBOX_OPS_CORPUS=1 cargo test -p molecule-mcp-tests --test corpus_replay`
//! rewrites them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use molecule_mcp_cli::mcp::fuzz::frames_case;
use molecule_mcp_core::testing::config::config_validate_case;
use molecule_mcp_core::testing::inbox::{
    InboxOp, PEER, decode_inbox_ops, encode_inbox_ops, inbox_ops_case, run_inbox_ops,
};
use molecule_mcp_core::testing::session::session_ops_case;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// Every regular file of `fuzz/corpus/<target>`, sorted by name. Panics when the
/// directory is missing or empty: a target without seeds is not being replayed.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "fuzz corpus {} is empty; commit at least one seed",
        dir.display()
    );
    files
}

/// Runs `case` on every file of the corpus; reports all failing files at once.
fn replay(target: &str, case: fn(&[u8])) -> usize {
    let files = corpus(target);
    let failed: Vec<&str> = files
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| case(bytes))).is_err())
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: corpus inputs break an invariant (see the panics above): {failed:?}"
    );
    files.len()
}

#[test]
fn session_ops_corpus_replays_cleanly() {
    assert!(replay("session_ops", session_ops_case) >= 10);
}

#[test]
fn config_validate_corpus_replays_cleanly() {
    assert!(replay("config_validate", config_validate_case) >= 10);
}

#[test]
fn inbox_ops_corpus_replays_cleanly() {
    assert!(replay("inbox_ops", inbox_ops_case) >= inbox_scenarios().len());
}

/// Each fuzz target is a `[[bin]]` of `fuzz/Cargo.toml`, calls the case function replayed
/// here, and has a non-empty committed corpus.
#[test]
fn every_fuzz_target_is_declared_seeded_and_replayed() {
    let replayed = [
        (
            "session_ops",
            "molecule_mcp_core::testing::session::session_ops_case",
        ),
        (
            "config_validate",
            "molecule_mcp_core::testing::config::config_validate_case",
        ),
        (
            "inbox_ops",
            "molecule_mcp_core::testing::inbox::inbox_ops_case",
        ),
        ("mcp_frames", "molecule_mcp_cli::mcp::fuzz::frames_case"),
    ];
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz manifest");
    let targets_dir = fuzz_dir().join("fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&targets_dir)
        .expect("fuzz_targets dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    targets.sort();
    let mut expected: Vec<String> = replayed.iter().map(|(t, _)| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(
        targets, expected,
        "a fuzz target was added or removed: list it (and replay its corpus) here"
    );
    for (target, case) in replayed {
        let shim = std::fs::read_to_string(targets_dir.join(format!("{target}.rs")))
            .expect("fuzz target source");
        assert!(
            shim.contains(case),
            "fuzz_targets/{target}.rs must call {case}"
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\""
            )),
            "fuzz/Cargo.toml lacks the [[bin]] for {target}"
        );
        assert!(!corpus(target).is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// The mcp_frames corpus (the MCP framing and request handling of the cli).
// ---------------------------------------------------------------------------------------

#[test]
fn committed_mcp_frames_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/mcp_frames");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        frames_case(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(
        count >= 10,
        "expected a committed corpus in {}",
        dir.display()
    );
}

#[test]
fn frames_case_accepts_tricky_inputs() {
    for data in [
        &b""[..],
        b"\n\n\r\n",
        b"\xff\xfe\n{}",
        b"{\"jsonrpc\":\"2.0\",\"id\":-0,\"method\":\"ping\"}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"ping\"}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"a\":[[[[]]]]}}}",
    ] {
        frames_case(data);
    }
}

/// A cheap stand-in for the fuzzer on stable: deterministic mutations of the corpus.
#[test]
fn mutated_corpus_cases_hold_the_fuzz_properties() {
    const TOKENS: [&[u8]; 12] = [
        b"\n",
        b"\r\n",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"null",
        b"\"id\":",
        b"\"method\":\"tools/call\"",
        b"\xf0\x9f",
        b"-1e999",
        b"\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}",
    ];
    // A total budget, spread over however many seeds the (fuzzer-grown) corpus holds, so
    // CI time does not grow with the corpus; every seed still gets several mutations.
    let budget: usize = std::env::var("MCP_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/mcp_frames");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("corpus file"))
        .collect();
    seeds.sort();
    let rounds = budget.div_ceil(seeds.len().max(1)).max(1);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: usize| -> usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    for seed in &seeds {
        for _ in 0..rounds {
            let mut data = seed.clone();
            for _ in 0..1 + next(4) {
                let at = next(data.len() + 1);
                match next(4) {
                    0 if !data.is_empty() => {
                        let i = at.min(data.len() - 1);
                        data[i] ^= 1 << next(8);
                    }
                    1 => data
                        .splice(at..at, TOKENS[next(TOKENS.len())].iter().copied())
                        .for_each(drop),
                    2 => data.truncate(at),
                    _ => {
                        let other = &seeds[next(seeds.len())];
                        let from = next(other.len() + 1);
                        data.splice(at..at, other[from..].iter().copied())
                            .for_each(drop);
                    }
                }
            }
            frames_case(&data);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The inbox_ops seeds.

const M: InboxOp = InboxOp::Message {
    peer: false,
    same_ts: false,
};
const PEER_MSG: InboxOp = InboxOp::Message {
    peer: true,
    same_ts: false,
};
const SAVED: InboxOp = InboxOp::Persist { ok: true };
const NOT_SAVED: InboxOp = InboxOp::Persist { ok: false };

/// Named scripts committed as `fuzz/corpus/inbox_ops/<name>`. The runner uses a page
/// limit of 3 and a queue bound of 5.
fn inbox_scenarios() -> Vec<(&'static str, Vec<InboxOp>)> {
    use InboxOp::{
        Advance, AdvanceToNextTimeout, AnswerPoll, AnswerUpload, FailPoll, Noise, Pop, Restart,
        TakeUnreturned, Upload,
    };
    vec![
        ("empty", vec![]),
        ("happy_path", vec![M, AnswerPoll, SAVED, Pop(0), SAVED]),
        (
            "peer_and_same_timestamp",
            vec![
                PEER_MSG,
                InboxOp::Message {
                    peer: false,
                    same_ts: true,
                },
                AnswerPoll,
                SAVED,
                TakeUnreturned,
                TakeUnreturned,
                Pop(1),
                SAVED,
                Pop(0),
                SAVED,
            ],
        ),
        (
            "noise_is_never_delivered",
            vec![
                Noise(0),
                Noise(1),
                Noise(2),
                Noise(3),
                M,
                AnswerPoll,
                AnswerPoll,
                SAVED,
                AnswerPoll,
                SAVED,
                Pop(0),
                SAVED,
            ],
        ),
        (
            "upload_with_message",
            vec![
                Upload { with_message: true },
                AnswerPoll,
                SAVED,
                AnswerUpload(0),
                SAVED,
                Pop(0),
                SAVED,
            ],
        ),
        (
            "upload_failures_and_restart",
            vec![
                Upload { with_message: true },
                Upload {
                    with_message: false,
                },
                AnswerPoll,
                AnswerPoll,
                SAVED,
                AnswerUpload(2),
                AdvanceToNextTimeout,
                AnswerUpload(3),
                SAVED,
                Restart,
                AnswerPoll,
                AnswerPoll,
                SAVED,
                AnswerUpload(1),
                SAVED,
            ],
        ),
        (
            "poll_failures_and_backoff",
            vec![
                FailPoll(0),
                AdvanceToNextTimeout,
                FailPoll(1),
                AdvanceToNextTimeout,
                FailPoll(2),
                AdvanceToNextTimeout,
                FailPoll(3),
                AdvanceToNextTimeout,
                FailPoll(5),
                AdvanceToNextTimeout,
                FailPoll(6),
                AdvanceToNextTimeout,
                FailPoll(7),
                AdvanceToNextTimeout,
                M,
                AnswerPoll,
                SAVED,
            ],
        ),
        (
            "cursor_gone_410",
            vec![
                M,
                AnswerPoll,
                SAVED,
                Pop(0),
                SAVED,
                M,
                FailPoll(4),
                AnswerPoll,
                SAVED,
                AnswerPoll,
                SAVED,
            ],
        ),
        (
            "crash_before_save",
            vec![
                M,
                AnswerPoll,
                Restart,
                AnswerPoll,
                SAVED,
                Pop(0),
                Restart,
                AnswerPoll,
            ],
        ),
        (
            "failed_state_write",
            vec![
                M,
                AnswerPoll,
                NOT_SAVED,
                Advance(5_000),
                SAVED,
                Pop(0),
                NOT_SAVED,
                AdvanceToNextTimeout,
                SAVED,
            ],
        ),
        (
            "paging_and_queue_bound",
            vec![
                M,
                M,
                M,
                PEER_MSG,
                M,
                M,
                PEER_MSG,
                M,
                AnswerPoll,
                AnswerPoll,
                AnswerPoll,
                SAVED,
                AnswerPoll,
                SAVED,
                Pop(0),
                Pop(0),
                SAVED,
                AdvanceToNextTimeout,
                AnswerPoll,
                SAVED,
                TakeUnreturned,
                Pop(4),
                SAVED,
            ],
        ),
    ]
}

fn count(trace: &[String], prefix: &str, needle: &str) -> usize {
    trace
        .iter()
        .filter(|l| l.starts_with(prefix) && l.contains(needle))
        .count()
}

fn arrived(trace: &[String], needle: &str) -> usize {
    count(trace, "Arrived(", needle)
}

/// Activity id of the n-th row the runner's feed creates (1-based).
fn row(n: u64) -> String {
    molecule_mcp_core::testing::inbox::row_uuid(n)
}

/// The committed seeds are exactly the encodings of the named scripts.
#[test]
fn committed_inbox_ops_corpus_matches_the_scenarios() {
    let regenerate = std::env::var_os("REGENERATE_INBOX_OPS_CORPUS").is_some();
    let dir = corpus_dir("inbox_ops");
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, ops) in inbox_scenarios() {
        let path = dir.join(name);
        let bytes = encode_inbox_ops(&ops);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, bytes,
            "{name} is stale; rerun with REGENERATE_INBOX_OPS_CORPUS=1"
        );
        assert_eq!(
            decode_inbox_ops(&committed),
            ops,
            "{name} does not round-trip"
        );
    }
}

/// Each seed reaches the behaviour its name promises, so the corpus starts the fuzzer from
/// genuinely different states. (The trace includes the runner's settle phase, which
/// answers everything truthfully and pops what arrives.)
#[test]
fn inbox_scenarios_reach_their_intended_states() {
    for (name, ops) in inbox_scenarios() {
        let trace = run_inbox_ops(&ops);
        let errors = count(&trace, "Log(", "level: Error");
        let warns = count(&trace, "Log(", "level: Warn");
        match name {
            "empty" => assert!(
                arrived(&trace, "") == 0 && count(&trace, "SendHttp(", "since_secs=") == 1,
                "{name}: {trace:#?}"
            ),
            "happy_path" => assert!(
                arrived(&trace, &row(1)) == 1 && errors == 0 && warns == 0,
                "{name}: {trace:#?}"
            ),
            "peer_and_same_timestamp" => assert!(
                arrived(&trace, "") == 2 && arrived(&trace, &format!("peer_id: \"{PEER}\"")) == 1,
                "{name}: {trace:#?}"
            ),
            "noise_is_never_delivered" => assert!(
                arrived(&trace, "") == 1
                    && arrived(&trace, &row(5)) == 1
                    && count(&trace, "Log(", "not delivering activity") == 3
                    && count(&trace, "Log(", "no file_id") == 1,
                "{name}: {trace:#?}"
            ),
            "upload_with_message" => assert!(
                count(&trace, "FetchUpload(", "file-1") == 1
                    && arrived(&trace, "workspace:") == 1
                    && count(&trace, "SendHttp(", "/pending-uploads/file-1/ack") == 1,
                "{name}: {trace:#?}"
            ),
            "upload_failures_and_restart" => assert!(
                count(&trace, "Log(", "retrying in") == 1
                    && count(&trace, "Log(", "level: Warn, workspace_id") >= 1
                    && count(&trace, "Log(", "no longer on the platform") == 1
                    && count(
                        &trace,
                        "Log(",
                        "restored 0 queued message(s) and 1 unfinished"
                    ) == 1
                    && arrived(&trace, "platform-pending:") == 1,
                "{name}: {trace:#?}"
            ),
            "poll_failures_and_backoff" => assert!(
                [
                    "HTTP 500",
                    "HTTP 401",
                    "(429)",
                    "Connect",
                    "non-JSON",
                    "not a list"
                ]
                .iter()
                .all(|needle| count(&trace, "Log(", needle) >= 1)
                    && count(&trace, "Log(", "polling works again after 7") == 1
                    && arrived(&trace, &row(1)) == 1,
                "{name}: {trace:#?}"
            ),
            "cursor_gone_410" => assert!(
                count(&trace, "Log(", "(410)") == 1
                    && arrived(&trace, &row(1)) == 1
                    && arrived(&trace, &row(2)) == 1,
                "{name}: the popped message must not come back after the 410 replay: {trace:#?}"
            ),
            "crash_before_save" => assert!(
                arrived(&trace, &row(1)) == 2
                    && count(&trace, "Log(", "restored 1 queued message(s)") == 1,
                "{name}: {trace:#?}"
            ),
            "failed_state_write" => assert!(
                errors == 1
                    && count(&trace, "Log(", "could not save the inbox state") == 1
                    && count(&trace, "Log(", "state saved again") == 1,
                "{name}: {trace:#?}"
            ),
            "paging_and_queue_bound" => assert!(
                (1..=8).all(|n| arrived(&trace, &row(n)) == 1)
                    && count(&trace, "SendHttp(", "before_ts=") >= 2
                    && count(&trace, "Log(", "limit 5 messages") == 1
                    && count(&trace, "Log(", "queue has room again") == 1,
                "{name}: {trace:#?}"
            ),
            other => panic!("scenario {other} has no expectation here"),
        }
    }
}
