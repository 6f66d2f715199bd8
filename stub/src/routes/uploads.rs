//! Poll-mode file transfer: `POST /workspaces/:id/chat/uploads` stages files and
//! announces each with a `chat_upload_receive` row; `GET …/pending-uploads/:file_id/content`
//! and `POST …/ack` hand them out once.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Handled, Reply, StubRequest};
use crate::ids::is_uuid;
use crate::multipart;
use crate::state::{ActivityRow, State};
use crate::types::{DeliveryMode, PendingUpload, WorkspaceStatus};

const MAX_FILES: usize = 64;
const MAX_REQUEST_BYTES: usize = 50 * 1024 * 1024;

pub(super) fn upload(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    if !is_uuid(ws) {
        return Err(Reply::error(400, "invalid workspace ID"));
    }
    let w = st.ws(ws).filter(|w| w.status != WorkspaceStatus::Removed);
    let w = w.ok_or_else(|| Reply::error(404, "workspace not found"))?;
    if w.delivery_mode == DeliveryMode::Push {
        // The stub never forwards to a push workspace; answer like an unreachable one.
        if w.url.is_empty() {
            return Err(Reply::error(503, "workspace url not registered yet"));
        }
        return Err(Reply::error(502, "workspace unreachable"));
    }
    let malformed = || Reply::error(400, "malformed multipart body");
    if req.body.len() > MAX_REQUEST_BYTES {
        return Err(malformed());
    }
    let boundary = req
        .header("content-type")
        .and_then(multipart::boundary)
        .ok_or_else(malformed)?;
    let parts = multipart::parse(&req.body, &boundary).map_err(|_| malformed())?;
    let files: Vec<multipart::Part> = parts
        .into_iter()
        .filter(|p| p.name.as_deref() == Some("files"))
        .collect();
    if files.is_empty() {
        return Err(Reply::error(400, "no files field in request"));
    }
    if files.len() > MAX_FILES {
        return Err(Reply::error(
            400,
            &format!("too many files (limit {MAX_FILES})"),
        ));
    }
    let cap = st.opts.upload_file_cap;
    if let Some(big) = files.iter().find(|f| f.data.len() as u64 > cap) {
        return Err(Reply::json(
            413,
            &json!({
                "error": "file exceeds per-file cap",
                "filename": big.filename.clone().unwrap_or_default(),
                "size": big.data.len(),
                "max": cap,
            }),
        ));
    }
    let mut out = Vec::new();
    for f in files {
        let name = sanitize_name(f.filename.as_deref().unwrap_or_default());
        let mime = reduce_mime(f.content_type.as_deref());
        let (_, desc) = stage(st, ws, &name, &mime, Bytes::from(f.data));
        out.push(desc);
    }
    Ok(Reply::json(200, &json!({ "files": out })))
}

/// Stores one pending upload and writes its `chat_upload_receive` row. Returns the upload's
/// activity id and its `{uri,name,mimeType,size}` descriptor.
pub(crate) fn stage(
    st: &mut State,
    ws: &str,
    name: &str,
    mime: &str,
    bytes: Bytes,
) -> (String, Value) {
    let file_id = st.rng.uuid();
    let uri = format!("platform-pending:{ws}/{file_id}");
    let size = bytes.len();
    let mut row = ActivityRow::blank(ws, "a2a_receive");
    row.method = Some("chat_upload_receive".into());
    row.summary = Some(format!("File uploaded: {name}"));
    row.request_body =
        Some(json!({"file_id": file_id, "name": name, "mimeType": mime, "size": size, "uri": uri}));
    let activity_id = st.insert_activity(row);
    st.uploads.push(PendingUpload {
        workspace_id: ws.to_string(),
        file_id,
        name: name.to_string(),
        mime_type: mime.to_string(),
        bytes,
        acked: false,
        activity_id: activity_id.clone(),
    });
    (
        activity_id,
        json!({"uri": uri, "name": name, "mimeType": mime, "size": size}),
    )
}

/// `[A-Za-z0-9._-]` only (others → `_`), at most 100 chars, path components stripped.
pub(crate) fn sanitize_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "file".into()
    } else {
        clean
    }
}

/// `type/subtype` without parameters; `application/octet-stream` when unusable.
fn reduce_mime(raw: Option<&str>) -> String {
    let main = raw
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match main.split_once('/') {
        Some((t, s))
            if !t.is_empty() && !s.is_empty() && !s.contains('/') && !main.contains(' ') =>
        {
            main
        }
        Some(_) | None => "application/octet-stream".into(),
    }
}

fn check_ids(ws: &str, file_id: &str) -> Result<(), Reply> {
    if !is_uuid(ws) {
        return Err(Reply::error(400, "invalid workspace ID"));
    }
    if !is_uuid(file_id) {
        return Err(Reply::error(400, "invalid file_id"));
    }
    Ok(())
}

/// The live (unacked) upload `file_id` of `ws`, with the two documented 404 bodies.
fn find(st: &mut State, ws: &str, file_id: &str) -> Result<usize, Reply> {
    let idx = st
        .uploads
        .iter()
        .position(|u| u.file_id.eq_ignore_ascii_case(file_id) && !u.acked);
    let idx = idx
        .ok_or_else(|| Reply::error(404, "pending upload not found, expired, or already acked"))?;
    if st.uploads.get(idx).is_none_or(|u| u.workspace_id != ws) {
        return Err(Reply::error(404, "pending upload not found"));
    }
    Ok(idx)
}

pub(super) fn content(st: &mut State, ws: &str, file_id: &str) -> Handled {
    check_ids(ws, file_id)?;
    let idx = find(st, ws, file_id)?;
    let u = st
        .uploads
        .get(idx)
        .ok_or_else(|| Reply::error(500, "storage error"))?;
    let encoded: String = u
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let quoted = u.name.replace(['"', '\\'], "_");
    Ok(Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), u.mime_type.clone()),
            (
                "content-disposition".into(),
                format!("attachment; filename=\"{quoted}\"; filename*=UTF-8''{encoded}"),
            ),
        ],
        body: u.bytes.clone(),
    })
}

pub(super) fn ack(st: &mut State, ws: &str, file_id: &str) -> Handled {
    check_ids(ws, file_id)?;
    let idx = find(st, ws, file_id)?;
    if let Some(u) = st.uploads.get_mut(idx) {
        u.acked = true;
    }
    Ok(Reply::json(200, &json!({"acked": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize_name("report 2026.pdf"), "report_2026.pdf");
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\x\\ü.txt"), "_.txt");
        assert_eq!(sanitize_name(""), "file");
        assert_eq!(sanitize_name(".."), "file");
        assert_eq!(sanitize_name(&"a".repeat(300)).len(), 100);
    }

    #[test]
    fn mime_is_reduced() {
        assert_eq!(reduce_mime(Some("Text/Plain; charset=utf-8")), "text/plain");
        assert_eq!(reduce_mime(Some("garbage")), "application/octet-stream");
        assert_eq!(reduce_mime(Some("a/b/c")), "application/octet-stream");
        assert_eq!(reduce_mime(None), "application/octet-stream");
    }
}
