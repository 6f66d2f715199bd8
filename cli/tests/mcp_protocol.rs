//! The MCP layer end to end: the dual-era method table through [`Protocol`], and the
//! async server through in-memory pipes (`tokio::io::duplex`), with paused virtual time
//! wherever a tool "blocks" so nothing really sleeps.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use molecule_mcp_cli::mcp::framing::{Frame, LineFramer};
use molecule_mcp_cli::mcp::{
    Outcome, Protocol, ServeConfig, ServeEnd, ServerIdentity, ToolFuture, ToolHandler, ToolOutput,
    ToolSpec, push_notification, serve, serve_with,
};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const TOOL_NAMES: [&str; 7] = ["echo", "say", "fail", "list", "block", "panic", "zeta"];

/// Test tools. `block` sleeps (virtual) `secs` seconds, default 3600, and records whether
/// its future was dropped before finishing (i.e. aborted).
#[derive(Default)]
struct TestTools {
    block_started: AtomicUsize,
    block_dropped_unfinished: Arc<AtomicUsize>,
}

struct DropProbe {
    finished: bool,
    dropped_unfinished: Arc<AtomicUsize>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if !self.finished {
            self.dropped_unfinished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ToolHandler for TestTools {
    fn tools(&self) -> Vec<ToolSpec> {
        TOOL_NAMES
            .into_iter()
            .map(|name| ToolSpec {
                name,
                description: format!("the {name} tool"),
                input_schema: json!({"type": "object", "properties": {}}),
                output_schema: (name == "echo").then(|| json!({"type": "object"})),
                annotations: (name == "say").then(|| json!({"readOnlyHint": true})),
            })
            .collect()
    }

    fn call(&self, name: &str, arguments: Map<String, Value>) -> Option<ToolFuture> {
        let ready = |out: ToolOutput| -> Option<ToolFuture> { Some(Box::pin(async move { out })) };
        match name {
            "echo" => ready(ToolOutput::Json(Value::Object(arguments))),
            "say" => ready(ToolOutput::Text(format!("said {}", arguments.len()))),
            "fail" => ready(ToolOutput::Error("it broke: upstream 503".into())),
            "list" => ready(ToolOutput::Json(json!([1, 2, 3]))),
            "zeta" => ready(ToolOutput::Text("z".into())),
            "panic" => Some(Box::pin(async move {
                tokio::task::yield_now().await;
                panic!("tool bug");
            })),
            "block" => {
                self.block_started.fetch_add(1, Ordering::SeqCst);
                let secs = arguments
                    .get("secs")
                    .and_then(Value::as_u64)
                    .unwrap_or(3600);
                let probe = DropProbe {
                    finished: false,
                    dropped_unfinished: self.block_dropped_unfinished.clone(),
                };
                Some(Box::pin(async move {
                    // Move the whole probe in (a closure would only capture the field).
                    let mut probe = probe;
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    probe.finished = true;
                    ToolOutput::Text(format!("slept {secs}s"))
                }))
            }
            _ => None,
        }
    }
}

fn identity() -> ServerIdentity {
    ServerIdentity::new("test-server", "9.9.9", || "use the tools".to_owned())
}

fn protocol() -> Protocol {
    Protocol::new(Arc::new(TestTools::default()), identity())
}

fn req(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn modern_meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// Runs one line through the protocol, awaiting a tool call if there is one.
async fn respond_raw(p: &Protocol, line: &[u8]) -> Option<Value> {
    let text = match p.handle_line(line) {
        Outcome::Reply(line) => line,
        Outcome::Silent | Outcome::Cancel(_) => return None,
        Outcome::Call(call) => call.reply.output(call.future.await),
        Outcome::Task(_) => panic!("task requests are answered by the serve loop"),
        Outcome::Batch(batch) => {
            let mut lines = batch.replies;
            for call in batch.calls {
                lines.push(call.reply.output(call.future.await));
            }
            if lines.is_empty() {
                return None;
            }
            format!("[{}]", lines.join(","))
        }
    };
    assert!(!text.contains('\n'));
    Some(serde_json::from_str(&text).expect("response is JSON"))
}

async fn respond(p: &Protocol, msg: Value) -> Value {
    respond_raw(p, msg.to_string().as_bytes())
        .await
        .expect("a response")
}

fn error_code(resp: &Value) -> i64 {
    resp["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {resp}"))
}

// ---------------------------------------------------------------------------------------
// Protocol: lifecycle and version negotiation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn initialize_echoes_known_legacy_versions_and_answers_others_with_the_latest() {
    let p = protocol();
    let table = [
        (json!("2024-11-05"), "2024-11-05"),
        (json!("2025-03-26"), "2025-03-26"),
        (json!("2025-06-18"), "2025-06-18"),
        (json!("2025-11-25"), "2025-11-25"),
        (json!("1999-01-01"), "2025-11-25"),
        (json!("2027-01-01"), "2025-11-25"),
        (json!("2026-07-28"), "2025-11-25"),
        (json!(20241105), "2025-11-25"),
        (Value::Null, "2025-11-25"),
    ];
    for (i, (requested, expected)) in table.into_iter().enumerate() {
        let params = json!({"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
        let resp = respond(&p, req(json!(i), "initialize", params)).await;
        assert_eq!(resp["id"], json!(i));
        assert_eq!(
            resp["result"]["protocolVersion"], expected,
            "requested {requested}"
        );
    }
    // No params at all is still a successful initialize.
    let resp = respond(
        &p,
        json!({"jsonrpc": "2.0", "id": 99, "method": "initialize"}),
    )
    .await;
    assert_eq!(resp["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn initialize_result_carries_identity_capabilities_and_live_instructions() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let ident = ServerIdentity::new("named", "1.2.3", move || {
        format!(
            "poll every {}s",
            counter.fetch_add(1, Ordering::SeqCst) + 10
        )
    });
    let p = Protocol::new(Arc::new(TestTools::default()), ident);
    let init = req(
        json!(1),
        "initialize",
        json!({"protocolVersion": "2025-06-18"}),
    );
    let first = respond(&p, init.clone()).await;
    assert_eq!(
        first["result"],
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {"listChanged": false}, "experimental": {"claude/channel": {}}},
            "serverInfo": {"name": "named", "version": "1.2.3"},
            "instructions": "poll every 10s",
        })
    );
    let second = respond(&p, init).await;
    assert_eq!(second["result"]["instructions"], "poll every 11s");
}

