//! Configuration validation (`molecule_mcp_core::config`) and its operator text.
//!
//! The first block mirrors the validation tests of the Python seed file
//! (`test_mcp_cli.py`, the original's test file), one test per seed test with the same name, asserting
//! what the Python test asserts on stderr against `ConfigErrors::render`. The rest covers
//! the token file, `MOLECULE_WORKSPACES`, flags, numeric settings, the agent card pins and a
//! property test over arbitrary environments.

use std::collections::BTreeMap;
use std::time::Duration;

use molecule_mcp_core::config::{
    ConfigError, ConfigErrors, FileRead, MissingItem, RawConfig, TokenFileProblem, TokenSource,
    ValidConfig, is_flag_on, token_file_path, validate,
};
use molecule_mcp_core::help::TOKENS_TAB_POINTER;
use molecule_mcp_core::session::DEFAULT_REQUEST_TIMEOUT;
use molecule_mcp_core::{PlatformUrlError, Secret};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::json;

const ID: &str = "00000000-0000-0000-0000-000000000000";
const ID2: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e8f7a6b5c4d";
const STATE_DIR: &str = "/tmp/state";

/// What the shell would pass: the env, the token file read only when `token_file_path`
/// names one, and `.auth_token` in the state dir.
fn raw_with(pairs: &[(&str, &str)], token_file: FileRead, state: FileRead) -> RawConfig {
    let env: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let token_file = token_file_path(&env).map(|_| token_file);
    RawConfig {
        env,
        token_file,
        state_auth_token: state,
        state_dir: STATE_DIR.to_owned(),
    }
}

fn raw(pairs: &[(&str, &str)]) -> RawConfig {
    raw_with(pairs, FileRead::Missing, FileRead::Missing)
}

fn contents(s: &str) -> FileRead {
    FileRead::Contents(s.as_bytes().to_vec())
}

fn ok(raw: &RawConfig) -> ValidConfig {
    match validate(raw) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{}", e.render(raw)),
    }
}

/// The errors and their rendering.
fn err(raw: &RawConfig) -> (ConfigErrors, String) {
    match validate(raw) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => {
            let text = e.render(raw);
            (e, text)
        }
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

// ---------------------------------------------------------------------------------------
// The seed file's validation tests.

#[test]
fn test_missing_workspace_id_exits_with_message() {
    let (errors, text) = err(&raw(&[]));
    assert!(text.contains("WORKSPACE_ID"));
    assert!(text.contains("PLATFORM_URL"));
    assert!(text.contains("MOLECULE_WORKSPACE_TOKEN"));
    // All three at once, in the documented order.
    assert_eq!(
        errors.0,
        vec![
            ConfigError::Missing(MissingItem::WorkspaceId),
            ConfigError::Missing(MissingItem::PlatformUrl),
            ConfigError::Missing(MissingItem::Token),
        ]
    );
    assert!(
        has_line(
            &text,
            "Currently missing: WORKSPACE_ID, PLATFORM_URL, MOLECULE_WORKSPACE_TOKEN"
        ),
        "{text}"
    );
}

#[test]
fn test_only_workspace_id_missing() {
    let (errors, text) = err(&raw(&[
        ("PLATFORM_URL", "http://localhost:8080"),
        ("MOLECULE_WORKSPACE_TOKEN", "tok"),
    ]));
    assert!(text.contains("Currently missing: WORKSPACE_ID"), "{text}");
    assert!(
        has_line(&text, "Currently missing: WORKSPACE_ID"),
        "only WORKSPACE_ID may be listed:\n{text}"
    );
    assert_eq!(
        errors.0,
        vec![ConfigError::Missing(MissingItem::WorkspaceId)]
    );
}

#[test]
fn test_only_platform_url_missing() {
    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", ID),
        ("MOLECULE_WORKSPACE_TOKEN", "tok"),
    ]));
    assert!(text.contains("Currently missing: PLATFORM_URL"), "{text}");
    assert!(has_line(&text, "Currently missing: PLATFORM_URL"), "{text}");
    assert_eq!(
        errors.0,
        vec![ConfigError::Missing(MissingItem::PlatformUrl)]
    );
}

#[test]
fn test_only_token_missing() {
    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "http://localhost:8080"),
    ]));
    assert!(text.contains("MOLECULE_WORKSPACE_TOKEN"));
    assert!(
        text.contains("MOLECULE_WORKSPACE_TOKEN_FILE"),
        "the help names the file alternative:\n{text}"
    );
    assert!(
        has_line(&text, "Currently missing: MOLECULE_WORKSPACE_TOKEN"),
        "{text}"
    );
    assert_eq!(errors.0, vec![ConfigError::Missing(MissingItem::Token)]);
}

#[test]
fn test_token_file_satisfies_token_requirement() {
    let raw = raw_with(
        &[
            ("WORKSPACE_ID", ID),
            ("PLATFORM_URL", "http://localhost:8080"),
        ],
        FileRead::Missing,
        contents("file-token"),
    );
    let config = ok(&raw);
    assert_eq!(config.workspaces.len(), 1);
    assert_eq!(config.workspaces[0].token, Secret::new("file-token"));
}

#[test]
fn test_env_token_satisfies_token_requirement() {
    let config = ok(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "http://localhost:8080"),
        ("MOLECULE_WORKSPACE_TOKEN", "env-token"),
    ]));
    assert_eq!(config.workspaces[0].token, Secret::new("env-token"));
    assert_eq!(config.workspaces[0].token_source, TokenSource::EnvVar);
}

