//! Secret redaction for memory content (reference §5.6.12), as a hand-written scanner.
//!
//! Equivalent regular expressions, applied in this order, each match → `[REDACTED]`:
//!
//! 1. `\bsk-[A-Za-z0-9_-]{20,}\b`
//! 2. `\bgh[ps]_[A-Za-z0-9]{36}\b`
//! 3. `\bgithub_pat_[A-Za-z0-9_]{82}\b`
//! 4. `\bAKIA[0-9A-Z]{16}\b`
//! 5. `(?i)(api_key|key|token|secret|password)\s*=\s*` then `[A-Za-z0-9+/]{40,}={0,2}` —
//!    the keyword and separator are kept, only the value is replaced.
//!
//! `\b` is a word boundary with Unicode word characters (letters, digits, `_`), as in
//! Python's `re`. Quantified runs are greedy and, like a backtracking engine, the longest
//! run that still ends on a word boundary wins. Redaction is idempotent: `[REDACTED]`
//! itself matches nothing.

/// Replacement text.
pub const REDACTED: &str = "[REDACTED]";

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn boundary_at(text: &str, i: usize) -> bool {
    let before = text
        .get(..i)
        .and_then(|s| s.chars().next_back())
        .is_some_and(is_word);
    let after = text
        .get(i..)
        .and_then(|s| s.chars().next())
        .is_some_and(is_word);
    before != after
}

/// Replaces every `\b<prefix><class>{min,max}\b` match (see module docs).
fn redact_prefixed(
    text: &str,
    prefix: &str,
    class: fn(u8) -> bool,
    min: usize,
    max: Option<usize>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = text.get(i..).and_then(|s| s.find(prefix)) {
        let start = i + rel;
        let body = start + prefix.len();
        let run = text
            .as_bytes()
            .get(body..)
            .map_or(0, |b| b.iter().take_while(|c| class(**c)).count());
        let longest = max.map_or(run, |m| run.min(m));
        let matched = if boundary_at(text, start) && longest >= min {
            (min..=longest)
                .rev()
                .find(|len| boundary_at(text, body + len))
        } else {
            None
        };
        match matched {
            Some(len) => {
                out.push_str(text.get(last..start).unwrap_or(""));
                out.push_str(REDACTED);
                last = body + len;
                i = last;
            }
            // Prefixes start with an ASCII byte, so `start + 1` is a char boundary.
            None => i = start + 1,
        }
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

const KEYWORDS: [&str; 5] = ["api_key", "key", "token", "secret", "password"];

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Byte offsets `(value_start, value_end)` when an assignment pattern starts at `i`.
fn assignment_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let rest = text.get(i..)?;
    KEYWORDS.iter().find_map(|kw| {
        let head = rest.get(..kw.len())?;
        if !head.eq_ignore_ascii_case(kw) {
            return None;
        }
        let after_kw = rest.get(kw.len()..)?;
        let eq = after_kw.trim_start();
        let after_eq = eq.strip_prefix('=')?;
        let value = after_eq.trim_start();
        let run = value.bytes().take_while(|b| is_b64(*b)).count();
        if run < 40 {
            return None;
        }
        let pad = value
            .as_bytes()
            .get(run..)
            .map_or(0, |b| b.iter().take(2).take_while(|c| **c == b'=').count());
        let value_start = text.len() - value.len();
        Some((value_start, value_start + run + pad))
    })
}

fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i < text.len() {
        if let Some((value_start, value_end)) = assignment_at(text, i) {
            out.push_str(text.get(last..value_start).unwrap_or(""));
            out.push_str(REDACTED);
            last = value_end;
            i = value_end;
        } else {
            i += text
                .get(i..)
                .and_then(|s| s.chars().next())
                .map_or(1, char::len_utf8);
        }
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

/// Applies the five patterns of the module docs.
pub fn redact_secrets(text: &str) -> String {
    let t = redact_prefixed(
        text,
        "sk-",
        |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        20,
        None,
    );
    let t = redact_prefixed(&t, "ghp_", |b| b.is_ascii_alphanumeric(), 36, Some(36));
    let t = redact_prefixed(&t, "ghs_", |b| b.is_ascii_alphanumeric(), 36, Some(36));
    let t = redact_prefixed(
        &t,
        "github_pat_",
        |b| b.is_ascii_alphanumeric() || b == b'_',
        82,
        Some(82),
    );
    let t = redact_prefixed(
        &t,
        "AKIA",
        |b| b.is_ascii_digit() || b.is_ascii_uppercase(),
        16,
        Some(16),
    );
    redact_assignments(&t)
}