#[test]
fn molecule_identity_uses_the_crate_version() {
    let ident = ServerIdentity::molecule(String::new);
    assert_eq!(ident.name, "molecule-mcp");
    assert_eq!(ident.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn discover_then_initialize_then_tools_list_all_work_on_one_process() {
    let p = protocol();
    let discover = respond(
        &p,
        req(
            json!("d"),
            "server/discover",
            json!({"_meta": modern_meta("2026-07-28")}),
        ),
    )
    .await;
    let result = &discover["result"];
    assert_eq!(
        result["supportedVersions"],
        json!([
            "2024-11-05",
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28"
        ])
    );
    assert_eq!(
        result["capabilities"]["tools"],
        json!({"listChanged": false})
    );
    assert_eq!(result["instructions"], "use the tools");
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["cacheScope"], "private");
    assert!(result["ttlMs"].as_u64().is_some());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        json!({"name": "test-server", "version": "9.9.9"})
    );

    let init = respond(
        &p,
        req(
            json!(1),
            "initialize",
            json!({"protocolVersion": "2025-11-25"}),
        ),
    )
    .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    let initialized = respond_raw(
        &p,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(initialized, None);

    let list = respond(&p, req(json!(2), "tools/list", json!({}))).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, TOOL_NAMES);
    // Legacy results carry no modern fields.
    for key in ["resultType", "ttlMs", "cacheScope", "_meta", "nextCursor"] {
        assert!(
            list["result"].get(key).is_none(),
            "legacy tools/list has {key}"
        );
    }
}

#[tokio::test]
async fn discover_without_meta_is_answered_in_modern_shape() {
    let resp = respond(&protocol(), req(json!(1), "server/discover", json!({}))).await;
    assert_eq!(resp["result"]["resultType"], "complete");
    assert_eq!(resp["result"]["cacheScope"], "private");
}

#[tokio::test]
async fn initialize_then_a_modern_request_is_served_in_modern_shape() {
    let p = protocol();
    respond(
        &p,
        req(
            json!(1),
            "initialize",
            json!({"protocolVersion": "2025-11-25"}),
        ),
    )
    .await;
    let list = respond(
        &p,
        req(
            json!(2),
            "tools/list",
            json!({"_meta": modern_meta("2026-07-28")}),
        ),
    )
    .await;
    let result = &list["result"];
    assert_eq!(
        result["tools"].as_array().map(Vec::len),
        Some(TOOL_NAMES.len())
    );
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["ttlMs"], json!(0));
    assert_eq!(result["cacheScope"], "private");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "test-server"
    );

    let call = respond(
        &p,
        req(
            json!(3),
            "tools/call",
            json!({"name": "say", "arguments": {}, "_meta": modern_meta("2026-07-28")}),
        ),
    )
    .await;
    assert_eq!(call["result"]["resultType"], "complete");
    assert!(
        call["result"].get("ttlMs").is_none(),
        "tools/call is not cacheable"
    );
    assert_eq!(
        call["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["version"],
        "9.9.9"
    );

    // And a legacy request after the modern one is legacy again: no locking.
    let list = respond(&p, req(json!(4), "tools/list", json!({}))).await;
    assert!(list["result"].get("resultType").is_none());
}

#[tokio::test]
async fn modern_request_with_another_version_is_32022_with_supported_and_requested() {
    let p = protocol();
    for method in ["tools/list", "server/discover", "ping", "no/such/method"] {
        let resp = respond(
            &p,
            req(
                json!(7),
                method,
                json!({"_meta": modern_meta("1900-01-01")}),
            ),
        )
        .await;
        assert_eq!(error_code(&resp), -32022, "{method}");
        assert_eq!(resp["id"], 7);
        assert_eq!(resp["error"]["data"]["requested"], "1900-01-01");
        let supported = resp["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!("2026-07-28")));
    }
    let resp = respond(
        &p,
        req(
            json!(8),
            "tools/list",
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": 5}}),
        ),
    )
    .await;
    assert_eq!(error_code(&resp), -32602);
}

#[tokio::test]
async fn the_32022_message_names_exactly_the_supported_versions() {
    let p = protocol();
    let resp = respond(
        &p,
        req(
            json!(1),
            "ping",
            json!({"_meta": modern_meta("2025-11-25")}),
        ),
    )
    .await;
    assert_eq!(error_code(&resp), -32022);
    let message = resp["error"]["message"].as_str().unwrap();
    let listed = message
        .rsplit_once("(supported: ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no supported list in {message:?}"));
    let listed: Vec<Value> = listed.split(", ").map(|v| json!(v)).collect();
    assert_eq!(&Value::Array(listed), &resp["error"]["data"]["supported"]);
    // Every listed version is accepted in `_meta`: a client retrying with it succeeds.
    for version in resp["error"]["data"]["supported"].as_array().unwrap() {
        let ok = respond(
            &p,
            req(
                json!(2),
                "ping",
                json!({"_meta": modern_meta(version.as_str().unwrap())}),
            ),
        )
        .await;
        assert_eq!(ok["result"]["resultType"], "complete", "{version}");
    }
}

