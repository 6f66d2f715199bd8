//! MCP input hardening of the real `molecule-mcp` binary (heartbeat and inbox disabled, so
//! stdin/stdout are the only traffic):
//!
//! * 100,000 malformed, odd and oversized lines — invalid JSON, invalid UTF-8, NUL bytes,
//!   wrong types, huge and odd ids, deep nesting (up to a megabyte of `[`), batches,
//!   notifications, client responses, blank lines, modern-era requests with a bad version,
//!   tool calls with bad params, and lines exactly at, just under and just over the 8 MiB
//!   line limit of `cli/src/mcp/framing.rs` (`\r` counted) — then a `ping`. Every line
//!   that deserves an answer gets exactly one well-formed JSON-RPC 2.0 response (the id
//!   echoed exactly, or `null` where it could not be read; the expected error code), the
//!   others get none, the final ping is answered, the process is still alive and exits 0 on
//!   EOF. Throughput (lines/s) is printed.
//! * A 100 MB line without a newline, then a newline and a ping: the line is rejected with
//!   `-32600` and `id: null` without being held in memory (peak `VmHWM` stays below
//!   [`HWM_LIMIT_KB`]) and the ping is answered.
//!
//! The fuzz target `fuzz/fuzz_targets/mcp_frames.rs` and its corpus replay in
//! `tests/tests/corpus_replay.rs` cover the sans-io layers; this drives the whole process.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use molecule_mcp_tests::measure::proc_status;
use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// `cli/src/mcp/framing.rs` `DEFAULT_MAX_LINE`: the longest accepted line, `\r` included.
const MAX_LINE: usize = 8 * 1024 * 1024;
/// Lines in the malformed corpus.
const LINES: usize = 100_000;
/// Peak memory allowed while a 100 MB line streams through (the framer keeps at most
/// `MAX_LINE` of it; the process idles at a few MB).
const HWM_LIMIT_KB: u64 = 48 * 1024;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const UNSUPPORTED_VERSION: i64 = -32022;

// ----- the process -----------------------------------------------------------------------------

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    pid: u32,
    token: String,
    _stub: PlatformStub,
    _dir: TempDir,
}