#[test]
fn test_whitespace_only_env_treated_as_missing() {
    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", "   "),
        ("PLATFORM_URL", "http://localhost:8080"),
        ("MOLECULE_WORKSPACE_TOKEN", "tok"),
    ]));
    assert!(text.contains("WORKSPACE_ID"));
    // Missing, not "invalid": blank is absent.
    assert_eq!(
        errors.0,
        vec![ConfigError::Missing(MissingItem::WorkspaceId)]
    );
}

#[test]
fn test_help_lists_canvas_tokens_tab_pointer() {
    let (_, text) = err(&raw(&[]));
    assert!(text.contains("Tokens tab") || text.to_lowercase().contains("canvas"));
    assert_eq!(
        text.lines().last(),
        Some(TOKENS_TAB_POINTER),
        "the pointer is the last line:\n{text}"
    );
}

#[test]
fn test_token_resolved_from_env_when_no_file() {
    let config = ok(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "https://test.moleculesai.app"),
        ("MOLECULE_WORKSPACE_TOKEN", "env-token"),
    ]));
    let session = config.session_config(0).unwrap();
    assert_eq!(session.platform.base(), "https://test.moleculesai.app");
    assert_eq!(session.workspace_id, ID);
    assert_eq!(session.token.expose(), "env-token");
    assert_eq!(session.token_source, "MOLECULE_WORKSPACE_TOKEN");
}

#[test]
fn test_token_resolved_from_file_when_no_env() {
    let raw = raw_with(
        &[
            ("WORKSPACE_ID", ID),
            ("PLATFORM_URL", "https://test.moleculesai.app"),
        ],
        FileRead::Missing,
        contents("file-token"),
    );
    let session = ok(&raw).session_config(0).unwrap();
    assert_eq!(session.token.expose(), "file-token");
    assert_eq!(session.token_source, "/tmp/state/.auth_token");
}

#[test]
fn test_heartbeat_disable_env_skips_both() {
    let base = [
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "https://test.moleculesai.app"),
        ("MOLECULE_WORKSPACE_TOKEN", "tok"),
    ];
    let with = |value: &str| {
        let mut pairs = base.to_vec();
        pairs.push(("MOLECULE_MCP_DISABLE_HEARTBEAT", value));
        ok(&raw(&pairs)).heartbeat_enabled
    };
    assert!(!with("1"), "=1 disables register and heartbeat");
    assert!(!with("true"));
    // The original treated `0`/`false` as "set"; here they mean off.
    assert!(with("0"));
    assert!(with("false"));
    assert!(with(" OFF "));
    assert!(with(""));
    assert!(ok(&raw(&base)).heartbeat_enabled);
}

// ---------------------------------------------------------------------------------------
// Token sources and precedence.

const SINGLE: [(&str, &str); 3] = [
    ("WORKSPACE_ID", ID),
    ("PLATFORM_URL", "http://h"),
    ("MOLECULE_WORKSPACE_TOKEN_FILE", "/run/tok"),
];

#[test]
fn token_file_path_is_only_named_when_it_will_be_used() {
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    assert_eq!(
        token_file_path(&env(&[("MOLECULE_WORKSPACE_TOKEN_FILE", " /run/tok ")])),
        Some("/run/tok")
    );
    assert_eq!(
        token_file_path(&env(&[("MOLECULE_WORKSPACE_TOKEN_FILE", "  ")])),
        None
    );
    assert_eq!(token_file_path(&env(&[])), None);
    assert_eq!(
        token_file_path(&env(&[
            ("MOLECULE_WORKSPACE_TOKEN_FILE", "/t"),
            ("MOLECULE_WORKSPACE_TOKEN", "x")
        ])),
        None
    );
    assert_eq!(
        token_file_path(&env(&[
            ("MOLECULE_WORKSPACE_TOKEN_FILE", "/t"),
            ("MOLECULE_WORKSPACE_TOKEN", " ")
        ])),
        Some("/t")
    );
    assert_eq!(
        token_file_path(&env(&[
            ("MOLECULE_WORKSPACE_TOKEN_FILE", "/t"),
            ("MOLECULE_WORKSPACES", "[]")
        ])),
        None
    );
    assert_eq!(
        token_file_path(&env(&[
            ("MOLECULE_WORKSPACE_TOKEN_FILE", "/t"),
            ("MOLECULE_WORKSPACES", " ")
        ])),
        Some("/t")
    );
}

#[test]
fn env_token_wins_over_both_files_and_is_trimmed() {
    let mut pairs = SINGLE.to_vec();
    pairs.push(("MOLECULE_WORKSPACE_TOKEN", "  env-token\n"));
    let config = ok(&raw_with(
        &pairs,
        contents("file-token"),
        contents("state-token"),
    ));
    assert_eq!(config.workspaces[0].token.expose(), "env-token");
    assert_eq!(config.workspaces[0].token_source, TokenSource::EnvVar);
}

#[test]
fn token_file_wins_over_state_file_and_is_trimmed() {
    let config = ok(&raw_with(
        &SINGLE,
        contents("\n  file-token \r\n"),
        contents("state-token"),
    ));
    let ws = &config.workspaces[0];
    assert_eq!(ws.token.expose(), "file-token");
    assert_eq!(
        ws.token_source,
        TokenSource::TokenFile {
            path: "/run/tok".into()
        }
    );
    assert_eq!(
        config.session_config(0).unwrap().token_source,
        "MOLECULE_WORKSPACE_TOKEN_FILE ('/run/tok')"
    );
}

