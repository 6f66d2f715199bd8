//! Secret redaction: everything that replaces a secret in text with [`REDACTED`].
//!
//! Two kinds of secrets, two functions:
//!
//! * [`redact_known`]: a value we hold (a workspace token, the platform's inbound secret)
//!   echoed back in text that came from the network, before that text reaches a log line.
//! * [`redact_secrets`]: secrets we do not know but can recognise by shape (API keys,
//!   GitHub tokens, AWS key ids, `password = <base64>`), removed from memory content before
//!   `commit_memory` stores it on the platform.
//!
//! * [`Redactor`]: both at once, for everything the process shows (MCP output, log lines):
//!   every secret the process holds, then the patterns.
//!
//! Making text printable and short (control characters, excerpts, display names) is
//! [`crate::sanitize`].
//!
//! ## Patterns of [`redact_secrets`]
//!
//! A hand-written scanner equivalent to these regular expressions, applied in this order,
//! each match → `[REDACTED]`:
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
//! itself matches nothing. The scanner runs in time linear in the text (memory content can
//! be hundreds of kilobytes).

use crate::secret::Secret;

/// Replacement text.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest known secret [`redact_known`] replaces: shorter values would redact ordinary
/// words, and real tokens are 43 characters.
const MIN_KNOWN_SECRET_LEN: usize = 4;

/// Replaces every occurrence of `secret` in `text` with `[REDACTED]`, so text that came
/// from the network (an error body that echoes the bearer) can be logged safely. Values
/// shorter than 4 bytes are left alone (see `MIN_KNOWN_SECRET_LEN`).
pub fn redact_known(text: &str, secret: &Secret) -> String {
    let value = secret.expose();
    if value.len() < MIN_KNOWN_SECRET_LEN {
        return text.to_owned();
    }
    text.replace(value, REDACTED)
}

/// The secrets one process holds (configured and minted tokens, inbound secrets), applied
/// with the patterns to every text the process shows.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    known: Vec<Secret>,
}

impl Redactor {
    /// A redactor that knows no secret yet (patterns only).
    pub const fn new() -> Self {
        Redactor { known: Vec::new() }
    }

    /// Adds `secret` (trimmed, as the runtime uses tokens and secrets read from files);
    /// values shorter than 4 bytes and repeats are ignored (see `MIN_KNOWN_SECRET_LEN`).
    pub fn remember(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() >= MIN_KNOWN_SECRET_LEN && !self.known.iter().any(|k| k.expose() == secret)
        {
            self.known.push(Secret::new(secret));
        }
    }

    /// `text` with every known secret and every pattern of the module docs replaced. Linear
    /// in the text for each known secret (a handful: one per workspace token and secret).
    pub fn redact(&self, text: &str) -> String {
        // Known values first: a pattern could match inside one and leave the rest of it.
        let mut out = std::borrow::Cow::Borrowed(text);
        for secret in &self.known {
            if out.contains(secret.expose()) {
                out = std::borrow::Cow::Owned(redact_known(&out, secret));
            }
        }
        redact_secrets(&out)
    }
}

/// Applies the five patterns of the module docs.
pub fn redact_secrets(text: &str) -> String {
    // Every MCP reply passes here (13 KB for `tools/list`): a pattern whose prefix does not
    // occur costs one search, not a copy.
    let mut t = std::borrow::Cow::Borrowed(text);
    for pattern in [&SK, &GHP, &GHS, &GITHUB_PAT, &AKIA] {
        if let Some(redacted) = redact_prefixed(&t, pattern) {
            t = std::borrow::Cow::Owned(redacted);
        }
    }
    redact_assignments(&t)
}

/// One `\b<prefix><class>{min,max}\b` pattern.
struct Prefixed {
    prefix: &'static str,
    class: fn(u8) -> bool,
    min: usize,
    max: Option<usize>,
}

