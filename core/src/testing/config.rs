//! Fuzz and corpus-replay harness for [`validate`].
//!
//! [`config_validate_case`] decodes bytes into a [`RawConfig`], validates it and asserts the
//! invariants (panicking on a violation, which is what a fuzzer looks for):
//!
//! * `validate` is deterministic and never panics; neither do rendering and the helpers.
//! * `Ok` ⇒ at least one workspace, lower-case UUID ids without repeats, tokens trimmed,
//!   non-empty, without whitespace or control characters, interval 1..=60 s, poll timeout
//!   ≤ 60, a session config per workspace, an agent card with a name and a skills array.
//! * `Err` ⇒ at least one error, a rendering that starts with `molecule-mcp: `, and **no
//!   token value anywhere** in the errors or the text.
//!
//! Token leaks are detected by taint: the decoder puts [`TOKEN_MARKER`] into every token the
//! input provides (`MOLECULE_WORKSPACE_TOKEN`, both token files, the `token` fields of
//! `MOLECULE_WORKSPACES`) and removes it from every other value, so a marker in any error
//! is a token that leaked, whatever its length. As a bonus, every accepted token must carry
//! the marker (tokens only come from token positions).
//!
//! The byte format is line-oriented so seeds are readable and mutations stay meaningful
//! (it needs no `arbitrary`, so the corpus replays on stable with only `testing`):
//!
//! ```text
//! KEY=VALUE              an environment variable; a one-character KEY `0`–`9`, `a`–`d`
//!                        names entry n of config::VARIABLES (biases fuzzing to real names)
//! @file=<kind><payload>  the MOLECULE_WORKSPACE_TOKEN_FILE read (absent line: not read)
//! @state=<kind><payload> the <state dir>/.auth_token read (absent line: missing)
//! @dir=<path>            the state directory (default /state)
//! ```
//!
//! `<kind>` is `M` missing, `D` not a regular file, `P` permission denied, `U` unreadable
//! (payload = OS message), `C` contents (payload = raw bytes, may be non-UTF-8). Values and
//! payloads understand the escapes `\n`, `\r`, `\t`, `\0` and `\\`. Other lines are ignored.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{self, FileRead, RawConfig, ValidConfig, validate};
use crate::ids::normalize_uuid;

/// Put into every token by [`decode`]; must never appear in an error.
pub const TOKEN_MARKER: char = '\u{1F511}';

/// One fuzz case: decode, validate, check the invariants.
pub fn config_validate_case(data: &[u8]) {
    check_invariants(&decode(data));
}

/// Decodes the line format described in the module docs.
pub fn decode(data: &[u8]) -> RawConfig {
    let mut env = BTreeMap::new();
    let mut token_file = None;
    let mut state_auth_token = FileRead::Missing;
    let mut state_dir = "/state".to_owned();
    for line in data.split(|b| *b == b'\n') {
        let Some(eq) = line.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = line.split_at(eq);
        let value = unescape(value.get(1..).unwrap_or_default());
        match key {
            b"@file" => token_file = Some(file_read(&value)),
            b"@state" => state_auth_token = file_read(&value),
            b"@dir" => state_dir = untainted(&String::from_utf8_lossy(&value)),
            _ => {
                let key = untainted(&String::from_utf8_lossy(key));
                let key = match key.as_bytes() {
                    [c] => char::from(*c)
                        .to_digit(16)
                        .and_then(|i| config::VARIABLES.get(i as usize))
                        .map_or(key, |k| (*k).to_owned()),
                    _ => key,
                };
                let value = String::from_utf8_lossy(&value);
                let value = match key.as_str() {
                    config::WORKSPACE_TOKEN => tainted(&value),
                    config::WORKSPACES => taint_workspaces(&value),
                    _ => untainted(&value),
                };
                env.insert(key, value);
            }
        }
    }
    RawConfig {
        env,
        token_file,
        state_auth_token,
        state_dir,
    }
}

/// Asserts every invariant of the module docs for `raw`.
pub fn check_invariants(raw: &RawConfig) {
    let result = validate(raw);
    assert_eq!(result, validate(raw), "validate must be deterministic");
    match result {
        Ok(config) => check_valid(raw, &config),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "Err without errors");
            let text = errors.render(raw);
            assert!(
                text.starts_with("molecule-mcp: "),
                "rendering starts oddly: {text}"
            );
            let display = errors.to_string();
            let debug = format!("{errors:?}");
            for (what, s) in [("render", &text), ("Display", &display), ("Debug", &debug)] {
                assert!(
                    !s.contains(TOKEN_MARKER),
                    "a token leaked into the {what} text:\n{s}"
                );
            }
            assert_eq!(
                text.contains("Currently missing: "),
                !errors.missing().is_empty()
            );
        }
    }
}