async fn initialized(version: &str) -> Protocol {
    let p = protocol();
    let init = respond(
        &p,
        req(json!(0), "initialize", json!({"protocolVersion": version})),
    )
    .await;
    assert_eq!(init["result"]["protocolVersion"], version);
    p
}

#[tokio::test]
async fn each_legacy_revision_gets_only_the_fields_it_defines() {
    // (version, annotations, outputSchema + structuredContent)
    for (version, annotations, structured) in [
        ("2024-11-05", false, false),
        ("2025-03-26", true, false),
        ("2025-06-18", true, true),
        ("2025-11-25", true, true),
    ] {
        let p = initialized(version).await;
        let list = respond(&p, req(json!(1), "tools/list", json!({}))).await;
        let tools = list["result"]["tools"].as_array().unwrap();
        let by_name = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
        assert_eq!(
            by_name("say").get("annotations").is_some(),
            annotations,
            "{version}"
        );
        assert_eq!(
            by_name("echo").get("outputSchema").is_some(),
            structured,
            "{version}"
        );
        for tool in tools {
            assert!(tool.get("title").is_none(), "{version}: {tool}");
            assert!(tool["inputSchema"].is_object(), "{version}: {tool}");
        }
        let call = respond(
            &p,
            req(
                json!(2),
                "tools/call",
                json!({"name": "echo", "arguments": {"a": 1}}),
            ),
        )
        .await;
        let result = &call["result"];
        assert_eq!(
            result.get("structuredContent").is_some(),
            structured,
            "{version}"
        );
        // The text copy always carries the JSON.
        let text = result["content"][0]["text"].as_str().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap(),
            json!({"a": 1})
        );
        // A modern request on the same process gets every field, whatever was negotiated.
        let modern = respond(
            &p,
            req(
                json!(3),
                "tools/list",
                json!({"_meta": modern_meta("2026-07-28")}),
            ),
        )
        .await;
        let tools = modern["result"]["tools"].as_array().unwrap();
        assert!(
            tools.iter().any(|t| t.get("outputSchema").is_some()),
            "{version}"
        );
        assert!(
            tools.iter().any(|t| t.get("annotations").is_some()),
            "{version}"
        );
    }
}

#[tokio::test]
async fn batches_are_served_only_to_2025_03_26_clients() {
    let p = initialized("2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"x": 1}}},
        {"jsonrpc": "2.0", "id": 3, "method": "no/such"},
        {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}},
        [1, 2]
    ]);
    let out = respond(&p, batch).await;
    let out = out.as_array().unwrap_or_else(|| panic!("an array: {out}"));
    let by_id = |id: Value| out.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(by_id(json!(1))["result"], json!({}));
    assert_eq!(by_id(json!(2))["result"]["content"][0]["type"], "text");
    assert_eq!(error_code(&by_id(json!(3))), -32601);
    assert_eq!(error_code(&by_id(json!(4))), -32600);
    assert_eq!(error_code(&by_id(Value::Null)), -32600);
    // Notifications only: nothing at all comes back.
    let quiet = json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]);
    assert_eq!(respond_raw(&p, quiet.to_string().as_bytes()).await, None);
    // An empty batch, and one over the bound, are one -32600.
    let empty = respond_raw(&p, b" []").await.unwrap();
    assert_eq!(error_code(&empty), -32600);
    let huge = Value::Array(vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        65
    ]);
    assert_eq!(error_code(&respond(&p, huge).await), -32600);
    // Every other revision (and a client that never initialised) gets -32600.
    for version in ["2024-11-05", "2025-06-18", "2025-11-25"] {
        let p = initialized(version).await;
        let line = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
        let resp = respond_raw(&p, line).await.unwrap();
        assert_eq!(error_code(&resp), -32600, "{version}");
        assert_eq!(resp["id"], Value::Null, "{version}");
    }
}

#[tokio::test]
async fn ping_is_answered_in_every_state_and_era() {
    let p = protocol();
    let before = respond(&p, req(json!(1), "ping", json!({}))).await;
    assert_eq!(before, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    let no_params = respond(&p, json!({"jsonrpc": "2.0", "id": "p", "method": "ping"})).await;
    assert_eq!(no_params["result"], json!({}));
    respond(
        &p,
        req(
            json!(2),
            "initialize",
            json!({"protocolVersion": "2024-11-05"}),
        ),
    )
    .await;
    let after = respond(&p, req(json!(3), "ping", json!({}))).await;
    assert_eq!(after["result"], json!({}));
    let modern = respond(
        &p,
        req(
            json!(4),
            "ping",
            json!({"_meta": modern_meta("2026-07-28")}),
        ),
    )
    .await;
    assert_eq!(modern["result"]["resultType"], "complete");
}

// ---------------------------------------------------------------------------------------
// Protocol: error codes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unparsable_lines_are_32700_with_a_null_id() {
    let p = protocol();
    for line in [
        &b"{not json"[..],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,",
        b"\xc3\x28{}",
        b"\"unterminated",
    ] {
        let resp = respond_raw(&p, line).await.expect("a parse error response");
        assert_eq!(error_code(&resp), -32700);
        assert_eq!(resp["id"], Value::Null);
        assert_eq!(resp["jsonrpc"], "2.0");
    }
}