#[test]
fn every_token_file_problem_is_terminal_and_named() {
    let cases: [(FileRead, TokenFileProblem, &str); 9] = [
        (
            FileRead::Missing,
            TokenFileProblem::Missing,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE points to '/run/tok' which does not exist",
        ),
        (
            FileRead::PermissionDenied,
            TokenFileProblem::PermissionDenied,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' is not readable (permission denied)",
        ),
        (
            FileRead::NotRegularFile,
            TokenFileProblem::Unreadable("not a regular file (is it a directory?)".into()),
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' could not be read: not a regular file (is it a directory?)",
        ),
        (
            FileRead::Unreadable("Input/output error (os error 5)".into()),
            TokenFileProblem::Unreadable("Input/output error (os error 5)".into()),
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' could not be read: Input/output error (os error 5)",
        ),
        (
            FileRead::Contents(vec![0xff, 0xfe, b'a']),
            TokenFileProblem::NotUtf8,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' is not valid UTF-8",
        ),
        (
            contents(" \n\t "),
            TokenFileProblem::Empty,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' is empty",
        ),
        (
            contents("secret-one\nsecret-two\n"),
            TokenFileProblem::InternalWhitespace,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' contains internal whitespace — expected a single token",
        ),
        (
            contents("secret-one secret-two"),
            TokenFileProblem::InternalWhitespace,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' contains internal whitespace — expected a single token",
        ),
        (
            contents("secret\u{7}bell"),
            TokenFileProblem::ControlCharacters,
            "molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' contains control characters — expected a single token",
        ),
    ];
    for (read, problem, line) in cases {
        // A usable `.auth_token` is present: the file problem must still be reported.
        let (errors, text) = err(&raw_with(&SINGLE, read.clone(), contents("state-token")));
        assert_eq!(
            errors.0,
            vec![ConfigError::TokenFile {
                path: "/run/tok".into(),
                problem
            }],
            "{read:?}"
        );
        assert!(
            has_line(&text, line),
            "{read:?}: expected line {line:?} in:\n{text}"
        );
        assert!(
            !text.contains("secret"),
            "token file contents leaked:\n{text}"
        );
        assert!(!text.contains("Currently missing"), "{text}");
        assert_eq!(text.lines().last(), Some(TOKENS_TAB_POINTER));
    }
}

#[test]
fn token_file_path_with_control_characters_is_escaped() {
    let pairs = [
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "http://h"),
        ("MOLECULE_WORKSPACE_TOKEN_FILE", "/run/\u{1b}[2Jtok"),
    ];
    let (_, text) = err(&raw_with(&pairs, FileRead::Missing, FileRead::Missing));
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("'/run/\\u{1b}[2Jtok'"), "{text}");
}

#[test]
fn shell_that_did_not_read_the_token_file_is_an_error_not_a_fallback() {
    let mut raw = raw_with(&SINGLE, FileRead::Missing, contents("state-token"));
    raw.token_file = None;
    let (errors, _) = err(&raw);
    assert!(
        matches!(
            &errors.0[..],
            [ConfigError::TokenFile {
                problem: TokenFileProblem::Unreadable(_),
                ..
            }]
        ),
        "{errors:?}"
    );
}

#[test]
fn unusable_state_file_counts_as_no_token() {
    let pairs = [("WORKSPACE_ID", ID), ("PLATFORM_URL", "http://h")];
    for state in [
        FileRead::Missing,
        FileRead::NotRegularFile,
        FileRead::PermissionDenied,
        FileRead::Unreadable("boom".into()),
        FileRead::Contents(vec![0xff, 0x00]),
        contents(""),
        contents("  \n"),
    ] {
        let (errors, _) = err(&raw_with(&pairs, FileRead::Missing, state.clone()));
        assert_eq!(
            errors.0,
            vec![ConfigError::Missing(MissingItem::Token)],
            "{state:?}"
        );
    }
}

