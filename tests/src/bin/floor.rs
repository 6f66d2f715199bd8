//! `floor`: the smallest stdio MCP server we can write in Rust, std only, no dependencies.
//! It is the **floor** of the start-up benchmark (`bench --only startup`): how fast a
//! process on this machine can be spawned, read an `initialize` line and answer it, and how
//! little memory that takes. molecule-mcp's cold start and peak RSS are reported as ratios
//! to it, measured in the same run.
//!
//! It reads newline-delimited JSON-RPC from stdin and answers:
//! * `initialize`: the client's `protocolVersion` echoed (or `2025-06-18`),
//!   `capabilities: {"tools": {}}` and a `serverInfo`;
//! * `tools/list`: an **empty** tool list (it has no tools; a list of 12 descriptions would
//!   add a few KiB of output, not measurable start-up);
//! * any other request: JSON-RPC error -32601 (method not found).
//!
//! Notifications (no `id`) are ignored; unparsable lines too (the floor is not a protocol
//! test). It exits 0 on EOF. The JSON is scanned by hand ([`fields`]): just enough to find
//! the top-level `id`, `method` and `params.protocolVersion` of one object.

use std::io::{BufRead as _, Write as _};

fn main() {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(reply) = answer(&line) {
            // A closed stdout means the client is gone: stop like on EOF.
            if output
                .write_all(reply.as_bytes())
                .and_then(|()| output.write_all(b"\n"))
                .and_then(|()| output.flush())
                .is_err()
            {
                return;
            }
        }
    }
}

/// The reply line to one request line, or `None` for a notification or a line that is not
/// a JSON object.
fn answer(line: &str) -> Option<String> {
    let top = fields(line)?;
    let id = lookup(&top, "id")?;
    let method = lookup(&top, "method").and_then(string_value);
    let result = match method {
        Some("initialize") => {
            let version = lookup(&top, "params")
                .and_then(fields)
                .and_then(|params| lookup(&params, "protocolVersion"))
                // Echoed as the raw JSON string it was (escapes included).
                .filter(|raw| string_value(raw).is_some())
                .unwrap_or("\"2025-06-18\"");
            format!(
                r#"{{"protocolVersion":{version},"capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"floor","version":"0"}}}}"#
            )
        }
        Some("tools/list") => r#"{"tools":[]}"#.to_owned(),
        Some(_) | None => {
            return Some(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"method not found"}}}}"#
            ));
        }
    };
    Some(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
    ))
}

fn lookup<'a>(fields: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The contents of a raw JSON string without escapes (`"abc"` → `abc`); `None` for any
/// other value or a string with escapes (no method name needs them).
fn string_value(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// The top-level members of a JSON object as (raw key contents, raw value text) pairs;
/// `None` when `text` is not one object.
fn fields(text: &str) -> Option<Vec<(&str, &str)>> {
    let bytes = text.as_bytes();
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(bytes, at + 1);
    let mut out = Vec::new();
    if bytes.get(at) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = skip_value(bytes, at)?;
        let key = text
            .get(at..key_end)?
            .strip_prefix('"')?
            .strip_suffix('"')?;
        at = skip_ws(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, at + 1);
        let value_end = skip_value(bytes, value_start)?;
        out.push((key, text.get(value_start..value_end)?));
        at = skip_ws(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_ws(bytes, at + 1),
            Some(b'}') => return Some(out),
            Some(_) | None => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The end of the JSON value starting at `at` (strings honour escapes; objects and arrays
/// are matched by depth, skipping strings). Scalars end at the next delimiter.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = skip_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// The end (one past the closing quote) of the string starting at `at`.
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_echoes_the_protocol_version() {
        let reply = answer(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}"#,
        );
        assert_eq!(
            reply.as_deref(),
            Some(
                r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26","capabilities":{"tools":{}},"serverInfo":{"name":"floor","version":"0"}}}"#
            )
        );
    }

    #[test]
    fn initialize_without_a_version_gets_the_default() {
        let reply = answer(r#"{"id":"a","method":"initialize","params":{}}"#).unwrap_or_default();
        assert!(reply.contains(r#""id":"a""#), "{reply}");
        assert!(
            reply.contains(r#""protocolVersion":"2025-06-18""#),
            "{reply}"
        );
    }

    #[test]
    fn tools_list_is_empty_and_others_are_not_found() {
        assert_eq!(
            answer(r#" { "method" : "tools/list", "id" : 7 , "params": {"x": [1, "]}"]} }"#)
                .as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#)
        );
        let reply = answer(r#"{"id":8,"method":"tools/call"}"#).unwrap_or_default();
        assert!(reply.contains("-32601"), "{reply}");
    }

    #[test]
    fn notifications_and_garbage_get_no_reply() {
        assert_eq!(
            answer(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
        assert_eq!(answer("not json"), None);
        assert_eq!(answer(r#"{"id":1,"method":"#), None);
        assert_eq!(answer(r#"{"id":"\"#), None);
    }
}