#[tokio::test]
async fn batches_null_ids_and_non_objects_are_32600() {
    let p = protocol();
    let cases: [(&str, Value); 6] = [
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            Value::Null,
        ),
        ("42", Value::Null),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Value::Null),
        (r#"{"id":"x","method":"ping"}"#, json!("x")),
        (r#"{"jsonrpc":"2.0","id":5,"method":["ping"]}"#, json!(5)),
    ];
    for (line, id) in cases {
        let resp = respond_raw(&p, line.as_bytes())
            .await
            .expect("an error response");
        assert_eq!(error_code(&resp), -32600, "{line}");
        assert_eq!(resp["id"], id, "{line}");
    }
}

#[tokio::test]
async fn unknown_methods_are_32601_even_before_initialize() {
    let p = protocol();
    for method in [
        "resources/list",
        "prompts/list",
        "logging/setLevel",
        "completion/complete",
        "notifications/initialized",
    ] {
        let resp = respond(&p, req(json!(method), method, json!({}))).await;
        assert_eq!(error_code(&resp), -32601, "{method}");
        assert_eq!(resp["id"], method);
        assert!(resp["error"]["message"].as_str().unwrap().contains(method));
    }
}

#[tokio::test]
async fn tools_call_parameter_errors_are_32602() {
    let p = protocol();
    let cases = [
        json!({"name": "nope", "arguments": {}}),
        json!({"name": "echo", "arguments": [1]}),
        json!({"name": "echo", "arguments": "x"}),
        json!({"arguments": {}}),
        json!({"name": 5}),
        json!([1, 2]),
    ];
    for params in cases {
        let resp = respond(&p, req(json!(1), "tools/call", params.clone())).await;
        assert_eq!(error_code(&resp), -32602, "{params}");
    }
    let resp = respond(
        &p,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"}),
    )
    .await;
    assert_eq!(error_code(&resp), -32602);
    let resp = respond(&p, req(json!(3), "tools/list", json!("x"))).await;
    assert_eq!(error_code(&resp), -32602);
    let unknown = respond(&p, req(json!(4), "tools/call", json!({"name": "nope"}))).await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
}

#[tokio::test]
async fn ids_are_echoed_verbatim() {
    let p = protocol();
    for id in [
        json!(0),
        json!(-12),
        json!(u64::MAX),
        json!(""),
        json!("a b/é"),
        json!("42"),
    ] {
        let resp = respond(&p, req(id.clone(), "ping", json!({}))).await;
        assert_eq!(resp["id"], id);
        let err = respond(&p, req(id.clone(), "nope", json!({}))).await;
        assert_eq!(err["id"], id);
    }
}