#[test]
fn malformed_env_or_state_token_is_reported_without_its_value() {
    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "http://h"),
        ("MOLECULE_WORKSPACE_TOKEN", "secret one"),
    ]));
    assert_eq!(
        errors.0,
        vec![ConfigError::MalformedToken {
            source: TokenSource::EnvVar
        }]
    );
    assert!(
        text.contains("MOLECULE_WORKSPACE_TOKEN contains whitespace"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");

    let raw = raw_with(
        &[("WORKSPACE_ID", ID), ("PLATFORM_URL", "http://h")],
        FileRead::Missing,
        contents("secret\none"),
    );
    let (errors, text) = err(&raw);
    assert_eq!(
        errors.0,
        vec![ConfigError::MalformedToken {
            source: TokenSource::StateFile {
                path: "/tmp/state/.auth_token".into()
            }
        }]
    );
    assert!(text.contains("/tmp/state/.auth_token"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

// ---------------------------------------------------------------------------------------
// WORKSPACE_ID, PLATFORM_URL, ordering.

#[test]
fn workspace_id_is_trimmed_and_lower_cased() {
    let config = ok(&raw(&[
        ("WORKSPACE_ID", " 0A1B2C3D-4E5F-4A6B-8C7D-9E8F7A6B5C4D\n"),
        ("PLATFORM_URL", "http://h"),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ]));
    assert_eq!(config.workspaces[0].id, ID2);
}

#[test]
fn non_uuid_workspace_id_is_rejected_with_its_value() {
    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", "ws-123"),
        ("PLATFORM_URL", "http://h"),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ]));
    assert_eq!(
        errors.0,
        vec![ConfigError::InvalidWorkspaceId {
            value: "ws-123".into()
        }]
    );
    assert!(
        text.starts_with("molecule-mcp: WORKSPACE_ID 'ws-123' is not a workspace UUID"),
        "{text}"
    );
    assert!(text.contains("8-4-4-4-12"), "{text}");
    assert!(!text.contains("Currently missing"), "{text}");
    assert!(
        !text.contains(TOKENS_TAB_POINTER),
        "no token problem here:\n{text}"
    );
}

#[test]
fn platform_url_is_normalised_or_rejected_with_masked_value() {
    let config = ok(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", " https://Tenant.Example.com/ "),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ]));
    assert_eq!(config.platform.base(), "https://tenant.example.com");

    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "https://me:hunter2@host"),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ]));
    assert!(
        matches!(
            &errors.0[..],
            [ConfigError::InvalidPlatformUrl {
                reason: PlatformUrlError::Malformed(_),
                ..
            }]
        ),
        "{errors:?}"
    );
    assert!(text.contains("'https://***@host'"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let (errors, text) = err(&raw(&[
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "localhost:8080"),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ]));
    assert_eq!(
        errors.0,
        vec![ConfigError::InvalidPlatformUrl {
            value: "localhost:8080".into(),
            reason: PlatformUrlError::BadScheme
        }]
    );
    assert!(
        text.contains("PLATFORM_URL 'localhost:8080' must start with http:// or https://"),
        "{text}"
    );
    assert!(
        text.contains("https://your-tenant.staging.moleculesai.app"),
        "{text}"
    );
}

#[test]
fn all_errors_are_reported_in_order() {
    let pairs = [
        ("WORKSPACE_ID", "nope"),
        ("PLATFORM_URL", "ftp://x"),
        ("MOLECULE_WORKSPACE_TOKEN_FILE", "/run/tok"),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "0"),
    ];
    let (errors, text) = err(&raw_with(&pairs, FileRead::Missing, FileRead::Missing));
    assert!(
        matches!(
            &errors.0[..],
            [
                ConfigError::InvalidWorkspaceId { .. },
                ConfigError::InvalidPlatformUrl { .. },
                ConfigError::TokenFile { .. },
                ConfigError::InvalidHeartbeatInterval { .. },
            ]
        ),
        "{errors:?}"
    );
    let prefixed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("molecule-mcp: "))
        .collect();
    assert_eq!(prefixed.len(), 4, "{text}");
}

#[test]
fn missing_and_invalid_render_together() {
    let pairs = [
        ("WORKSPACE_ID", "nope"),
        ("MOLECULE_WORKSPACE_TOKEN_FILE", "/run/tok"),
    ];
    let (errors, text) = err(&raw_with(
        &pairs,
        FileRead::PermissionDenied,
        FileRead::Missing,
    ));
    assert_eq!(errors.missing(), vec![MissingItem::PlatformUrl]);
    assert!(text.starts_with("molecule-mcp: missing required environment.\n\nSet the following before running molecule-mcp:\n"), "{text}");
    assert!(has_line(&text, "Currently missing: PLATFORM_URL"), "{text}");
    assert!(text.contains("molecule-mcp: WORKSPACE_ID 'nope'"), "{text}");
    assert!(text.contains("molecule-mcp: MOLECULE_WORKSPACE_TOKEN_FILE='/run/tok' is not readable (permission denied)"), "{text}");
    assert_eq!(text.lines().last(), Some(TOKENS_TAB_POINTER));
}

#[test]
fn help_block_has_the_reference_lines_in_order() {
    let (_, text) = err(&raw(&[]));
    let order = [
        "molecule-mcp: missing required environment.",
        "Set the following before running molecule-mcp:",
        "WORKSPACE_ID",
        "your workspace UUID (from canvas)",
        "(or MOLECULE_WORKSPACES for several)",
        "PLATFORM_URL",
        "base URL of your Molecule platform (e.g. https://your-tenant.staging.moleculesai.app)",
        "MOLECULE_WORKSPACE_TOKEN",
        "bearer token for this workspace (canvas → Tokens tab)",
        "OR set MOLECULE_WORKSPACE_TOKEN_FILE to a path that holds the token",
        "(keeps the secret out of shell history and MCP-host config plaintext)",
        "'/tmp/state/.auth_token'",
        "\n\nCurrently missing: ",
    ];
    let mut at = 0;
    for piece in order {
        let found = text[at..]
            .find(piece)
            .unwrap_or_else(|| panic!("{piece:?} missing or out of order in:\n{text}"));
        at += found + piece.len();
    }
    assert!(
        text.starts_with("molecule-mcp: missing required environment.\n\n"),
        "{text}"
    );
    // Display has no state-dir hint but is otherwise the same.
    let errors = validate(&raw(&[])).unwrap_err();
    assert!(!errors.to_string().contains(".auth_token"));
    assert!(
        errors
            .to_string()
            .contains("Currently missing: WORKSPACE_ID, PLATFORM_URL, MOLECULE_WORKSPACE_TOKEN")
    );
}

// ---------------------------------------------------------------------------------------
// MOLECULE_WORKSPACES.