fn check_valid(raw: &RawConfig, config: &ValidConfig) {
    let multi = raw
        .env
        .get(config::WORKSPACES)
        .is_some_and(|v| !v.trim().is_empty());
    assert_eq!(config.multi_workspace, multi);
    assert!(!config.workspaces.is_empty(), "no workspace");
    assert!(
        multi || config.workspaces.len() == 1,
        "single mode with several workspaces"
    );
    let mut ids = std::collections::BTreeSet::new();
    for ws in &config.workspaces {
        assert_eq!(
            normalize_uuid(&ws.id).as_deref(),
            Some(ws.id.as_str()),
            "id not a lower-case UUID: {}",
            ws.id
        );
        assert!(ids.insert(ws.id.clone()), "duplicate id {}", ws.id);
        let token = ws.token.expose();
        assert!(!token.is_empty(), "empty token");
        assert!(
            !token.chars().any(|c| c.is_whitespace() || c.is_control()),
            "token with whitespace/control chars"
        );
        assert!(
            token.contains(TOKEN_MARKER),
            "token from a non-token position (source {:?})",
            ws.token_source
        );
    }
    let interval = config.heartbeat_interval.as_secs();
    assert!(
        (1..=config::MAX_HEARTBEAT_INTERVAL_SECS).contains(&interval),
        "interval {interval}"
    );
    assert!(config.poll_timeout_secs <= config::MAX_POLL_TIMEOUT_SECS);
    for (i, ws) in config.workspaces.iter().enumerate() {
        let session = config.session_config(i);
        assert!(
            session
                .as_ref()
                .is_some_and(|s| s.workspace_id == ws.id && s.token == ws.token)
        );
        let card = config.agent_card(&ws.id);
        assert!(
            card["name"].as_str().is_some_and(|n| !n.is_empty()),
            "card without a name: {card}"
        );
        assert!(card["skills"].is_array(), "card without skills: {card}");
        assert!(
            !card.to_string().contains(TOKEN_MARKER),
            "token in the agent card"
        );
    }
    assert!(config.session_config(config.workspaces.len()).is_none());
}

/// `\n`, `\r`, `\t`, `\0`, `\\` → the byte; any other backslash stays as is.
fn unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied().peekable();
    while let Some(b) = iter.next() {
        let escaped = match (b, iter.peek()) {
            (b'\\', Some(b'n')) => Some(b'\n'),
            (b'\\', Some(b'r')) => Some(b'\r'),
            (b'\\', Some(b't')) => Some(b'\t'),
            (b'\\', Some(b'0')) => Some(0),
            (b'\\', Some(b'\\')) => Some(b'\\'),
            _ => None,
        };
        match escaped {
            Some(e) => {
                out.push(e);
                iter.next();
            }
            None => out.push(b),
        }
    }
    out
}

fn file_read(value: &[u8]) -> FileRead {
    let payload = value.get(1..).unwrap_or_default();
    match value.first() {
        Some(b'D') => FileRead::NotRegularFile,
        Some(b'P') => FileRead::PermissionDenied,
        Some(b'U') => FileRead::Unreadable(untainted(&String::from_utf8_lossy(payload))),
        Some(b'C') => FileRead::Contents(match std::str::from_utf8(payload) {
            Ok(text) => tainted(text).into_bytes(),
            // Not UTF-8: never a usable token, and validation never echoes file contents.
            Err(_) => payload.to_vec(),
        }),
        _ => FileRead::Missing,
    }
}

fn untainted(s: &str) -> String {
    s.replace(TOKEN_MARKER, "")
}

/// The marker goes before the first non-whitespace character, so blank stays blank and
/// leading/trailing whitespace (which validation must trim) is kept.
fn tainted(s: &str) -> String {
    let clean = untainted(s);
    match clean.find(|c: char| !c.is_whitespace()) {
        Some(i) => {
            let (head, tail) = clean.split_at(i);
            format!("{head}{TOKEN_MARKER}{tail}")
        }
        None => clean,
    }
}

/// Marks the `token` strings of top-level entries; unmarks every other string. Text that is
/// not JSON is only unmarked (validation then reports a parse error without echoing it).
fn taint_workspaces(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(entries)) => {
            let entries: Vec<Value> = entries
                .into_iter()
                .map(|entry| match entry {
                    Value::Object(fields) => Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| match (k.as_str(), v) {
                                ("token", Value::String(s)) => (k, Value::String(tainted(&s))),
                                (_, v) => (untainted(&k), untaint_json(v)),
                            })
                            .collect::<Map<String, Value>>(),
                    ),
                    other @ (Value::Null
                    | Value::Bool(_)
                    | Value::Number(_)
                    | Value::String(_)
                    | Value::Array(_)) => untaint_json(other),
                })
                .collect();
            serde_json::to_string(&Value::Array(entries)).unwrap_or_else(|_| untainted(text))
        }
        Ok(other) => {
            serde_json::to_string(&untaint_json(other)).unwrap_or_else(|_| untainted(text))
        }
        Err(_) => untainted(text),
    }
}