// ---------------------------------------------------------------------------------------
// Protocol: tools
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tools_list_is_deterministic_and_complete() {
    let p = protocol();
    let a = respond(
        &p,
        req(json!(1), "tools/list", json!({"cursor": "ignored"})),
    )
    .await;
    let b = respond(&p, req(json!(1), "tools/list", json!({}))).await;
    assert_eq!(a, b);
    let tools = a["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), TOOL_NAMES.len());
    assert_eq!(tools[0]["name"], "echo");
    assert_eq!(tools[0]["description"], "the echo tool");
    assert_eq!(tools[0]["inputSchema"]["type"], "object");
    assert_eq!(tools[0]["outputSchema"], json!({"type": "object"}));
    assert!(tools[0].get("annotations").is_none());
    assert_eq!(tools[1]["annotations"], json!({"readOnlyHint": true}));
    assert!(tools[1].get("outputSchema").is_none());
    assert_eq!(
        tools.last().unwrap()["name"],
        "zeta",
        "handler order, not sorted"
    );
}

#[tokio::test]
async fn tool_results_text_error_and_structured() {
    let p = protocol();
    let text = respond(
        &p,
        req(
            json!(1),
            "tools/call",
            json!({"name": "say", "arguments": {"a": 1}}),
        ),
    )
    .await;
    assert_eq!(
        text["result"],
        json!({"content": [{"type": "text", "text": "said 1"}]})
    );

    let fail = respond(&p, req(json!(2), "tools/call", json!({"name": "fail"}))).await;
    assert_eq!(
        fail["result"],
        json!({"content": [{"type": "text", "text": "it broke: upstream 503"}], "isError": true})
    );

    let args = json!({"k": "v", "n": [1, 2], "é": {"deep": true}});
    let echo = respond(
        &p,
        req(
            json!(3),
            "tools/call",
            json!({"name": "echo", "arguments": args}),
        ),
    )
    .await;
    assert_eq!(echo["result"]["structuredContent"], args);
    let copy: Value =
        serde_json::from_str(echo["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(copy, args, "the text block carries the same JSON");
    assert!(echo["result"].get("isError").is_none());

    // Null arguments mean none.
    let empty = respond(
        &p,
        req(
            json!(4),
            "tools/call",
            json!({"name": "echo", "arguments": null}),
        ),
    )
    .await;
    assert_eq!(empty["result"]["structuredContent"], json!({}));

    // Non-object JSON: text only.
    let list = respond(&p, req(json!(5), "tools/call", json!({"name": "list"}))).await;
    assert!(list["result"].get("structuredContent").is_none());
    let copy: Value =
        serde_json::from_str(list["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(copy, json!([1, 2, 3]));
}

#[tokio::test]
async fn notifications_and_peer_responses_are_never_answered() {
    let p = protocol();
    let lines = [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":null}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"nope"}}"#,
        r#"{"jsonrpc":"2.0","id":9,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":9,"error":{"code":1,"message":"x"}}"#,
    ];
    for line in lines {
        assert_eq!(respond_raw(&p, line.as_bytes()).await, None, "{line}");
    }
    match p.handle_line(lines[1].as_bytes()) {
        Outcome::Cancel(id) => assert_eq!(id.to_json(), json!(3)),
        Outcome::Reply(_)
        | Outcome::Silent
        | Outcome::Call(_)
        | Outcome::Batch(_)
        | Outcome::Task(_) => {
            panic!("expected a cancel")
        }
    }
}

#[test]
fn oversized_frames_are_32600_too_large_with_null_id() {
    match protocol().handle_frame(&Frame::Oversized {
        discarded: 20_000_000,
    }) {
        Outcome::Reply(line) => {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["error"]["code"], -32600);
            assert_eq!(v["id"], Value::Null);
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("too large")
            );
        }
        Outcome::Silent
        | Outcome::Cancel(_)
        | Outcome::Call(_)
        | Outcome::Batch(_)
        | Outcome::Task(_) => {
            panic!("expected a reply")
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server harness
// ---------------------------------------------------------------------------------------

struct Client {
    input: Option<DuplexStream>,
    output: tokio::io::Lines<BufReader<DuplexStream>>,
    push: mpsc::Sender<Value>,
    server: JoinHandle<ServeEnd>,
    tools: Arc<TestTools>,
}

fn start() -> Client {
    let (client_in, server_in) = tokio::io::duplex(64 * 1024);
    let (server_out, client_out) = tokio::io::duplex(64 * 1024);
    let (push, pushes) = mpsc::channel(16);
    let tools = Arc::new(TestTools::default());
    let handler: Arc<dyn ToolHandler> = tools.clone();
    let server = tokio::spawn(serve(server_in, server_out, handler, identity(), pushes));
    Client {
        input: Some(client_in),
        output: BufReader::new(client_out).lines(),
        push,
        server,
        tools,
    }
}

impl Client {
    async fn send(&mut self, msg: Value) {
        self.send_raw(format!("{msg}\n").as_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("input open");
        input
            .write_all(bytes)
            .await
            .expect("server reads its input");
    }

    async fn recv(&mut self) -> Value {
        let line = self
            .output
            .next_line()
            .await
            .expect("output readable")
            .expect("a line before EOF");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Closes our end of the server's stdin and collects everything until its stdout ends.
    async fn close_and_collect(mut self) -> (Vec<Value>, ServeEnd) {
        self.input = None;
        let mut rest = Vec::new();
        while let Some(line) = self.output.next_line().await.expect("output readable") {
            rest.push(serde_json::from_str(&line).expect("output line is JSON"));
        }
        (rest, self.server.await.expect("serve task did not panic"))
    }
}

// ---------------------------------------------------------------------------------------
// Server: concurrency, cancellation, push
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn ping_is_answered_within_50ms_while_a_tool_blocks() {
    let mut c = start();
    c.send(req(
        json!(1),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 5}}),
    ))
    .await;
    c.send(req(json!(2), "ping", json!({}))).await;
    c.send(req(json!(3), "tools/call", json!({"name": "say"})))
        .await;
    let started = Instant::now();
    let first = timeout(Duration::from_millis(50), c.recv())
        .await
        .expect("ping answered in time");
    assert_eq!(first["id"], 2);
    let second = timeout(Duration::from_millis(50), c.recv())
        .await
        .expect("other call not delayed");
    assert_eq!(second["id"], 3);
    // The blocked call still completes, at its own pace.
    let third = c.recv().await;
    assert_eq!(third["id"], 1);
    assert_eq!(third["result"]["content"][0]["text"], "slept 5s");
    assert!(started.elapsed() >= Duration::from_secs(5));
    let (rest, end) = c.close_and_collect().await;
    assert!(rest.is_empty());
    assert!(matches!(end, ServeEnd::InputClosed));
}

#[tokio::test(start_paused = true)]
async fn cancelled_requests_are_aborted_and_never_answered() {
    let mut c = start();
    c.send(req(
        json!("slow"),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 10}}),
    ))
    .await;
    c.send(req(json!(2), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 2);
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow", "reason": "user"}}))
        .await;
    // A cancel for an unknown id is ignored.
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 404}})).await;
    c.send(req(json!(3), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 3);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        c.tools.block_dropped_unfinished.load(Ordering::SeqCst),
        1,
        "the task was aborted"
    );
    // The id is free again and later requests work normally.
    c.send(req(json!("slow"), "tools/call", json!({"name": "say"})))
        .await;
    let again = c.recv().await;
    assert_eq!(again["id"], "slow");
    assert_eq!(again["result"]["content"][0]["text"], "said 0");
    let (rest, _) = c.close_and_collect().await;
    assert!(rest.is_empty(), "nothing for the cancelled call: {rest:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_with_a_progress_token_reports_every_interval_then_answers() {
    // Default interval: 5 s. A 12 s call gets progress at 5 s and 10 s, then its answer.
    let mut c = start();
    c.send(req(
        json!(1),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 12}, "_meta": {"progressToken": "tok"}}),
    ))
    .await;
    let mut seen = Vec::new();
    loop {
        let m = c.recv().await;
        if m.get("id").is_some() {
            assert_eq!(m["result"]["content"][0]["text"], "slept 12s");
            break;
        }
        assert_eq!(m["method"], "notifications/progress");
        assert_eq!(m["params"]["progressToken"], "tok");
        seen.push(m["params"]["progress"].as_f64().unwrap());
    }
    assert_eq!(seen, vec![5.0, 10.0]);
    // Without a token, or with an unusable one, a call gets no progress at all.
    for meta in [
        json!({}),
        json!({"progressToken": null}),
        json!({"progressToken": 1.5}),
    ] {
        c.send(req(
            json!(2),
            "tools/call",
            json!({"name": "block", "arguments": {"secs": 12}, "_meta": meta}),
        ))
        .await;
        assert_eq!(c.recv().await["id"], 2, "{meta}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_with_a_slow_call_is_answered_as_one_array_when_it_finishes() {
    let mut c = start();
    let init = json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    c.send(req(json!(0), "initialize", init)).await;
    assert_eq!(c.recv().await["id"], 0);
    c.send(json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "block", "arguments": {"secs": 3}, "_meta": {"progressToken": "t"}}}
    ]))
    .await;
    // A lone ping overtakes the batch; the batch comes whole, without progress.
    c.send(req(json!(3), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 3);
    let out = c.recv().await;
    let out = out.as_array().unwrap_or_else(|| panic!("an array: {out}"));
    assert_eq!(out.len(), 2);
    assert!(
        out.iter()
            .any(|r| r["result"]["content"][0]["text"] == "slept 3s")
    );
    // A batch of notifications is not answered.
    c.send(json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]))
        .await;
    c.send(req(json!(4), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 4);
}

