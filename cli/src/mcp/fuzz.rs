//! The body of the `mcp_frames` fuzz target, kept here so the committed corpus also runs as
//! an ordinary test on stable (`tests/tests/corpus_replay.rs`). Compiled only with the cli's
//! `fuzzing` feature, which `fuzz/Cargo.toml` and the tests package enable: never part of
//! the `molecule-mcp` binary.
//!
//! [`frames_case`] checks two properties for arbitrary input bytes:
//!
//! 1. **framing is chunking-independent**: one `push` of everything and many pushes of
//!    data-derived sizes give the same frames (with a tiny line limit derived from the
//!    data, so `Oversized` is exercised, and with the default limit);
//! 2. **every frame gets a sane answer** from [`Protocol`] with a small fake tool set: no
//!    panic; at most one response; a response is one line holding a JSON object with
//!    `jsonrpc: "2.0"`, an `id` and exactly one of `result`/`error`; a valid notification
//!    gets nothing; a valid request's id is echoed exactly.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use serde_json::{Map, Value, json};

use super::framing::{DEFAULT_MAX_LINE, Frame, LineFramer};
use super::handler::{ServerIdentity, ToolFuture, ToolHandler, ToolOutput, ToolSpec};
use super::jsonrpc::{Incoming, classify, result_line};
use super::protocol::{Outcome, Protocol};

/// Runs one fuzz case. Panics (the fuzzer's signal) when a property is violated.
pub fn frames_case(data: &[u8]) {
    let small_limit = 1 + usize::from(data.first().copied().unwrap_or(0)) * 2;
    for limit in [small_limit, DEFAULT_MAX_LINE] {
        let whole = frames_in_one_push(data, limit);
        let chunked = frames_in_chunks(data, limit);
        assert_eq!(
            whole, chunked,
            "framing depends on chunking (limit {limit})"
        );
        let protocol = Protocol::new(
            Arc::new(FakeTools),
            ServerIdentity::new("fuzz", "0", String::new),
        );
        for frame in &whole {
            check_frame(&protocol, frame);
        }
    }
}

fn frames_in_one_push(data: &[u8], limit: usize) -> Vec<Frame> {
    let mut framer = LineFramer::new(limit);
    framer.push(data);
    framer.finish();
    drain(&mut framer, limit)
}

fn frames_in_chunks(data: &[u8], limit: usize) -> Vec<Frame> {
    let mut framer = LineFramer::new(limit);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut sizes = data.iter().cycle();
    while !rest.is_empty() {
        let size = 1 + usize::from(sizes.next().copied().unwrap_or(0) % 7);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        framer.push(chunk);
        frames.extend(drain(&mut framer, limit));
        rest = tail;
    }
    framer.finish();
    frames.extend(drain(&mut framer, limit));
    frames
}

fn drain(framer: &mut LineFramer, limit: usize) -> Vec<Frame> {
    assert!(
        framer.buffered_len() <= limit,
        "framer buffered past its limit"
    );
    std::iter::from_fn(|| framer.next_frame()).collect()
}

fn check_frame(protocol: &Protocol, frame: &Frame) {
    let response = match protocol.handle_frame(frame) {
        Outcome::Reply(line) => Some(line),
        Outcome::Silent | Outcome::Cancel(_) => None,
        Outcome::Call(call) => Some(call.reply.output(run_ready(call.future))),
        // The task store lives in the serve loop; reaching it with the id is what is checked.
        Outcome::Task(task) => Some(result_line(&task.id, json!({}))),
        Outcome::Batch(batch) => {
            // Each answer of a batch must be a well-formed response on its own.
            let mut lines = batch.replies;
            for call in batch.calls {
                lines.push(call.reply.output(run_ready(call.future)));
            }
            for line in lines {
                let value: Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(e) => panic!("batch answer is not JSON ({e}): {line}"),
                };
                assert_eq!(value.get("jsonrpc"), Some(&json!("2.0")), "{line}");
                assert!(
                    value.get("result").is_some() != value.get("error").is_some(),
                    "exactly one of result/error: {line}"
                );
            }
            return;
        }
    };
    let incoming = match frame {
        Frame::Line(line) => classify(line).ok(),
        Frame::Oversized { .. } => None,
    };
    match (&incoming, &response) {
        (Some(Incoming::Notification { .. } | Incoming::Response), Some(line)) => {
            panic!("a notification or response was answered: {line}")
        }
        (Some(Incoming::Request { .. }), None) => panic!("a request got no response"),
        (None, None) => panic!("an invalid frame got no error response"),
        _ => {}
    }
    let Some(line) = response else { return };
    assert!(!line.contains('\n'), "response spans lines: {line}");
    let value: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => panic!("response is not JSON ({e}): {line}"),
    };
    let Some(obj) = value.as_object() else {
        panic!("response is not an object: {line}")
    };
    assert_eq!(obj.get("jsonrpc"), Some(&json!("2.0")), "{line}");
    assert!(
        obj.contains_key("result") != obj.contains_key("error"),
        "exactly one of result/error: {line}"
    );
    let Some(id) = obj.get("id") else {
        panic!("response without id: {line}")
    };
    match &incoming {
        Some(Incoming::Request { id: sent, .. }) => {
            assert_eq!(id, &sent.to_json(), "id not echoed: {line}");
        }
        Some(Incoming::Notification { .. } | Incoming::Response) | None => {}
    }
}

/// Polls a future that the fake tools make ready at once.
fn run_ready(mut future: ToolFuture) -> ToolOutput {
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("fake tools are always ready"),
    }
}

/// `echo` returns its arguments as JSON, `say` returns text, `fail` a tool error.
struct FakeTools;

impl ToolHandler for FakeTools {
    fn tools(&self) -> Vec<ToolSpec> {
        ["echo", "say", "fail"]
            .into_iter()
            .map(|name| ToolSpec {
                name,
                description: format!("fake {name}"),
                input_schema: json!({"type": "object"}),
                output_schema: None,
                annotations: None,
            })
            .collect()
    }

    fn call(&self, name: &str, arguments: Map<String, Value>) -> Option<ToolFuture> {
        let output = match name {
            "echo" => ToolOutput::Json(Value::Object(arguments)),
            "say" => ToolOutput::Text(format!("{} arguments", arguments.len())),
            "fail" => ToolOutput::Error("failed".to_owned()),
            _ => return None,
        };
        Some(Box::pin(std::future::ready(output)))
    }
}