fn untaint_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(untainted(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(untaint_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (untainted(&k), untaint_json(v)))
                .collect(),
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, MissingItem, TokenFileProblem, TokenSource};

    const ID: &str = "00000000-0000-0000-0000-000000000000";

    fn corpus() -> Vec<(String, Vec<u8>)> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_validate");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn committed_corpus_holds_the_invariants() {
        let files = corpus();
        assert!(
            files.len() >= 10,
            "expected the committed seeds, found {}",
            files.len()
        );
        for (name, bytes) in files {
            let result = std::panic::catch_unwind(|| config_validate_case(&bytes));
            assert!(result.is_ok(), "seed {name} broke an invariant");
        }
    }

    #[test]
    fn seeds_decode_to_what_their_names_say() {
        let seeds: BTreeMap<String, Vec<u8>> = corpus().into_iter().collect();
        let validate_seed = |name: &str| validate(&decode(&seeds[name]));
        assert_eq!(
            validate_seed("empty").unwrap_err().missing(),
            vec![
                MissingItem::WorkspaceId,
                MissingItem::PlatformUrl,
                MissingItem::Token
            ]
        );
        let ok = validate_seed("single_env_token").unwrap();
        assert_eq!(ok.workspaces[0].token_source, TokenSource::EnvVar);
        assert!(ok.heartbeat_enabled);
        let ok = validate_seed("multi_valid_with_agent").unwrap();
        assert_eq!(ok.workspaces.len(), 2);
        assert_eq!(ok.agent.skills, vec!["code", "review"]);
        // Pins the one-character key aliases to `config::VARIABLES` (a new variable
        // inserted in the middle shifts them and must update the seeds).
        assert_eq!(ok.agent.name.as_deref(), Some("My Agent"));
        assert_eq!(ok.agent.description.as_deref(), Some("does things"));
        assert_eq!(ok.inbox_poll_interval, std::time::Duration::from_secs(30));
        assert_eq!(ok.poll_timeout_secs, 60);
        assert!(ok.heartbeat_enabled && !ok.inbox_enabled && ok.verbose);
        let errs = validate_seed("multi_bad_entries").unwrap_err();
        assert!(
            matches!(&errs.0[..], [ConfigError::InvalidWorkspaces(list)] if list.len() >= 4),
            "{errs:?}"
        );
        let errs = validate_seed("token_file_multiline").unwrap_err();
        assert!(
            errs.0.iter().any(|e| matches!(
                e,
                ConfigError::TokenFile {
                    problem: TokenFileProblem::InternalWhitespace,
                    ..
                }
            )),
            "{errs:?}"
        );
        let errs = validate_seed("token_file_not_utf8").unwrap_err();
        assert!(
            errs.0.iter().any(|e| matches!(
                e,
                ConfigError::TokenFile {
                    problem: TokenFileProblem::NotUtf8,
                    ..
                }
            )),
            "{errs:?}"
        );
        let ok = validate_seed("state_file_token").unwrap();
        assert_eq!(
            ok.workspaces[0].token_source,
            TokenSource::StateFile {
                path: "/tmp/st/.auth_token".into()
            }
        );
    }

    #[test]
    fn decoder_aliases_escapes_and_taints() {
        let raw = decode(b"0= 00000000-0000-0000-0000-000000000000\n2=\\t tok\\n\nFOO=a\\\\b\n@file=Cx\\ny\n@state=U\xF0\x9F\x94\x91boom\n@dir=/d\nnoise");
        assert_eq!(
            raw.env.get("WORKSPACE_ID").map(String::as_str),
            Some(" 00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            raw.env.get("MOLECULE_WORKSPACE_TOKEN").map(String::as_str),
            Some("\t \u{1F511}tok\n")
        );
        assert_eq!(raw.env.get("FOO").map(String::as_str), Some("a\\b"));
        assert_eq!(
            raw.token_file,
            Some(FileRead::Contents("\u{1F511}x\ny".as_bytes().to_vec()))
        );
        assert_eq!(raw.state_auth_token, FileRead::Unreadable("boom".into()));
        assert_eq!(raw.state_dir, "/d");
        assert_eq!(raw.env.len(), 3);
    }

    #[test]
    fn workspaces_taint_only_marks_entry_tokens() {
        let text = taint_workspaces(r#"[{"id":"a","token":" t ","x":{"token":"n"}}, "s", 1]"#);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["token"], format!(" {TOKEN_MARKER}t "));
        assert_eq!(v[0]["x"]["token"], "n");
        assert_eq!(v[1], "s");
        assert_eq!(taint_workspaces("not json \u{1F511}"), "not json ");
    }

    #[test]
    fn a_leaking_rendering_would_be_caught() {
        // The oracle must be able to fail: an error that carried a token would trip it.
        let errors = crate::config::ConfigErrors(vec![ConfigError::InvalidWorkspaceId {
            value: tainted("tok"),
        }]);
        assert!(errors.to_string().contains(TOKEN_MARKER));
        let raw = decode(format!("0={ID}\n1=http://h\n2=tok").as_bytes());
        assert!(
            validate(&raw).unwrap().workspaces[0]
                .token
                .expose()
                .contains(TOKEN_MARKER)
        );
    }
}