#[tokio::test(start_paused = true)]
async fn progress_for_2024_11_05_clients_has_no_message() {
    let mut c = start();
    c.send(req(
        json!(0),
        "initialize",
        json!({"protocolVersion": "2024-11-05"}),
    ))
    .await;
    assert_eq!(c.recv().await["id"], 0);
    c.send(req(
        json!(1),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 6}, "_meta": {"progressToken": 9}}),
    ))
    .await;
    let progress = c.recv().await;
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(
        progress["params"],
        json!({"progressToken": 9, "progress": 5.0})
    );
    assert_eq!(c.recv().await["id"], 1);
}

async fn initialize_on(c: &mut Client, version: &str) {
    let init = json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    c.send(req(json!("init"), "initialize", init)).await;
    let resp = c.recv().await;
    assert_eq!(resp["result"]["protocolVersion"], version);
    // Only 2025-11-25 defines tasks; the capability says which requests may be tasks.
    let tasks = &resp["result"]["capabilities"]["tasks"];
    if version == "2025-11-25" {
        assert_eq!(tasks["requests"]["tools"]["call"], json!({}), "{resp}");
        assert!(
            tasks["list"].is_object() && tasks["cancel"].is_object(),
            "{resp}"
        );
    } else {
        assert!(tasks.is_null(), "{resp}");
    }
}

#[tokio::test(start_paused = true)]
async fn task_augmented_calls_run_as_tasks_for_2025_11_25_clients() {
    let mut c = start();
    initialize_on(&mut c, "2025-11-25").await;
    c.send(req(json!(1), "tools/list", json!({}))).await;
    let list = c.recv().await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["execution"] == json!({"taskSupport": "optional"}))
    );
    // Created at once, working.
    c.send(req(
        json!(2),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 10}, "task": {"ttl": 60000}}),
    ))
    .await;
    let created = c.recv().await;
    let task = created["result"]["task"].clone();
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttl"], 60000);
    let task_id = task["taskId"].as_str().unwrap().to_owned();
    // tasks/result waits; tasks/get and tasks/list answer meanwhile.
    c.send(req(json!(3), "tasks/result", json!({"taskId": task_id})))
        .await;
    c.send(req(json!(4), "tasks/get", json!({"taskId": task_id})))
        .await;
    let got = c.recv().await;
    assert_eq!(
        (got["id"].clone(), got["result"]["status"].clone()),
        (json!(4), json!("working"))
    );
    c.send(req(json!(5), "tasks/list", json!({}))).await;
    assert_eq!(
        c.recv().await["result"]["tasks"][0]["taskId"],
        json!(task_id)
    );
    let result = c.recv().await;
    assert_eq!(result["id"], 3);
    assert_eq!(result["result"]["content"][0]["text"], "slept 10s");
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        json!(task_id)
    );
    c.send(req(json!(6), "tasks/get", json!({"taskId": task_id})))
        .await;
    assert_eq!(c.recv().await["result"]["status"], "completed");
    // A failing tool ends its task failed; cancelling an ended task is -32602.
    c.send(req(
        json!(7),
        "tools/call",
        json!({"name": "fail", "task": {}}),
    ))
    .await;
    let failing = c.recv().await["result"]["task"]["taskId"].clone();
    tokio::time::sleep(Duration::from_millis(10)).await;
    c.send(req(json!(8), "tasks/get", json!({"taskId": failing})))
        .await;
    assert_eq!(c.recv().await["result"]["status"], "failed");
    c.send(req(json!(9), "tasks/cancel", json!({"taskId": failing})))
        .await;
    assert_eq!(error_code(&c.recv().await), -32602);
    // Cancelling a running task stops it.
    c.send(req(
        json!(10),
        "tools/call",
        json!({"name": "block", "task": {}}),
    ))
    .await;
    let running = c.recv().await["result"]["task"]["taskId"].clone();
    c.send(req(json!(11), "tasks/cancel", json!({"taskId": running})))
        .await;
    assert_eq!(c.recv().await["result"]["status"], "cancelled");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.tools.block_dropped_unfinished.load(Ordering::SeqCst), 1);
    c.send(req(json!(12), "tasks/get", json!({"taskId": "nope"})))
        .await;
    assert_eq!(error_code(&c.recv().await), -32602);
}