fn multi(json: &str) -> RawConfig {
    raw_with(
        &[
            ("MOLECULE_WORKSPACES", json),
            ("PLATFORM_URL", "http://h"),
            // Ignored in multi-workspace mode, even when invalid.
            ("WORKSPACE_ID", "not-a-uuid"),
            ("MOLECULE_WORKSPACE_TOKEN", "ignored env token"),
            ("MOLECULE_WORKSPACE_TOKEN_FILE", "/run/tok"),
        ],
        FileRead::Missing,
        contents("state-token"),
    )
}

/// The `  - ` lines of an invalid-workspaces rendering.
fn workspace_problems(raw: &RawConfig) -> Vec<String> {
    let (errors, text) = err(raw);
    assert!(
        matches!(&errors.0[..], [ConfigError::InvalidWorkspaces(_)]),
        "{errors:?}"
    );
    assert!(
        has_line(&text, "molecule-mcp: invalid MOLECULE_WORKSPACES:"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some(TOKENS_TAB_POINTER));
    text.lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn multi_workspace_config_is_parsed_in_order() {
    let upper = ID2.to_uppercase();
    let raw = multi(&format!(
        r#"[{{"id":" {ID} ","token":" tok-a\n"}},{{"id":"{upper}","token":"tok-b","name":"ignored"}}]"#
    ));
    assert_eq!(
        token_file_path(&raw.env),
        None,
        "multi mode never reads the token file"
    );
    let config = ok(&raw);
    assert!(config.multi_workspace);
    let got: Vec<(&str, &str, &TokenSource)> = config
        .workspaces
        .iter()
        .map(|w| (w.id.as_str(), w.token.expose(), &w.token_source))
        .collect();
    assert_eq!(
        got,
        vec![
            (ID, "tok-a", &TokenSource::WorkspacesEntry { index: 0 }),
            (ID2, "tok-b", &TokenSource::WorkspacesEntry { index: 1 }),
        ]
    );
    assert_eq!(
        config.session_config(1).unwrap().token_source,
        "MOLECULE_WORKSPACES[1]"
    );
    assert_eq!(
        config.agent_card(&config.workspaces[1].id),
        json!({"name": "molecule-mcp-0a1b2c3d", "skills": []})
    );
}

#[test]
fn multi_workspace_null_id_and_number_token_are_rejected() {
    // The original turned a JSON null into the id "None"; here it is an error.
    let problems = workspace_problems(&multi(
        r#"[{"id":null,"token":"secret-a"},{"id":"00000000-0000-0000-0000-000000000000","token":12345}]"#,
    ));
    assert_eq!(
        problems,
        vec![
            "MOLECULE_WORKSPACES[0] 'id' must be a JSON string — got null",
            "MOLECULE_WORKSPACES[1] 'token' must be a JSON string — got number",
        ]
    );
}

#[test]
fn multi_workspace_non_uuid_and_duplicate_ids_are_rejected() {
    let problems = workspace_problems(&multi(&format!(
        r#"[{{"id":"{ID}","token":"secret-a"}},{{"id":"ws-1","token":"secret-b"}},{{"id":"{}","token":"secret-c"}}]"#,
        ID
    )));
    assert_eq!(
        problems,
        vec![
            "MOLECULE_WORKSPACES[1] 'id' 'ws-1' is not a workspace UUID (expected 8-4-4-4-12 hex digits)".to_owned(),
            format!("MOLECULE_WORKSPACES[2] duplicate workspace id '{ID}' (same as MOLECULE_WORKSPACES[0])"),
        ]
    );
    // Case-insensitive duplicates.
    let problems = workspace_problems(&multi(&format!(
        r#"[{{"id":"{ID2}","token":"a"}},{{"id":"{}","token":"b"}}]"#,
        ID2.to_uppercase()
    )));
    assert_eq!(
        problems,
        vec![format!(
            "MOLECULE_WORKSPACES[1] duplicate workspace id '{ID2}' (same as MOLECULE_WORKSPACES[0])"
        )]
    );
}

#[test]
fn multi_workspace_shape_errors() {
    let shape = r#"MOLECULE_WORKSPACES must be a non-empty JSON array of {"id":"...","token":"..."} objects"#;
    for json in [
        "[]",
        "{}",
        r#"{"id":"x","token":"y"}"#,
        "\"str\"",
        "42",
        "null",
        "true",
    ] {
        assert_eq!(workspace_problems(&multi(json)), vec![shape], "{json}");
    }
    let problems = workspace_problems(&multi(r#"[{"id": "x", "token": "secret"#));
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("MOLECULE_WORKSPACES is not valid JSON ("),
        "{problems:?}"
    );
    assert!(
        problems[0].ends_with(r#"). Expected: '[{"id":"<wsid>","token":"<tok>"},{...}]'"#),
        "{problems:?}"
    );
    assert!(!problems[0].contains("secret"), "{problems:?}");
}

#[test]
fn multi_workspace_entry_problems_are_all_listed() {
    let json = format!(
        r#"[7, ["x"], {{"token":"secret-a"}}, {{"id":"{ID}"}}, {{"id":"  ","token":"  "}}, {{"id":"{ID2}","token":"secret b"}}, {{"id":true,"token":{{"v":"secret-c"}}}}]"#
    );
    let raw = multi(&json);
    let problems = workspace_problems(&raw);
    assert_eq!(
        problems,
        vec![
            "MOLECULE_WORKSPACES[0] is not an object — got number",
            "MOLECULE_WORKSPACES[1] is not an object — got array",
            "MOLECULE_WORKSPACES[2] missing 'id'",
            "MOLECULE_WORKSPACES[3] missing 'token'",
            "MOLECULE_WORKSPACES[4] 'id' is blank",
            "MOLECULE_WORKSPACES[4] 'token' is blank",
            "MOLECULE_WORKSPACES[5] 'token' contains internal whitespace — expected a single token",
            "MOLECULE_WORKSPACES[6] 'id' must be a JSON string — got boolean",
            "MOLECULE_WORKSPACES[6] 'token' must be a JSON string — got object",
        ]
    );
    assert!(!validate(&raw).unwrap_err().render(&raw).contains("secret"));
}

#[test]
fn multi_workspace_with_missing_platform_url_reports_both() {
    let mut raw = multi("[]");
    raw.env.remove("PLATFORM_URL");
    let (errors, text) = err(&raw);
    assert_eq!(errors.missing(), vec![MissingItem::PlatformUrl]);
    assert!(has_line(&text, "Currently missing: PLATFORM_URL"), "{text}");
    assert!(
        has_line(&text, "molecule-mcp: invalid MOLECULE_WORKSPACES:"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Flags and numbers.

fn single_with(extra: &[(&str, &str)]) -> RawConfig {
    let mut pairs = vec![
        ("WORKSPACE_ID", ID),
        ("PLATFORM_URL", "http://h"),
        ("MOLECULE_WORKSPACE_TOKEN", "t"),
    ];
    pairs.extend_from_slice(extra);
    raw(&pairs)
}

#[test]
fn is_flag_on_rules() {
    for off in [
        None,
        Some(""),
        Some(" "),
        Some("0"),
        Some(" 0 "),
        Some("false"),
        Some("False"),
        Some("NO"),
        Some("off"),
    ] {
        assert!(!is_flag_on(off), "{off:?}");
    }
    for on in ["1", "true", "yes", "on", "enabled", "-1", "0.0"] {
        assert!(is_flag_on(Some(on)), "{on:?}");
    }
}

#[test]
fn flags_map_to_the_config() {
    let defaults = ok(&single_with(&[]));
    assert!(defaults.heartbeat_enabled && defaults.inbox_enabled && !defaults.verbose);
    assert!(!defaults.multi_workspace);
    let c = ok(&single_with(&[
        ("MOLECULE_MCP_DISABLE_INBOX", "yes"),
        ("MOLECULE_MCP_VERBOSE", "1"),
    ]));
    assert!(c.heartbeat_enabled && !c.inbox_enabled && c.verbose);
    let c = ok(&single_with(&[
        ("MOLECULE_MCP_DISABLE_INBOX", "false"),
        ("MOLECULE_MCP_VERBOSE", "off"),
    ]));
    assert!(c.inbox_enabled && !c.verbose);
}

#[test]
fn heartbeat_interval_bounds() {
    for (value, secs) in [
        ("", 20),
        ("  ", 20),
        ("1", 1),
        ("60", 60),
        (" 30 ", 30),
        ("020", 20),
    ] {
        assert_eq!(
            ok(&single_with(&[(
                "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS",
                value
            )]))
            .heartbeat_interval,
            Duration::from_secs(secs),
            "{value:?}"
        );
    }
    assert_eq!(
        ok(&single_with(&[])).heartbeat_interval,
        Duration::from_secs(20)
    );
    for value in [
        "0",
        "61",
        "-1",
        "+5",
        "abc",
        "1.5",
        "99999999999999999999999",
        "2 0",
    ] {
        let (errors, text) = err(&single_with(&[(
            "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS",
            value,
        )]));
        assert_eq!(
            errors.0,
            vec![ConfigError::InvalidHeartbeatInterval {
                value: value.to_owned()
            }]
        );
        assert!(
            text.contains(&format!(
                "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS '{value}' is invalid"
            )),
            "{text}"
        );
        assert!(text.contains("from 1 to 60"), "{text}");
    }
}

#[test]
fn poll_timeout_rules() {
    let poll = |value: &str| {
        ok(&single_with(&[("MOLECULE_MCP_POLL_TIMEOUT_SECS", value)])).poll_timeout_secs
    };
    assert_eq!(ok(&single_with(&[])).poll_timeout_secs, 2);
    assert_eq!(poll(""), 2);
    assert_eq!(poll("abc"), 2);
    assert_eq!(poll("2.5"), 2);
    assert_eq!(poll("-4"), 2);
    assert_eq!(poll("0"), 0);
    assert_eq!(poll(" 15 "), 15);
    assert_eq!(poll("60"), 60);
    assert_eq!(poll("61"), 60);
    assert_eq!(poll("100000000000000000000000"), 60);
}

// ---------------------------------------------------------------------------------------
// Agent card (`tests/contracts/agent-card.schema.json`, and the seed tests' pins) and session config.

fn card(extra: &[(&str, &str)]) -> serde_json::Value {
    let config = ok(&single_with(extra));
    config.agent_card(&config.workspaces[0].id)
}

#[test]
fn agent_card_defaults_exactly() {
    assert_eq!(
        card(&[]),
        json!({"name": "molecule-mcp-00000000", "skills": []})
    );
}

#[test]
fn agent_card_name_override() {
    assert_eq!(
        card(&[("MOLECULE_AGENT_NAME", "  my-agent ")]),
        json!({"name": "my-agent", "skills": []})
    );
}

#[test]
fn agent_card_skills_from_csv() {
    assert_eq!(
        card(&[("MOLECULE_AGENT_SKILLS", "code,review")]),
        json!({"name": "molecule-mcp-00000000", "skills": [{"name": "code"}, {"name": "review"}]})
    );
}

#[test]
fn agent_card_skills_drop_whitespace_and_empties() {
    assert_eq!(
        card(&[("MOLECULE_AGENT_SKILLS", " code , ,review,, ")]),
        json!({"name": "molecule-mcp-00000000", "skills": [{"name": "code"}, {"name": "review"}]})
    );
    assert_eq!(
        card(&[("MOLECULE_AGENT_SKILLS", " , ,")]),
        json!({"name": "molecule-mcp-00000000", "skills": []})
    );
}

#[test]
fn agent_card_description_only_when_set() {
    assert_eq!(
        card(&[("MOLECULE_AGENT_DESCRIPTION", "Does things")]),
        json!({"name": "molecule-mcp-00000000", "skills": [], "description": "Does things"})
    );
    assert_eq!(
        card(&[("MOLECULE_AGENT_DESCRIPTION", "   ")]),
        json!({"name": "molecule-mcp-00000000", "skills": []})
    );
}

#[test]
fn agent_card_whitespace_only_name_uses_default() {
    assert_eq!(
        card(&[("MOLECULE_AGENT_NAME", "   ")]),
        json!({"name": "molecule-mcp-00000000", "skills": []})
    );
}

#[test]
fn agent_card_is_carried_by_the_session_config() {
    let config = ok(&single_with(&[
        ("MOLECULE_AGENT_NAME", "a"),
        ("MOLECULE_AGENT_SKILLS", "x"),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "7"),
    ]));
    let session = config.session_config(0).unwrap();
    assert_eq!(
        session.agent_card,
        json!({"name": "a", "skills": [{"name": "x"}]})
    );
    assert_eq!(session.heartbeat_interval, Duration::from_secs(7));
    assert_eq!(session.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(session.known_inbound_secret, None);
    assert!(config.session_config(1).is_none());
}

#[test]
fn token_sources_describe_themselves() {
    assert_eq!(TokenSource::EnvVar.describe(), "MOLECULE_WORKSPACE_TOKEN");
    assert_eq!(
        TokenSource::TokenFile { path: "/p".into() }.describe(),
        "MOLECULE_WORKSPACE_TOKEN_FILE ('/p')"
    );
    assert_eq!(
        TokenSource::StateFile {
            path: "/s/.auth_token".into()
        }
        .describe(),
        "/s/.auth_token"
    );
    assert_eq!(
        TokenSource::WorkspacesEntry { index: 1 }.describe(),
        "MOLECULE_WORKSPACES[1]"
    );
}

// ---------------------------------------------------------------------------------------
// Property: never panics; Ok is well-formed; no token ever reaches the error text.

/// Every token the generators produce contains this; no other value can.
const SECRET: &str = "s3cr3t";

fn token_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_.-]{0,12}".prop_map(|s| format!("{SECRET}{s}")),
        3 => "[A-Za-z0-9]{0,6}".prop_map(|s| format!(" \t{SECRET}{s}\n")),
        1 => "[a-z]{1,4}".prop_map(|s| format!("{s}{SECRET} {s}")),
        1 => "[a-z]{1,4}".prop_map(|s| format!("{SECRET}\u{0}{s}")),
        1 => Just(String::new()),
        1 => Just(" \n ".to_owned()),
    ]
}

fn plain_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        Just(ID.to_owned()),
        Just(format!(" {} ", ID2.to_uppercase())),
        "[0-9a-fA-F-]{0,40}",
        Just("http://localhost:8080".to_owned()),
        Just("https://u:p@host/".to_owned()),
        Just("ftp://x".to_owned()),
        "-?[0-9]{0,25}",
        Just("false".to_owned()),
        Just("1".to_owned()),
        "[ -~]{0,20}".prop_filter("no secret marker", |s| !s.contains(SECRET)),
        "\\PC{0,8}".prop_filter("no secret marker", |s| !s.contains(SECRET)),
    ]
}

fn json_id() -> impl Strategy<Value = Option<serde_json::Value>> {
    prop_oneof![
        Just(Some(json!(ID))),
        Just(Some(json!(ID.to_uppercase()))),
        Just(Some(json!(ID2))),
        Just(Some(json!(null))),
        Just(Some(json!(7))),
        Just(None),
        "[0-9a-f-]{0,12}".prop_map(|s| Some(json!(s))),
    ]
}

fn json_token() -> impl Strategy<Value = Option<serde_json::Value>> {
    prop_oneof![
        4 => token_value().prop_map(|s| Some(json!(s))),
        1 => Just(Some(json!(null))),
        1 => Just(Some(json!(12345))),
        1 => Just(None),
    ]
}

fn workspaces_json() -> impl Strategy<Value = String> {
    let entry = prop_oneof![
        6 => (json_id(), json_token()).prop_map(|(id, token)| {
            let mut map = serde_json::Map::new();
            if let Some(id) = id {
                map.insert("id".into(), id);
            }
            if let Some(token) = token {
                map.insert("token".into(), token);
            }
            serde_json::Value::Object(map)
        }),
        1 => Just(json!("entry")),
        1 => Just(json!([1])),
    ];
    prop_oneof![
        6 => proptest::collection::vec(entry, 0..4).prop_map(|v| serde_json::Value::Array(v).to_string()),
        1 => Just("{}".to_owned()),
        1 => plain_value(),
        1 => proptest::collection::vec(token_value(), 0..3).prop_map(|t| format!(r#"[{{"id":"{ID}","token":"{}""#, t.join(""))),
    ]
}

fn file_read(content: impl Strategy<Value = String>) -> impl Strategy<Value = FileRead> {
    prop_oneof![
        1 => Just(FileRead::Missing),
        1 => Just(FileRead::NotRegularFile),
        1 => Just(FileRead::PermissionDenied),
        1 => Just(FileRead::Unreadable("Is a directory (os error 21)".to_owned())),
        1 => Just(FileRead::Contents(format!("\u{ff}{SECRET}").into_bytes().into_iter().chain([0xff]).collect())),
        3 => content.prop_map(|s| FileRead::Contents(s.into_bytes())),
    ]
}

fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(ID.to_owned()),
        3 => Just(format!(" {} ", ID2.to_uppercase())),
        1 => plain_value(),
    ]
}

fn url_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("http://localhost:8080".to_owned()),
        3 => Just(" https://Tenant.example.com/ ".to_owned()),
        1 => plain_value(),
    ]
}

