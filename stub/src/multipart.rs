//! A small, defensive `multipart/form-data` parser (RFC 7578) for the chat-upload route.
//!
//! It works on the fully buffered body, accepts CRLF or bare LF after delimiters, ignores the
//! preamble and epilogue, and reports malformed input as an error value — never a panic.

/// One decoded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Input that is not a well-formed multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Upper bound on parts, so a body of empty parts cannot make the stub allocate without end.
const MAX_PARTS: usize = 10_000;

/// The `boundary` parameter of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (main, params) = split_params(content_type);
    if !main.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// Splits a body into its parts.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, Malformed> {
    let delim = format!("--{boundary}").into_bytes();
    // A part ends at a line break followed by the delimiter; CRLF is standard, LF tolerated.
    let mut close = b"\n".to_vec();
    close.extend_from_slice(&delim);

    let mut pos = find(body, &delim, 0).ok_or(Malformed("no boundary found"))?;
    let mut parts = Vec::new();
    loop {
        pos = pos.saturating_add(delim.len());
        let rest = body.get(pos..).ok_or(Malformed("truncated"))?;
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Optional transport padding, then the line break that ends the delimiter line.
        let pad = rest
            .iter()
            .take_while(|c| **c == b' ' || **c == b'\t')
            .count();
        let after_pad = rest.get(pad..).unwrap_or_default();
        let eol = if after_pad.starts_with(b"\r\n") {
            2
        } else if after_pad.starts_with(b"\n") {
            1
        } else {
            return Err(Malformed("bad delimiter line"));
        };
        let headers_start = pos + pad + eol;
        let (headers_end, data_start) = header_block(body, headers_start)?;
        let headers = body.get(headers_start..headers_end).unwrap_or_default();
        let lf = find(body, &close, data_start).ok_or(Malformed("unterminated part"))?;
        let data_end = if lf > data_start && body.get(lf - 1) == Some(&b'\r') {
            lf - 1
        } else {
            lf
        };
        let data = body
            .get(data_start..data_end)
            .ok_or(Malformed("truncated"))?;
        parts.push(part_from(headers, data)?);
        if parts.len() > MAX_PARTS {
            return Err(Malformed("too many parts"));
        }
        pos = lf + 1;
    }
}

/// Locates the blank line ending a part's headers: `(end of headers, start of data)`.
fn header_block(body: &[u8], start: usize) -> Result<(usize, usize), Malformed> {
    let rest = body.get(start..).ok_or(Malformed("truncated"))?;
    if rest.starts_with(b"\r\n") {
        return Ok((start, start + 2));
    }
    if rest.starts_with(b"\n") {
        return Ok((start, start + 1));
    }
    let crlf = find(body, b"\r\n\r\n", start).map(|i| (i, i + 4));
    let lf = find(body, b"\n\n", start).map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Ok(if a.0 <= b.0 { a } else { b }),
        (Some(a), None) | (None, Some(a)) => Ok(a),
        (None, None) => Err(Malformed("part headers not terminated")),
    }
}

fn part_from(headers: &[u8], data: &[u8]) -> Result<Part, Malformed> {
    let text = std::str::from_utf8(headers).map_err(|_| Malformed("part headers not UTF-8"))?;
    let mut part = Part {
        name: None,
        filename: None,
        content_type: None,
        data: data.to_vec(),
    };
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(Malformed("bad part header"))?;
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = split_params(value);
            if !kind.eq_ignore_ascii_case("form-data") {
                return Err(Malformed("part is not form-data"));
            }
            for (k, v) in params {
                if k.eq_ignore_ascii_case("name") {
                    part.name = Some(v);
                } else if k.eq_ignore_ascii_case("filename") {
                    part.filename = Some(v);
                }
            }
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            part.content_type = Some(value.to_string());
        }
    }
    Ok(part)
}

/// `type/subtype; k=v; k2="quoted; value"` → (`type/subtype`, [(k, v), …]), quote-aware.
pub(crate) fn split_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if in_quotes && c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
            cur.push(c);
        } else if c == ';' && !in_quotes {
            pieces.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    pieces.push(cur);
    let mut iter = pieces.into_iter();
    let main = iter.next().unwrap_or_default().trim().to_string();
    let params = iter
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), unquote(v.trim())))
        })
        .collect();
    (main, params)
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// First index `>= from` where `needle` occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let hay = haystack.get(from..)?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let skip = hay.get(i..)?.iter().position(|c| *c == first)?;
        i += skip;
        if hay.get(i..i + needle.len())? == needle {
            return Some(from + i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_file_parts_and_a_field() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a b.txt\"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x\\\"y.bin\"\r\n\r\n\x00\xff\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\nepilogue";
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].filename.as_deref(), Some("a b.txt"));
        assert_eq!(
            parts[0].content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(parts[0].data, b"hello\r\nworld");
        assert_eq!(parts[1].filename.as_deref(), Some("x\"y.bin"));
        assert_eq!(parts[1].content_type, None);
        assert_eq!(parts[1].data, b"\x00\xff");
        assert_eq!(parts[2].name.as_deref(), Some("note"));
        assert_eq!(parts[2].filename, None);
    }

    #[test]
    fn accepts_bare_lf_and_empty_parts() {
        let body = b"--b\nContent-Disposition: form-data; name=files; filename=e\n\n\r\n--b--";
        let parts = parse(body, "b").unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, b"");
        assert_eq!(parts[0].name.as_deref(), Some("files"));
    }

    #[test]
    fn rejects_malformed_bodies() {
        for body in [
            &b""[..],
            b"--b",
            b"--bjunk",
            b"--b\r\nContent-Disposition: form-data; name=files\r\n\r\nunterminated",
            b"--b\r\nno colon here\r\n\r\nx\r\n--b--",
            b"--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--",
            b"--b\r\nContent-Disposition: form-data; name=files",
        ] {
            assert!(
                parse(body, "b").is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=x; BOUNDARY=\"a;b\"").as_deref(),
            Some("a;b")
        );
        assert_eq!(boundary("application/json; boundary=abc"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }

    #[test]
    fn find_handles_edges() {
        assert_eq!(find(b"abcabc", b"ca", 0), Some(2));
        assert_eq!(find(b"abcabc", b"abc", 1), Some(3));
        assert_eq!(find(b"abc", b"abcd", 0), None);
        assert_eq!(find(b"abc", b"", 0), None);
        assert_eq!(find(b"abc", b"c", 9), None);
    }
}