#[tokio::test]
async fn tasks_are_not_served_to_earlier_revisions() {
    let mut c = start();
    initialize_on(&mut c, "2025-06-18").await;
    c.send(req(json!(1), "tasks/list", json!({}))).await;
    assert_eq!(error_code(&c.recv().await), -32601);
    // The task field is ignored: the call runs as a plain call.
    c.send(req(
        json!(2),
        "tools/call",
        json!({"name": "say", "task": {}}),
    ))
    .await;
    assert_eq!(c.recv().await["result"]["content"][0]["text"], "said 0");
    c.send(req(json!(3), "tools/list", json!({}))).await;
    let list = c.recv().await;
    assert!(list["result"]["tools"][0].get("execution").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_id_already_in_flight_is_refused() {
    let mut c = start();
    c.send(req(
        json!(1),
        "tools/call",
        json!({"name": "block", "arguments": {"secs": 1}}),
    ))
    .await;
    c.send(req(json!(1), "tools/call", json!({"name": "say"})))
        .await;
    let refused = c.recv().await;
    assert_eq!(
        (refused["id"].clone(), error_code(&refused)),
        (json!(1), -32600)
    );
    let done = c.recv().await;
    assert_eq!(done["result"]["content"][0]["text"], "slept 1s");
    assert_eq!(c.tools.block_started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_tool_is_an_internal_error_and_the_server_lives_on() {
    let mut c = start();
    c.send(req(json!(1), "tools/call", json!({"name": "panic"})))
        .await;
    let resp = c.recv().await;
    assert_eq!((resp["id"].clone(), error_code(&resp)), (json!(1), -32603));
    c.send(req(json!(2), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 2);
}

#[tokio::test]
async fn push_notifications_are_written_as_single_lines_by_the_same_writer() {
    let mut c = start();
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let params = json!({"content": "[from canvas user]\nhello\n↩ Reply", "meta": {"source": "molecule", "kind": "canvas_user"}});
    c.push.try_send(json!(42)).unwrap(); // not a notification: dropped
    c.push.try_send(json!({"params": {}})).unwrap(); // no method: dropped
    c.push
        .try_send(push_notification(
            "notifications/claude/channel",
            params.clone(),
        ))
        .unwrap();
    let line = c.output.next_line().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc": "2.0", "method": "notifications/claude/channel", "params": params})
    );
    // A push with a stray id and wrong version is normalised into a notification.
    c.push
        .try_send(json!({"jsonrpc": "1.0", "id": 3, "method": "x/y"}))
        .unwrap();
    assert_eq!(c.recv().await, json!({"jsonrpc": "2.0", "method": "x/y"}));
    // Interleaves with responses, one JSON object per line.
    c.send(req(json!(1), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 1);
}

#[tokio::test]
async fn pushes_wait_for_notifications_initialized_and_keep_their_order() {
    let mut c = start();
    for n in 0..3 {
        c.push
            .try_send(push_notification("x/push", json!({"n": n})))
            .unwrap();
    }
    // Before the handshake ends only answers go out: the ping's answer is the first line.
    let init = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    c.send(req(json!(1), "initialize", init)).await;
    assert_eq!(c.recv().await["id"], 1);
    c.send(req(json!(2), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 2);
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    for n in 0..3 {
        assert_eq!(c.recv().await["params"]["n"], n);
    }
    c.push
        .try_send(push_notification("x/push", json!({"n": 3})))
        .unwrap();
    assert_eq!(c.recv().await["params"]["n"], 3);
}

#[tokio::test]
async fn a_modern_request_opens_pushes_but_a_discover_probe_does_not() {
    let mut c = start();
    c.push
        .try_send(push_notification("x/push", json!({})))
        .unwrap();
    let meta = json!({"_meta": modern_meta("2026-07-28")});
    c.send(req(json!(1), "server/discover", meta.clone())).await;
    assert_eq!(c.recv().await["id"], 1);
    c.send(req(json!(2), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 2, "no push after a discover probe");
    c.send(req(json!(3), "tools/list", meta)).await;
    assert_eq!(c.recv().await["id"], 3);
    assert_eq!(c.recv().await["method"], "x/push");
}

// ---------------------------------------------------------------------------------------
// Server: framing through real reads
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_20_mb_line_without_newline_is_rejected_then_the_next_request_is_served() {
    let mut c = start();
    let mut input = c.input.take().unwrap();
    let feeder = tokio::spawn(async move {
        let chunk = vec![b'{'; 1024 * 1024];
        for _ in 0..20 {
            input.write_all(&chunk).await.unwrap();
        }
        input
            .write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        input
    });
    let err = c.recv().await;
    assert_eq!((err["id"].clone(), error_code(&err)), (Value::Null, -32600));
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    assert_eq!(
        c.recv().await,
        json!({"jsonrpc": "2.0", "id": 7, "result": {}})
    );
    c.input = Some(feeder.await.unwrap());
}

#[test]
fn framer_memory_is_bounded_by_the_line_limit_not_the_line() {
    let max = 1024 * 1024;
    let mut framer = LineFramer::new(max);
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..(20 * 16) {
        framer.push(&chunk);
        assert!(framer.buffered_len() <= max);
        assert!(framer.buffered_capacity() <= max);
    }
    framer.push(b"\n");
    assert_eq!(
        framer.next_frame(),
        Some(Frame::Oversized {
            discarded: 20 * 1024 * 1024
        })
    );
}

/// Yields one queued chunk per read, then EOF: makes read boundaries deterministic.
struct ChunkedReader(VecDeque<Vec<u8>>);

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

async fn serve_chunks(chunks: Vec<Vec<u8>>) -> (Vec<Value>, ServeEnd) {
    let (server_out, client_out) = tokio::io::duplex(1 << 20);
    let (_push, pushes) = mpsc::channel(1);
    let end = serve(
        ChunkedReader(chunks.into()),
        server_out,
        Arc::new(TestTools::default()),
        identity(),
        pushes,
    )
    .await;
    let mut lines = BufReader::new(client_out).lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.expect("output readable") {
        out.push(serde_json::from_str(&line).expect("output line is JSON"));
    }
    (out, end)
}

#[tokio::test]
async fn multibyte_utf8_split_across_reads_decodes_correctly() {
    let text = "é🦀ü";
    let line = format!(
        "{}\r\n",
        req(
            json!(1),
            "tools/call",
            json!({"name": "echo", "arguments": {"s": text}})
        )
    );
    let bytes = line.as_bytes();
    let crab = line.find('🦀').unwrap();
    let e_acute = line.find('é').unwrap();
    // Cut inside 'é' (2 bytes) and inside the crab (4 bytes).
    let chunks = vec![
        bytes[..e_acute + 1].to_vec(),
        bytes[e_acute + 1..crab + 2].to_vec(),
        bytes[crab + 2..].to_vec(),
    ];
    let (out, end) = serve_chunks(chunks).await;
    assert!(matches!(end, ServeEnd::InputClosed));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["result"]["structuredContent"]["s"], text);
}

#[tokio::test]
async fn the_final_unterminated_line_is_processed_at_eof() {
    let chunks = vec![
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\n".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":2,\"meth".to_vec(),
        b"od\":\"ping\"}".to_vec(),
    ];
    let (out, end) = serve_chunks(chunks).await;
    assert!(matches!(end, ServeEnd::InputClosed));
    let ids: Vec<&Value> = out.iter().map(|v| &v["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2)]);
}

// ---------------------------------------------------------------------------------------
// Server: ending
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn eof_returns_promptly_and_aborts_in_flight_calls() {
    let mut c = start();
    c.send(req(json!(1), "tools/call", json!({"name": "block"})))
        .await;
    c.send(req(json!(2), "ping", json!({}))).await;
    assert_eq!(c.recv().await["id"], 2);
    let tools = c.tools.clone();
    let started = Instant::now();
    let (rest, end) = c.close_and_collect().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(end, ServeEnd::InputClosed));
    assert!(rest.is_empty());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(tools.block_dropped_unfinished.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn closed_output_ends_serve_without_panicking() {
    let c = start();
    let Client {
        input,
        output,
        server,
        push: _push,
        ..
    } = c;
    drop(output);
    let mut input = input.unwrap();
    input
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        .await
        .unwrap();
    let end = timeout(Duration::from_secs(5), server)
        .await
        .expect("serve ended")
        .unwrap();
    assert!(matches!(end, ServeEnd::OutputClosed), "{end:?}");
}

#[tokio::test(start_paused = true)]
async fn stuck_output_does_not_delay_exit_past_the_flush_grace() {
    // A 1-byte pipe nobody reads: the writer can never drain.
    let (client_in, server_in) = tokio::io::duplex(1024);
    let (server_out, _client_out) = tokio::io::duplex(1);
    let (_push, pushes) = mpsc::channel(1);
    let config = ServeConfig {
        flush_grace: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let server = tokio::spawn(serve_with(
        config,
        server_in,
        server_out,
        Arc::new(TestTools::default()),
        identity(),
        pushes,
    ));
    let mut client_in = client_in;
    client_in
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        .await
        .unwrap();
    drop(client_in);
    let started = Instant::now();
    let end = server.await.unwrap();
    assert!(matches!(end, ServeEnd::InputClosed));
    assert!(
        started.elapsed() <= Duration::from_millis(400),
        "took {:?}",
        started.elapsed()
    );
}