impl Server {
    async fn start(tag: &str) -> Server {
        let stub = PlatformStub::start().await.expect("stub");
        let (ws, token) = stub.create_workspace(WorkspaceSpec::named(tag).poll());
        let dir = TempDir::new(&format!("hardening-{tag}")).expect("state dir");
        let bin = molecule_mcp_bin();
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build -p molecule-mcp-cli --bin molecule-mcp` first",
            bin.display()
        );
        let mut child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("PLATFORM_URL", stub.url())
            .env("WORKSPACE_ID", &ws)
            .env("MOLECULE_WORKSPACE_TOKEN", &token)
            .env("CONFIGS_DIR", dir.path())
            .env("MOLECULE_MCP_DISABLE_HEARTBEAT", "1")
            .env("MOLECULE_MCP_DISABLE_INBOX", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn molecule-mcp");
        let pid = child.id().expect("pid");
        let stdin = child.stdin.take();
        let stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("stdout"));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("stderr")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Server {
            child,
            stdin,
            stdout,
            stderr,
            pid,
            token,
            _stub: stub,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    fn hwm_kb(&self) -> u64 {
        proc_status(self.pid, "VmHWM").expect("VmHWM readable")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads one output line (within `timeout`) and parses it.
    async fn read_message(&mut self, timeout: Duration) -> Option<Value> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(timeout, self.stdout.read_until(b'\n', &mut line))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "stdout line is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&line[..line.len().min(300)])
            )
        }))
    }

    /// Closes stdin; the process must exit 0 without a panic or a token in stderr.
    async fn finish(mut self) {
        assert!(self.alive(), "the server died; stderr:\n{}", self.stderr());
        self.stdin = None;
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exit after EOF")
            .expect("wait");
        // Let the stderr reader reach EOF.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = self.stderr();
        assert_eq!(status.code(), Some(0), "exit status; stderr:\n{err}");
        assert!(!err.contains("panicked"), "panic:\n{err}");
        assert!(!err.contains(&self.token), "token in stderr:\n{err}");
        // Nothing else comes on stdout after the last answer.
        let mut rest = Vec::new();
        let _ = self.stdout.read_to_end(&mut rest).await;
        assert!(
            rest.is_empty(),
            "unexpected trailing stdout: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// A well-formed JSON-RPC 2.0 response from a server that sends no requests: `jsonrpc`,
/// an `id` (string, integer or null), exactly one of an object `result` or an `error` with
/// an integer `code` and a string `message`, and nothing else.
fn check_response(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("not an object")?;
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return Err("jsonrpc is not \"2.0\"".into());
    }
    match obj.get("id") {
        Some(Value::Null | Value::String(_)) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        other => return Err(format!("bad id {other:?}")),
    }
    match (obj.get("result"), obj.get("error")) {
        (Some(Value::Object(_)), None) => {}
        (None, Some(Value::Object(e))) => {
            if !e.get("code").is_some_and(Value::is_i64) {
                return Err("error.code is not an integer".into());
            }
            if !e.get("message").is_some_and(Value::is_string) {
                return Err("error.message is not a string".into());
            }
        }
        _ => return Err("needs exactly one of an object result or an error".into()),
    }
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "jsonrpc" | "id" | "result" | "error"))
    {
        return Err(format!("unexpected member {k:?}"));
    }
    Ok(())
}

// ----- the corpus ------------------------------------------------------------------------------

/// What one line must produce.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// A result object.
    Result,
    /// An error with this code.
    Error(i64),
    /// An error, code not pinned (serde_json's number edge cases).
    AnyError,
}

/// A line and its expected answer: `None` = no response at all; `Some((id, outcome))`
/// with the id the response must carry (`Value::Null` when the server cannot read one).
struct Case {
    bytes: Vec<u8>,
    expect: Option<(Value, Outcome)>,
}

/// xorshift64*: deterministic corpus, seed printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn line(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A ping line of exactly `len` bytes (a padding param fills it up).
fn ping_of_len(id: i64, len: usize) -> Vec<u8> {
    let skeleton =
        json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": ""}}).to_string();
    let pad = len.checked_sub(skeleton.len()).expect("len too small");
    json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": "p".repeat(pad)}})
        .to_string()
        .into_bytes()
}

fn corpus(seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed | 1);
    let mut next_id: i64 = 1_000;
    let mut cases = Vec::with_capacity(LINES);
    let null = Value::Null;
    // The big ones first, once each: the line-length edges (\r counts towards the limit).
    let edge = |id: i64, len: usize, cr: bool| {
        let mut b = ping_of_len(id, len);
        if cr {
            b.push(b'\r');
        }
        b
    };
    cases.push(Case {
        bytes: edge(1, MAX_LINE, false),
        expect: Some((json!(1), Outcome::Result)),
    });
    cases.push(Case {
        bytes: edge(2, MAX_LINE - 1, false),
        expect: Some((json!(2), Outcome::Result)),
    });
    cases.push(Case {
        bytes: edge(3, MAX_LINE - 1, true),
        expect: Some((json!(3), Outcome::Result)),
    });
    cases.push(Case {
        bytes: edge(4, MAX_LINE + 1, false),
        expect: Some((null.clone(), Outcome::Error(INVALID_REQUEST))),
    });
    cases.push(Case {
        bytes: edge(5, MAX_LINE, true),
        expect: Some((null.clone(), Outcome::Error(INVALID_REQUEST))),
    });
    // A megabyte of nesting: a parse error (serde_json's recursion limit), not a stack overflow.
    cases.push(Case {
        bytes: vec![b'['; 1 << 20],
        expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))),
    });
    let mut deep = b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":".to_vec();
    deep.extend(b"{\"a\":".repeat(100_000));
    cases.push(Case {
        bytes: deep,
        expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))),
    });
    // Ids at the edges of the integer range, and odd strings, are echoed exactly.
    for edge in [
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(0),
        json!(-1),
        json!(""),
        json!("é🦀\u{0000}"),
        json!(" "),
        json!("null"),
    ] {
        cases.push(Case {
            bytes: line(&json!({"jsonrpc": "2.0", "id": edge, "method": "ping"})),
            expect: Some((edge, Outcome::Result)),
        });
    }
    let long_method = "x".repeat(500);
    // A 1 MB string id is echoed exactly.
    let big_id = "i".repeat(1 << 20);
    cases.push(Case {
        bytes: line(&json!({"jsonrpc": "2.0", "id": big_id, "method": "ping"})),
        expect: Some((json!(big_id), Outcome::Result)),
    });

    while cases.len() < LINES {
        next_id += 1;
        let id = next_id;
        let sid = format!("s-{id}");
        let kind = rng.below(40);
        let case = match kind {
            // Invalid JSON: a strict prefix of a valid request (never valid, never blank).
            0..=3 => {
                let full = line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"k": "v"}}));
                let cut = 1 + rng.below(full.len() as u64 - 1) as usize;
                Case { bytes: full[..cut].to_vec(), expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))) }
            }
            4 => {
                let junk: &[&[u8]] = &[b"not json", b"{{{", b"}", b"[1,2", b"\"unterminated", b"{'single':1}", b"nul", b"+1", b"{\"a\":1,}", b"\x1b[31mred"];
                let j = junk[rng.below(junk.len() as u64) as usize];
                Case { bytes: j.to_vec(), expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))) }
            }
            // Invalid UTF-8 inside an otherwise valid request, and random high bytes.
            5 | 6 => {
                let mut b = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"s":""#).into_bytes();
                let bad: &[&[u8]] = &[b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x92", b"\xed\xa0\x80", b"\xc0\xaf"];
                b.extend_from_slice(bad[rng.below(bad.len() as u64) as usize]);
                b.extend_from_slice(b"\"}}");
                Case { bytes: b, expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))) }
            }
            7 => {
                let n = 1 + rng.below(64) as usize;
                let b: Vec<u8> = (0..n).map(|_| 0x80 | (rng.next() as u8 & 0x7f)).collect();
                Case { bytes: b, expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))) }
            }
            // NUL bytes: raw (invalid JSON) and escaped (a valid, unknown method).
            8 => {
                let raw: &[&[u8]] = &[b"\0", b"\0\0\0\0", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\0\"}", b"{\0}"];
                let r = raw[rng.below(raw.len() as u64) as usize];
                Case { bytes: r.to_vec(), expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))) }
            }
            9 => Case {
                bytes: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping\u0000"}}"#).into_bytes(),
                expect: Some((json!(id), Outcome::Error(METHOD_NOT_FOUND))),
            },
            // Wrong types.
            10 => Case {
                bytes: line(&json!({"jsonrpc": 2.0, "id": id, "method": "ping"})),
                expect: Some((json!(id), Outcome::Error(INVALID_REQUEST))),
            },
            11 => Case {
                bytes: line(&json!({"jsonrpc": "2.0", "id": sid, "method": 7})),
                expect: Some((json!(sid), Outcome::Error(INVALID_REQUEST))),
            },
            12 => {
                let params = [json!(5), json!("x"), json!([1, 2]), json!(true)];
                let p = params[rng.below(4) as usize].clone();
                Case {
                    bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": p})),
                    expect: Some((json!(id), Outcome::Error(INVALID_PARAMS))),
                }
            }
            13 => {
                let params = [json!({}), json!({"name": 5}), json!({"name": "inbox_peek", "arguments": "x"}), json!({"name": "no_such_tool"}), json!({"name": "inbox_peek", "arguments": [1]})];
                let p = params[rng.below(5) as usize].clone();
                Case {
                    bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": p})),
                    expect: Some((json!(id), Outcome::Error(INVALID_PARAMS))),
                }
            }
            // Ids that cannot be echoed exactly, or are not ids at all.
            14 | 15 => {
                let ids = ["null", "true", "[1]", "{}", "1.5", "-0.0", "1e3", "123456789012345678901234567890", "-99999999999999999999", "18446744073709551616"];
                let raw = ids[rng.below(ids.len() as u64) as usize];
                Case {
                    bytes: format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#).into_bytes(),
                    expect: Some((null.clone(), Outcome::Error(INVALID_REQUEST))),
                }
            }
            16 => Case {
                bytes: br#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.to_vec(),
                expect: Some((null.clone(), Outcome::AnyError)),
            },
            // Integer ids above i64::MAX and negative ones are echoed exactly.
            17 => {
                let e = if rng.below(2) == 0 { json!(i64::MAX as u64 + id as u64) } else { json!(-id) };
                Case {
                    bytes: line(&json!({"jsonrpc": "2.0", "id": e, "method": "ping"})),
                    expect: Some((e, Outcome::Result)),
                }
            }
            // Deep but legal nesting in params (well under serde_json's limit of 128).
            18 => {
                let depth = 1 + rng.below(100) as usize;
                let mut p = String::new();
                for _ in 0..depth {
                    p.push('[');
                }
                for _ in 0..depth {
                    p.push(']');
                }
                Case {
                    bytes: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"n":{p}}}}}"#).into_bytes(),
                    expect: Some((json!(id), Outcome::Result)),
                }
            }
            19 => {
                let depth = 129 + rng.below(2000) as usize;
                Case {
                    bytes: format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
                    expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))),
                }
            }
            // Batches (removed after 2025-03-26): one error for the whole array.
            20 => {
                let batch = match rng.below(3) {
                    0 => json!([]),
                    1 => json!([{"jsonrpc": "2.0", "id": id, "method": "ping"}]),
                    _ => json!([{"jsonrpc": "2.0", "id": id, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/initialized"}, 7]),
                };
                Case { bytes: line(&batch), expect: Some((null.clone(), Outcome::Error(INVALID_REQUEST))) }
            }
            // Not objects, not requests.
            21 => {
                let v = [json!(null), json!(1), json!("str"), json!(false), json!({}), json!({"jsonrpc": "2.0"})];
                let x = v[rng.below(v.len() as u64) as usize].clone();
                Case { bytes: line(&x), expect: Some((null.clone(), Outcome::Error(INVALID_REQUEST))) }
            }
            22 => Case {
                bytes: line(&json!({"jsonrpc": "2.0", "id": id})),
                expect: Some((json!(id), Outcome::Error(INVALID_REQUEST))),
            },
            // Notifications and client responses: never answered.
            23 | 24 => {
                let v = [
                    json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                    json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}),
                    json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}}),
                    json!({"jsonrpc": "2.0", "method": "no/such/notification", "params": 5}),
                    json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                    json!({"jsonrpc": "2.0", "id": sid, "error": {"code": 1, "message": "x"}}),
                ];
                Case { bytes: line(&v[rng.below(v.len() as u64) as usize]), expect: None }
            }
            // Blank lines: skipped.
            25 => {
                let v: &[&[u8]] = &[b"", b" ", b"\t\t", b"\r", b"  \r", b"\x0c"];
                Case { bytes: v[rng.below(v.len() as u64) as usize].to_vec(), expect: None }
            }
            // Unknown methods and resources/prompts we do not declare.
            26 | 27 => {
                let m = ["resources/list", "prompts/list", "logging/setLevel", "completion/complete", "", "PING", "tools/list/", long_method.as_str()];
                let name = m[rng.below(m.len() as u64) as usize];
                Case {
                    bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": name, "params": {}})),
                    expect: Some((json!(id), Outcome::Error(METHOD_NOT_FOUND))),
                }
            }
            // Modern era with a version we do not serve.
            28 => Case {
                bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "1999-01-01"}}})),
                expect: Some((json!(id), Outcome::Error(UNSUPPORTED_VERSION))),
            },
            29 => Case {
                bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": 2026}}})),
                expect: Some((json!(id), Outcome::Error(INVALID_PARAMS))),
            },
            // Valid requests mixed in: answered normally.
            30..=33 => {
                let methods = ["ping", "tools/list", "server/discover", "initialize"];
                let m = methods[rng.below(4) as usize];
                Case {
                    bytes: line(&json!({"jsonrpc": "2.0", "id": sid, "method": m, "params": {"protocolVersion": 42}})),
                    expect: Some((json!(sid), Outcome::Result)),
                }
            }
            // Long (but legal) lines.
            34 => {
                let len = 1024 + rng.below(8 * 1024) as usize;
                Case { bytes: ping_of_len(id, len), expect: Some((json!(id), Outcome::Result)) }
            }
            // Wrong jsonrpc versions and duplicate / extra members.
            35 => Case {
                bytes: line(&json!({"jsonrpc": "1.0", "id": id, "method": "ping"})),
                expect: Some((json!(id), Outcome::Error(INVALID_REQUEST))),
            },
            36 => Case {
                bytes: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","extra":{{"x":[1,2,3]}},"params":null}}"#).into_bytes(),
                expect: Some((json!(id), Outcome::Result)),
            },
            // Control characters and odd whitespace around a valid request.
            37 => Case {
                bytes: format!(" \t{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\t \r").into_bytes(),
                expect: Some((json!(id), Outcome::Result)),
            },
            38 => Case {
                bytes: format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\u{0b}").into_bytes(),
                expect: Some((null.clone(), Outcome::Error(PARSE_ERROR))),
            },
            // A tool call with bad arguments for a real tool (inbox disabled: a tool error).
            _ => Case {
                bytes: line(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "inbox_peek", "arguments": {"limit": "many", "bogus": 1}}})),
                expect: Some((json!(id), Outcome::Result)),
            },
        };
        cases.push(case);
    }
    // Shuffle the big edge cases into the stream (Fisher–Yates).
    for i in (1..cases.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        cases.swap(i, j);
    }
    cases
}

fn outcome_matches(resp: &Value, want: &Outcome) -> bool {
    match want {
        Outcome::Result => resp.get("result").is_some(),
        Outcome::Error(code) => resp["error"]["code"] == json!(code),
        Outcome::AnyError => resp.get("error").is_some(),
    }
}

// ----- tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_malformed_lines_then_ping() {
    let seed = std::env::var("MCP_HARDENING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d63_7068_6172_646e_u64);
    eprintln!("corpus seed {seed} (set MCP_HARDENING_SEED to replay another)");
    let cases = corpus(seed);
    assert_eq!(cases.len(), LINES);
    // Expected answers: ids are unique except null; count the nulls.
    let mut by_id: HashMap<String, Outcome> = HashMap::new();
    let mut null_expected: Vec<Outcome> = Vec::new();
    for c in &cases {
        match &c.expect {
            Some((Value::Null, o)) => null_expected.push(o.clone()),
            Some((id, o)) => {
                let prev = by_id.insert(id.to_string(), o.clone());
                assert!(prev.is_none(), "corpus reuses id {id}");
            }
            None => {}
        }
    }
    let final_id = json!("final-ping");
    by_id.insert(final_id.to_string(), Outcome::Result);
    let expected_total = by_id.len() + null_expected.len();
    let mut stream = Vec::with_capacity(64 << 20);
    for c in &cases {
        stream.extend_from_slice(&c.bytes);
        stream.push(b'\n');
    }
    stream.extend_from_slice(
        line(&json!({"jsonrpc": "2.0", "id": final_id, "method": "ping"})).as_slice(),
    );
    stream.push(b'\n');
    let bytes_total = stream.len();

    let mut server = Server::start("lines").await;
    let mut stdin = server.stdin.take().expect("stdin");
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in stream.chunks(64 * 1024) {
            stdin.write_all(chunk).await.expect("write corpus");
        }
        stdin.flush().await.expect("flush");
        stdin
    });

    let mut seen = 0usize;
    let mut null_seen: HashMap<i64, usize> = HashMap::new();
    let mut final_at = None;
    while seen < expected_total {
        let msg = server
            .read_message(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "only {seen} of {expected_total} answers; stderr:\n{}",
                    server.stderr()
                )
            });
        if let Err(why) = check_response(&msg) {
            let text = msg.to_string();
            panic!(
                "malformed response ({why}): {}",
                &text[..text.len().min(300)]
            );
        }
        seen += 1;
        let id = &msg["id"];
        if id.is_null() {
            let code = msg["error"]["code"]
                .as_i64()
                .expect("a null-id answer is an error");
            *null_seen.entry(code).or_default() += 1;
            continue;
        }
        let key = id.to_string();
        let want = by_id.remove(&key).unwrap_or_else(|| {
            panic!(
                "unexpected or duplicate answer for id {}",
                &key[..key.len().min(80)]
            )
        });
        assert!(
            outcome_matches(&msg, &want),
            "id {}: want {want:?}, got {}",
            &key[..key.len().min(80)],
            &msg.to_string()[..msg.to_string().len().min(300)]
        );
        if *id == final_id {
            final_at = Some(started.elapsed());
        }
    }
    let elapsed = started.elapsed();
    let mut stdin = writer.await.expect("writer");
    assert!(
        by_id.is_empty(),
        "unanswered ids: {:?}",
        by_id.keys().take(10).collect::<Vec<_>>()
    );
    // Null-id answers: the right number of each code.
    let mut null_want: HashMap<i64, usize> = HashMap::new();
    let mut any_errors = 0usize;
    for o in &null_expected {
        match o {
            Outcome::Error(code) => *null_want.entry(*code).or_default() += 1,
            Outcome::AnyError => any_errors += 1,
            Outcome::Result => panic!("a result cannot carry a null id"),
        }
    }
    let seen_total: usize = null_seen.values().sum();
    assert_eq!(seen_total, null_expected.len());
    for (code, want) in &null_want {
        let got = null_seen.get(code).copied().unwrap_or(0);
        assert!(
            got >= *want && got <= *want + any_errors,
            "code {code}: {got} null-id answers, want {want} (+ up to {any_errors} unpinned)"
        );
    }
    assert!(final_at.is_some(), "the final ping was not answered");
    assert!(
        server.alive(),
        "the server died; stderr:\n{}",
        server.stderr()
    );
    let rate = LINES as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{LINES} lines ({:.1} MB) + ping: {expected_total} answers in {:.2}s = {rate:.0} lines/s, {:.1} MB/s; \
         final ping answered at {:.2}s; peak VmHWM {} kB",
        bytes_total as f64 / 1e6,
        elapsed.as_secs_f64(),
        bytes_total as f64 / 1e6 / elapsed.as_secs_f64(),
        final_at.unwrap_or_default().as_secs_f64(),
        server.hwm_kb()
    );
    // Still a working server: one more ping round trip.
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"after\",\"method\":\"ping\"}\n")
        .await
        .expect("write");
    let after = server
        .read_message(Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(
        after,
        json!({"jsonrpc": "2.0", "id": "after", "result": {}})
    );
    server.stdin = Some(stdin);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_line_is_rejected_without_buffering_it() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let mut server = Server::start("100mb").await;
    let mut stdin = server.stdin.take().expect("stdin");
    let base = server.hwm_kb();
    let chunk = vec![b'x'; 1024 * 1024];
    let started = Instant::now();
    let mut peak = base;
    for i in 0..TOTAL / chunk.len() {
        stdin.write_all(&chunk).await.expect("write");
        if i % 10 == 9 {
            peak = peak.max(server.hwm_kb());
        }
    }
    stdin
        .write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"ping\"}\n")
        .await
        .expect("write");
    stdin.flush().await.expect("flush");
    let rejected = server
        .read_message(Duration::from_secs(60))
        .await
        .expect("an answer to the long line");
    check_response(&rejected).expect("well-formed");
    assert_eq!(rejected["id"], Value::Null, "{rejected}");
    assert_eq!(
        rejected["error"]["code"],
        json!(INVALID_REQUEST),
        "{rejected}"
    );
    let message = rejected["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(&format!("{TOTAL} bytes")), "{message}");
    let pong = server
        .read_message(Duration::from_secs(10))
        .await
        .expect("ping answer");
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 42, "result": {}}));
    let hwm = server.hwm_kb().max(peak);
    eprintln!(
        "100 MB line streamed in {:.2}s; VmHWM {base} kB before, {hwm} kB peak (limit {HWM_LIMIT_KB} kB)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        hwm < HWM_LIMIT_KB,
        "peak VmHWM {hwm} kB while a 100 MB line streamed through"
    );
    assert!(server.alive());
    server.stdin = Some(stdin);
    server.finish().await;
}