const SK: Prefixed = Prefixed {
    prefix: "sk-",
    class: |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
    min: 20,
    max: None,
};
const GHP: Prefixed = Prefixed {
    prefix: "ghp_",
    class: |b| b.is_ascii_alphanumeric(),
    min: 36,
    max: Some(36),
};
const GHS: Prefixed = Prefixed {
    prefix: "ghs_",
    class: |b| b.is_ascii_alphanumeric(),
    min: 36,
    max: Some(36),
};
const GITHUB_PAT: Prefixed = Prefixed {
    prefix: "github_pat_",
    class: |b| b.is_ascii_alphanumeric() || b == b'_',
    min: 82,
    max: Some(82),
};
const AKIA: Prefixed = Prefixed {
    prefix: "AKIA",
    class: |b| b.is_ascii_digit() || b.is_ascii_uppercase(),
    min: 16,
    max: Some(16),
};

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `boundary[i]` for every byte offset `0..=text.len()`: true where `\b` matches, i.e. at a
/// character boundary whose two sides differ in being a word character (offsets inside a
/// multi-byte character are never boundaries).
fn word_boundaries(text: &str) -> Vec<bool> {
    let mut boundary = vec![false; text.len() + 1];
    let mut prev_word = false;
    for (i, c) in text.char_indices() {
        let word = is_word(c);
        if let Some(b) = boundary.get_mut(i) {
            *b = prev_word != word;
        }
        prev_word = word;
    }
    if let Some(b) = boundary.last_mut() {
        *b = prev_word;
    }
    boundary
}