fn interval_value() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9]{1,2}", plain_value()]
}

/// Biased towards valid configs (about half the cases), so the `Ok` invariants are exercised
/// as much as the error paths; `generator_reaches_both_outcomes` keeps it that way.
fn raw_config() -> impl Strategy<Value = RawConfig> {
    let keys = proptest::sample::select(vec![
        "WORKSPACE_ID",
        "PLATFORM_URL",
        "MOLECULE_WORKSPACE_TOKEN_FILE",
        "MOLECULE_MCP_DISABLE_HEARTBEAT",
        "MOLECULE_MCP_DISABLE_INBOX",
        "MOLECULE_MCP_VERBOSE",
        "MOLECULE_MCP_POLL_TIMEOUT_SECS",
        "MOLECULE_AGENT_NAME",
        "MOLECULE_AGENT_DESCRIPTION",
        "MOLECULE_AGENT_SKILLS",
        "UNRELATED",
    ]);
    (
        proptest::collection::btree_map(keys.prop_map(str::to_owned), plain_value(), 0..6),
        proptest::option::weighted(0.9, id_value()),
        proptest::option::weighted(0.9, url_value()),
        proptest::option::weighted(0.1, interval_value()),
        proptest::option::weighted(0.7, token_value()),
        proptest::option::weighted(0.25, workspaces_json()),
        proptest::option::of(file_read(token_value())),
        file_read(token_value()),
    )
        .prop_map(
            |(mut env, id, url, interval, token, workspaces, token_file, state_auth_token)| {
                for (key, value) in [
                    ("WORKSPACE_ID", id),
                    ("PLATFORM_URL", url),
                    ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", interval),
                    ("MOLECULE_WORKSPACE_TOKEN", token),
                    ("MOLECULE_WORKSPACES", workspaces),
                ] {
                    if let Some(value) = value {
                        env.insert(key.to_owned(), value);
                    }
                }
                RawConfig {
                    env,
                    token_file,
                    state_auth_token,
                    state_dir: "/state".to_owned(),
                }
            },
        )
}