/// Replaces every match of `pattern` (see module docs), scanning left to right; a match
/// resumes the search after itself.
///
/// Linear: the class run after each offset and the last word boundary at or before each
/// offset are computed once, so each occurrence of the prefix costs O(1) instead of a scan
/// of its run (a text made of one long run full of prefixes was quadratic).
///
/// `None` when the prefix does not occur (the text stays as it is, uncopied).
fn redact_prefixed(text: &str, pattern: &Prefixed) -> Option<String> {
    if !text.contains(pattern.prefix) {
        return None;
    }
    let bytes = text.as_bytes();
    // run[p]: how many bytes of the class start at p.
    let mut run = vec![0usize; bytes.len() + 1];
    for p in (0..bytes.len()).rev() {
        if (pattern.class)(bytes[p]) {
            run[p] = run[p + 1] + 1;
        }
    }
    let boundary = word_boundaries(text);
    // last_boundary[p]: the greatest boundary offset <= p.
    let mut last_boundary = vec![None; boundary.len()];
    let mut last = None;
    for (p, is_boundary) in boundary.iter().enumerate() {
        if *is_boundary {
            last = Some(p);
        }
        last_boundary[p] = last;
    }

    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(rel) = text.get(i..).and_then(|s| s.find(pattern.prefix)) {
        let start = i + rel;
        let body = start + pattern.prefix.len();
        let longest = pattern.max.map_or(run[body], |m| run[body].min(m));
        // The longest length in min..=longest that ends on a boundary.
        let matched = if boundary[start] && longest >= pattern.min {
            last_boundary[body + longest]
                .filter(|end| *end >= body + pattern.min)
                .map(|end| end - body)
        } else {
            None
        };
        match matched {
            Some(len) => {
                out.push_str(text.get(copied..start).unwrap_or(""));
                out.push_str(REDACTED);
                copied = body + len;
                i = copied;
            }
            // Prefixes start with an ASCII byte, so `start + 1` is a char boundary.
            None => i = start + 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    Some(out)
}

const KEYWORDS: [&str; 5] = ["api_key", "key", "token", "secret", "password"];

/// Shortest base64 value an assignment pattern redacts.
const MIN_ASSIGNED_VALUE: usize = 40;

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// The value of an assignment whose `=` is at byte `eq`: `(value_start, value_end)` when at
/// least [`MIN_ASSIGNED_VALUE`] base64 bytes (then up to two `=` of padding) follow `\s*`.
fn assigned_value(text: &str, eq: usize) -> Option<(usize, usize)> {
    let value = text.get(eq + 1..)?.trim_start();
    let run = value.bytes().take_while(|b| is_b64(*b)).count();
    if run < MIN_ASSIGNED_VALUE {
        return None;
    }
    let pad = value
        .as_bytes()
        .get(run..)
        .map_or(0, |b| b.iter().take(2).take_while(|c| **c == b'=').count());
    let value_start = text.len() - value.len();
    Some((value_start, value_start + run + pad))
}

/// Whether `before` (the text up to an `=`) ends in a keyword and optional whitespace. The
/// pattern has no `\b` before its keyword and replaces only the value, so which keyword
/// matched does not matter, only that one ends there (`api_key` ends in `key`).
fn keyword_before(before: &str) -> bool {
    let before = before.trim_end().as_bytes();
    KEYWORDS.iter().any(|kw| {
        before.len() >= kw.len()
            && before[before.len() - kw.len()..].eq_ignore_ascii_case(kw.as_bytes())
    })
}

/// Pattern 5 of the module docs. Linear, and a look at each `=` only: every match has one
/// right after its keyword, so a text without `=` (most MCP replies) costs one search.
fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // End of the last replaced value: scanning resumes there, so a keyword must start at or
    // after it (the slice below) and an `=` of its padding is skipped.
    let mut last = 0;
    for (eq, _) in text.match_indices('=') {
        if eq < last || !keyword_before(text.get(last..eq).unwrap_or("")) {
            continue;
        }
        if let Some((value_start, value_end)) = assigned_value(text, eq) {
            out.push_str(text.get(last..value_start).unwrap_or(""));
            out.push_str(REDACTED);
            last = value_end;
        }
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn redact_in_replaces_every_occurrence() {
        let s = Secret::new("abcdef");
        assert_eq!(
            redact_known("x abcdef y abcdef", &s),
            "x [REDACTED] y [REDACTED]"
        );
    }

    #[test]
    fn the_redactor_replaces_every_known_secret_and_the_patterns() {
        let mut r = Redactor::new();
        r.remember("  tok-123456 \n");
        r.remember("tok-123456");
        r.remember("ab");
        r.remember("inbound-secret-value");
        assert_eq!(
            r.known.len(),
            2,
            "trimmed repeats and short values are skipped"
        );
        let text =
            "Bearer tok-123456 sent inbound-secret-value and sk-abcdefghijklmnopqrstuvwxyz ab";
        assert_eq!(
            r.redact(text),
            "Bearer [REDACTED] sent [REDACTED] and [REDACTED] ab"
        );
    }

    #[test]
    fn very_short_known_values_are_not_redacted() {
        assert_eq!(redact_known("a abc b", &Secret::new("abc")), "a abc b");
        assert_eq!(
            redact_known("a abcd b", &Secret::new("abcd")),
            "a [REDACTED] b"
        );
    }

    /// The scanner `redact_prefixed` replaced: for each occurrence of the prefix it scanned
    /// the class run and then tried every length from the longest down. Kept to prove the
    /// linear version gives the same output.
    fn redact_prefixed_quadratic(text: &str, pattern: &Prefixed) -> String {
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
        let (prefix, class, min, max) = (pattern.prefix, pattern.class, pattern.min, pattern.max);
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
                None => i = start + 1,
            }
        }
        out.push_str(text.get(last..).unwrap_or(""));
        out
    }

    /// The assignment scanner `redact_assignments` replaced: every keyword tried at every
    /// character. Kept to prove the `=`-driven version gives the same output.
    fn redact_assignments_at_every_char(text: &str) -> String {
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
                if run < MIN_ASSIGNED_VALUE {
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

    #[test]
    fn assignment_scanner_matches_the_per_character_one() {
        let value = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIzNDU2Nzg5";
        let pieces = [
            "key",
            "KEY",
            "Api_Key",
            "token",
            "secret",
            "password",
            "passwor",
            "monkey",
            "=",
            "==",
            " ",
            "\t",
            "\u{a0}",
            "\u{3000}",
            "é",
            "中",
            "+",
            "/",
            "a",
            "Z",
            "9",
            value,
            &value[..39],
            &value[..40],
            "\n",
            "_",
            ":",
        ];
        let mut rng = Rng::new(0xa55);
        let mut redacted = 0;
        for case in 0..30_000 {
            let len = 1 + (case % 40);
            let text = random_text(&mut rng, &pieces, len);
            let out = redact_assignments(&text);
            assert_eq!(out, redact_assignments_at_every_char(&text), "{text:?}");
            redacted += usize::from(out != text);
        }
        // The texts must exercise matches, not only misses.
        assert!(redacted > 1_000, "{redacted} of 30,000 texts had a match");
    }

    fn random_text(rng: &mut Rng, pieces: &[&str], len: usize) -> String {
        let mut s = String::new();
        for _ in 0..len {
            let i = usize::try_from(rng.below(pieces.len() as u64)).unwrap_or(0);
            s.push_str(pieces[i]);
        }
        s
    }

    #[test]
    fn linear_scanner_matches_the_quadratic_one() {
        let pieces = [
            "sk-",
            "ghp_",
            "ghs_",
            "github_pat_",
            "AKIA",
            "a",
            "Z",
            "9",
            "_",
            "-",
            " ",
            ".",
            "é",
            "中",
            "\n",
            "aaaaaaaaaaaaaaaa",
            "ZZZZZZZZ0000",
            "a_B1a_B1a_B1a_B1a_B1",
        ];
        let mut rng = Rng::new(0x5eed);
        for case in 0..20_000 {
            let len = 1 + (case % 60);
            let text = random_text(&mut rng, &pieces, len);
            for pattern in [&SK, &GHP, &GHS, &GITHUB_PAT, &AKIA] {
                assert_eq!(
                    redact_prefixed(&text, pattern).unwrap_or_else(|| text.clone()),
                    redact_prefixed_quadratic(&text, pattern),
                    "{} in {text:?}",
                    pattern.prefix
                );
            }
        }
    }

    #[test]
    fn megabyte_assignment_texts_are_linear() {
        // Every `=` preceded by a keyword, none with a long enough value: each is looked at
        // once.
        let text = "key=".repeat(250_000);
        assert_eq!(redact_assignments(&text), text);
        // Half a megabyte of whitespace on each side of one `=`, then a half-megabyte value.
        let text = format!(
            "Token{}={}{}",
            " ".repeat(500_000),
            "\t".repeat(500_000),
            "A".repeat(500_000)
        );
        let out = redact_assignments(&text);
        assert!(out.ends_with(REDACTED), "the value is replaced");
        assert_eq!(out.len(), text.len() - 500_000 + REDACTED.len());
    }

    #[test]
    fn long_runs_of_prefixes_are_handled() {
        // Every occurrence of the prefix sits inside one class run that extends to the end:
        // the quadratic scanner re-read that run for each of them (400 KB of `ask-` took
        // 26 s; now a few milliseconds).
        for text in [
            format!("x{}", "sk-".repeat(2_000)),
            // No boundary before any `sk-`: nothing matches, every run was re-read.
            "ask-".repeat(2_000),
        ] {
            assert_eq!(
                redact_prefixed(&text, &SK),
                Some(redact_prefixed_quadratic(&text, &SK))
            );
        }
        let text = format!("{} end", "sk-".repeat(2_000));
        // The last `-` is not followed by a boundary, so it stays.
        assert_eq!(
            redact_prefixed(&text, &SK).as_deref(),
            Some("[REDACTED]- end")
        );
        let big = "sk-a".repeat(100_000);
        assert_eq!(redact_secrets(&big), REDACTED);
    }
}