#[test]
fn generator_reaches_both_outcomes() {
    // A property over a generator that (almost) never yields a valid config would pass
    // vacuously; keep both sides well represented.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = raw_config();
    let total = 1000;
    let valid = (0..total)
        .filter(|_| validate(&strategy.new_tree(&mut runner).unwrap().current()).is_ok())
        .count();
    assert!(
        valid >= total / 10 && valid <= total * 9 / 10,
        "{valid} of {total} generated configs are valid"
    );
}

fn is_lower_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validate_is_total_well_formed_and_never_leaks_tokens(raw in raw_config()) {
        match validate(&raw) {
            Ok(config) => {
                prop_assert!(!config.workspaces.is_empty());
                let ids: std::collections::BTreeSet<&str> = config.workspaces.iter().map(|w| w.id.as_str()).collect();
                prop_assert_eq!(ids.len(), config.workspaces.len(), "duplicate ids");
                for ws in &config.workspaces {
                    prop_assert!(is_lower_uuid(&ws.id), "id {:?}", ws.id);
                    let token = ws.token.expose();
                    prop_assert!(!token.is_empty());
                    prop_assert!(!token.chars().any(|c| c.is_whitespace() || c.is_control()), "token {:?}", token);
                    // Tokens only ever come from token positions.
                    prop_assert!(token.contains(SECRET), "token {:?} from {:?}", token, ws.token_source);
                }
                prop_assert!((1..=60).contains(&config.heartbeat_interval.as_secs()));
                prop_assert!(config.poll_timeout_secs <= 60);
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                let text = errors.render(&raw);
                prop_assert!(text.starts_with("molecule-mcp: "), "{}", text);
                prop_assert!(!text.contains(SECRET), "token leaked into:\n{}", text);
                prop_assert!(!format!("{errors:?}").contains(SECRET), "token inside the errors: {:?}", errors);
            }
        }
    }
}

#[test]
fn plain_http_to_a_remote_host_is_a_warning_not_an_error() {
    let validated = |url: &str| {
        ok(&raw(&[
            ("WORKSPACE_ID", ID),
            ("PLATFORM_URL", url),
            ("MOLECULE_WORKSPACE_TOKEN", "tok"),
        ]))
    };
    let remote = validated("http://platform.example.com");
    assert_eq!(remote.warnings().len(), 1);
    assert!(remote.warnings()[0].contains("plain http"));
    assert!(validated("http://127.0.0.1:8080").warnings().is_empty());
    assert!(
        validated("https://platform.example.com")
            .warnings()
            .is_empty()
    );
}
