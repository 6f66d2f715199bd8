//! `send_message_to_user`: optional `POST /workspaces/{target}/chat/uploads` (multipart),
//! then `POST /workspaces/{target}/notify`, both with the target workspace's token.
//!
//! Attachment rules (a model can be talked into attaching any path, so each rule closes a
//! way to leak or hang):
//! * regular files only: the path is checked with `symlink_metadata` (a symlink is refused,
//!   not followed), the opened handle is re-checked to be the same regular file;
//! * at most [`MAX_FILE_BYTES`] (25 MiB, the platform's poll-mode cap) per file, checked
//!   *before* reading, and the read itself is bounded; at most [`MAX_FILES`] files and
//!   [`MAX_TOTAL_BYTES`] in total;
//! * the path is resolved (`canonicalize`) and refused when it lies in `/proc`, `/sys` or
//!   `/dev` (`/proc/self/environ` is a regular-looking file that holds the environment,
//!   tokens included), inside the state directory (which holds the workspace token), or when
//!   it is the same file (device and inode, so a hard link counts) as a secret file: the
//!   token file and every `.auth_token*` / `.platform_inbound_secret*` in the state
//!   directory ([`AttachmentGuard`]);
//! * MIME type from the content's magic bytes (png, jpeg, gif, pdf, zip, gzip, webp), then
//!   text detection, then the extension, then `application/octet-stream` ([`sniff_mime`]);
//! * the multipart body is built by hand ([`multipart_body`]): a random boundary, one part
//!   per file named `files`, filename = the path's base name.
//!
//! Any upload failure means no notify, so the user never sees a half-attached message.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use molecule_mcp_core::sanitize::multipart_filename;
use serde_json::{Value, json};

use super::args::{Args, parse_registered, quote};
use super::client::{CallBody, PlatformCall};
use super::context::ToolContext;
use crate::mcp::ToolOutput;

/// Per-file cap (the platform's poll-mode limit, 25 MiB).
pub const MAX_FILE_BYTES: u64 = 25 * 1024 * 1024;
/// Files per message (the platform's limit).
pub const MAX_FILES: usize = 64;
/// Total bytes per message (bounds memory; the platform's own request cap is 50–100 MiB).
pub const MAX_TOTAL_BYTES: u64 = 100 * 1024 * 1024;
/// Notify timeout; uploads get this plus [`UPLOAD_SECS_PER_MIB`] per MiB.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_SECS_PER_MIB: u64 = 2;

/// One file ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Base name, made safe for a quoted header value.
    pub filename: String,
    /// Sniffed MIME type.
    pub mime: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// MIME types by lower-case extension.
fn mime_from_extension(filename: &str) -> Option<&'static str> {
    let ext = Path::new(filename)
        .extension()?
        .to_str()?
        .to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "log" | "text" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "svg" => "image/svg+xml",
        "sh" => "application/x-sh",
        "py" => "text/x-python",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "epub" => "application/epub+zip",
        "jar" => "application/java-archive",
        _ => return None,
    })
}

fn is_textual(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/json"
                | "application/xml"
                | "application/yaml"
                | "image/svg+xml"
                | "application/x-sh"
        )
}

fn is_zip_container(mime: &str) -> bool {
    mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.oasis.opendocument.")
        || matches!(mime, "application/epub+zip" | "application/java-archive")
}

fn looks_like_text(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            !s.is_empty()
                && !s.chars().any(|c| {
                    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}' | '\u{1b}')
                })
        }
        Err(_) => false,
    }
}

/// Content first (magic bytes, then text detection), then extension, then octet-stream.
pub fn sniff_mime(bytes: &[u8], filename: &str) -> String {
    let by_ext = mime_from_extension(filename);
    let magic = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.len() >= 12
        && bytes.starts_with(b"RIFF")
        && bytes.get(8..12) == Some(b"WEBP".as_slice())
    {
        Some("image/webp")
    } else if bytes.starts_with(&[0x1F, 0x8B]) {
        Some("application/gzip")
    } else if bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || bytes.starts_with(b"PK\x07\x08")
    {
        // Office documents, epub and jar are zip files; keep their specific type.
        Some(
            by_ext
                .filter(|m| is_zip_container(m))
                .unwrap_or("application/zip"),
        )
    } else {
        None
    };
    if let Some(m) = magic {
        return m.to_owned();
    }
    if looks_like_text(bytes) {
        return by_ext
            .filter(|m| is_textual(m))
            .unwrap_or("text/plain")
            .to_owned();
    }
    by_ext.unwrap_or("application/octet-stream").to_owned()
}

/// The base name of `path`, made safe inside `filename="…"` by
/// [`molecule_mcp_core::sanitize::multipart_filename`].
pub fn header_filename(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    multipart_filename(&base)
}

/// Why an attachment was refused. The text is the complete tool error.
#[derive(Debug)]
pub enum AttachmentError {
    /// No such file.
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// Reading failed.
    Read {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A symbolic link (not followed: it could point into the state directory).
    Symlink {
        /// The path as given.
        path: PathBuf,
    },
    /// A directory, socket, device, …
    NotRegularFile {
        /// The path as given.
        path: PathBuf,
    },
    /// Over [`MAX_FILE_BYTES`] before reading.
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Inside the state directory, which holds credentials.
    InStateDir {
        /// The path as given.
        path: PathBuf,
    },
    /// Under `/proc`, `/sys` or `/dev` once resolved.
    SystemPath {
        /// The path as given.
        path: PathBuf,
    },
    /// The same file (device and inode) as a secret file.
    SecretFile {
        /// The path as given.
        path: PathBuf,
    },
    /// Replaced between the checks and the open.
    ChangedWhileOpening {
        /// The path as given.
        path: PathBuf,
    },
    /// Over [`MAX_FILE_BYTES`] once read.
    GrewWhileReading {
        /// The path as given.
        path: PathBuf,
    },
    /// More than [`MAX_FILES`] attachments.
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_TOTAL_BYTES`] together.
    TotalTooLarge,
}

impl std::fmt::Display for AttachmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachmentError::NotFound { path } => {
                write!(f, "Error: attachment not found: {}", path.display())
            }
            AttachmentError::Read { path, error } => {
                write!(f, "Error reading {}: {error}", path.display())
            }
            AttachmentError::Symlink { path } => write!(
                f,
                "Error: attachment {} is a symbolic link; pass the path of the file itself",
                path.display()
            ),
            AttachmentError::NotRegularFile { path } => write!(
                f,
                "Error: attachment {} is not a regular file",
                path.display()
            ),
            AttachmentError::TooLarge { path, bytes } => write!(
                f,
                "Error: attachment {} is {bytes} bytes; the per-file cap is 25 MB ({MAX_FILE_BYTES} bytes)",
                path.display()
            ),
            AttachmentError::InStateDir { path } => write!(
                f,
                "Error: attachment {} is inside the runtime's state directory (it holds credentials); copy the file elsewhere first",
                path.display()
            ),
            AttachmentError::SystemPath { path } => write!(
                f,
                "Error: attachment {} resolves into /proc, /sys or /dev; only ordinary files can be attached",
                path.display()
            ),
            AttachmentError::SecretFile { path } => write!(
                f,
                "Error: attachment {} is one of the runtime's credential files (or a link to one); it is never uploaded",
                path.display()
            ),
            AttachmentError::ChangedWhileOpening { path } => write!(
                f,
                "Error: attachment {} changed while being opened; try again",
                path.display()
            ),
            AttachmentError::GrewWhileReading { path } => write!(
                f,
                "Error: attachment {} grew beyond the per-file cap of 25 MB ({MAX_FILE_BYTES} bytes) while being read",
                path.display()
            ),
            AttachmentError::TooMany { count } => write!(
                f,
                "Error: {count} attachments given; at most {MAX_FILES} files per message"
            ),
            AttachmentError::TotalTooLarge => write!(
                f,
                "Error: attachments exceed {MAX_TOTAL_BYTES} bytes in total; send them in several messages"
            ),
        }
    }
}

impl std::error::Error for AttachmentError {}

/// Where attachments must never come from: the state directory and the secret files
/// (module docs).
#[derive(Debug, Clone, Default)]
pub struct AttachmentGuard {
    /// The state directory (holds `.auth_token*` and `.platform_inbound_secret*`).
    pub state_dir: Option<PathBuf>,
    /// Files holding a secret outside the state directory (the token file).
    pub secret_files: Vec<PathBuf>,
}

/// Resolved paths under these prefixes are never attached (module docs).
const SYSTEM_PREFIXES: [&str; 3] = ["/proc", "/sys", "/dev"];

impl AttachmentGuard {
    /// `(device, inode)` of every secret file that exists now: the configured ones and the
    /// state directory's secret files of any workspace (their names start with the
    /// single-workspace name, see `molecule_mcp_core::state_layout`).
    fn secret_identities(&self) -> Vec<(u64, u64)> {
        let mut paths = self.secret_files.clone();
        if let Some(dir) = &self.state_dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let secret_names: Vec<&str> = molecule_mcp_core::StateFile::ALL
                .iter()
                .filter(|f| f.is_secret())
                .map(|f| f.base_name())
                .collect();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if secret_names.iter().any(|s| name.starts_with(s)) {
                    paths.push(entry.path());
                }
            }
        }
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .filter_map(|m| identity(&m))
            .collect()
    }

    /// Refuses `path` (its metadata: `meta`) when a rule of the module docs forbids it.
    fn check(&self, path: &Path, meta: &std::fs::Metadata) -> Result<(), AttachmentError> {
        let owned = || path.to_path_buf();
        let resolved = path.canonicalize().map_err(|error| AttachmentError::Read {
            path: owned(),
            error,
        })?;
        if SYSTEM_PREFIXES
            .iter()
            .any(|prefix| resolved.starts_with(prefix))
        {
            return Err(AttachmentError::SystemPath { path: owned() });
        }
        if let Some(dir) = &self.state_dir
            && let Ok(dir) = dir.canonicalize()
            && resolved.starts_with(&dir)
        {
            return Err(AttachmentError::InStateDir { path: owned() });
        }
        if let Some(id) = identity(meta)
            && self.secret_identities().contains(&id)
        {
            return Err(AttachmentError::SecretFile { path: owned() });
        }
        Ok(())
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Appends one attachment's content to `buf` under the module's rules; returns its header
/// file name and MIME type.
fn read_attachment_into(
    path: &Path,
    guard: &AttachmentGuard,
    buf: &mut Vec<u8>,
) -> Result<(String, String), AttachmentError> {
    let owned = || path.to_path_buf();
    let read_error = |error| AttachmentError::Read {
        path: path.to_path_buf(),
        error,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AttachmentError::NotFound { path: owned() });
        }
        Err(e) => return Err(read_error(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(AttachmentError::Symlink { path: owned() });
    }
    if !meta.is_file() {
        return Err(AttachmentError::NotRegularFile { path: owned() });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(AttachmentError::TooLarge {
            path: owned(),
            bytes: meta.len(),
        });
    }
    guard.check(path, &meta)?;
    let file = std::fs::File::open(path).map_err(read_error)?;
    let opened = file.metadata().map_err(read_error)?;
    if !opened.is_file() || !same_file(&meta, &opened) {
        return Err(AttachmentError::ChangedWhileOpening { path: owned() });
    }
    let start = buf.len();
    buf.reserve(usize::try_from(opened.len().min(MAX_FILE_BYTES)).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(buf)
        .map_err(read_error)?;
    let content = buf.get(start..).unwrap_or_default();
    if content.len() as u64 > MAX_FILE_BYTES {
        return Err(AttachmentError::GrewWhileReading { path: owned() });
    }
    let filename = header_filename(path);
    let mime = sniff_mime(content, &filename);
    Ok((filename, mime))
}

/// Reads one attachment under the module's rules.
pub fn load_attachment(
    path: &Path,
    guard: &AttachmentGuard,
) -> Result<Attachment, AttachmentError> {
    let mut bytes = Vec::new();
    let (filename, mime) = read_attachment_into(path, guard, &mut bytes)?;
    Ok(Attachment {
        filename,
        mime,
        bytes,
    })
}

/// The same file: equal device and inode (always true where there are none).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    identity(a) == identity(b)
}

/// Reads every attachment in order, under the module's rules, straight into one
/// `multipart/form-data` body ([`multipart_body`]'s format); stops at the first problem.
/// Returns the body and the number of files.
///
/// Each file is read into the body itself, not into a buffer of its own that is copied
/// afterwards: the upload then costs one allocation the size of the body, which is
/// returned to the system once the upload is answered (separate 25 MiB buffers, freed on
/// other threads, stayed resident and doubled the peak).
pub fn load_multipart(
    paths: &[PathBuf],
    guard: &AttachmentGuard,
    boundary: &str,
) -> Result<(Vec<u8>, usize), AttachmentError> {
    if paths.len() > MAX_FILES {
        return Err(AttachmentError::TooMany { count: paths.len() });
    }
    let expected: u64 = paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.len().min(MAX_FILE_BYTES))
        .sum();
    let mut body = Vec::with_capacity(
        usize::try_from(expected.min(MAX_TOTAL_BYTES)).unwrap_or(0) + 512 * paths.len() + 64,
    );
    let mut total: u64 = 0;
    for path in paths {
        let start = body.len();
        let (filename, mime) = read_attachment_into(path, guard, &mut body)?;
        total += (body.len() - start) as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(AttachmentError::TotalTooLarge);
        }
        // The part's header names the MIME type sniffed from the content, so it goes in
        // front of the content once that is read (moving only this file's bytes).
        body.splice(
            start..start,
            part_header(boundary, &filename, &mime).into_bytes(),
        );
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((body, paths.len()))
}

/// Tells the inbox that `workspace` is uploading files itself, for as long as it lives: the
/// platform queues our own attachments as inbound rows too, and the inbox must neither
/// download nor ack them (it would stage a copy of what we just sent and tell the platform
/// it was received). Dropped on every path (errors, cancellation), it
/// reports the file ids the upload created (none when it failed).
struct OutboundUpload<'a> {
    ctx: &'a ToolContext,
    workspace: &'a str,
    file_ids: Vec<String>,
}

impl<'a> OutboundUpload<'a> {
    fn begin(ctx: &'a ToolContext, workspace: &'a str) -> Self {
        if let Some(inbox) = &ctx.inbox {
            inbox.begin_outbound_upload(workspace);
        }
        OutboundUpload {
            ctx,
            workspace,
            file_ids: Vec::new(),
        }
    }
}

impl Drop for OutboundUpload<'_> {
    fn drop(&mut self) {
        if let Some(inbox) = &self.ctx.inbox {
            inbox.end_outbound_upload(self.workspace, std::mem::take(&mut self.file_ids));
        }
    }
}

/// The file id of a poll-mode upload entry (`uri` = `platform-pending:<workspace>/<file id>`).
/// In poll mode the platform also queues such uploads as inbound rows in our own feed.
fn pending_file_id(entry: &Value) -> Option<&str> {
    let uri = entry.get("uri")?.as_str()?;
    let (_, file_id) = uri.strip_prefix("platform-pending:")?.split_once('/')?;
    Some(file_id).filter(|f| !f.is_empty())
}

/// `multipart/form-data` body: one `files` part per attachment.
///
/// Takes the files by value and frees each one as soon as it is copied, so building the
/// body holds about one copy of the attachments, not two.
pub fn multipart_body(files: Vec<Attachment>, boundary: &str) -> Vec<u8> {
    let mut body =
        Vec::with_capacity(files.iter().map(|f| f.bytes.len() + 200).sum::<usize>() + 64);
    for f in files {
        body.extend_from_slice(part_header(boundary, &f.filename, &f.mime).as_bytes());
        body.extend_from_slice(&f.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The boundary line and headers that open one file's part.
fn part_header(boundary: &str, filename: &str, mime: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
}

/// Attachment bytes all running `send_message_to_user` calls may hold at once: one message's
/// largest total ([`MAX_TOTAL_BYTES`]), so ten calls with 100 MiB each take turns instead of
/// holding a gigabyte together.
const ATTACHMENT_MEMORY_MIB: u32 = (MAX_TOTAL_BYTES / (1024 * 1024)) as u32;

static ATTACHMENT_MEMORY: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(ATTACHMENT_MEMORY_MIB as usize);

/// Waits (at most [`NOTIFY_TIMEOUT`]) until the attachments' size, as their metadata gives
/// it now, fits in the shared budget. Unreadable paths count as empty: loading them reports
/// the real error, and growth after this check is bounded by the per-file cap.
async fn reserve_attachment_memory(
    paths: &[PathBuf],
) -> Result<tokio::sync::SemaphorePermit<'static>, ToolOutput> {
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len().min(MAX_FILE_BYTES))
        .sum();
    let mib = bytes
        .div_ceil(1024 * 1024)
        .min(u64::from(ATTACHMENT_MEMORY_MIB));
    let mib = u32::try_from(mib).unwrap_or(ATTACHMENT_MEMORY_MIB);
    match tokio::time::timeout(NOTIFY_TIMEOUT, ATTACHMENT_MEMORY.acquire_many(mib)).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) | Err(_) => Err(ToolOutput::error(format!(
            "Error: other messages' attachments kept the upload budget ({ATTACHMENT_MEMORY_MIB} MiB) busy for {}s; try again",
            NOTIFY_TIMEOUT.as_secs()
        ))),
    }
}

/// A fresh boundary (random, so file content cannot collide with it in practice).
pub fn new_boundary(ctx: &ToolContext) -> String {
    format!("molecule-mcp-{}", ctx.with_rng(|rng| rng.hex(2)))
}

/// Why the answer of `chat/uploads` is unusable. The text is the complete tool error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadResponseError {
    /// The body is not JSON.
    NotJson,
    /// No `files` array.
    NoFileList {
        /// Files sent.
        expected: usize,
    },
    /// A `files` array of the wrong length.
    WrongCount {
        /// Entries received.
        got: usize,
        /// Files sent.
        expected: usize,
    },
    /// Entry `index` lacks a non-empty `uri` or `name`.
    IncompleteEntry {
        /// Zero-based.
        index: usize,
    },
}

impl std::fmt::Display for UploadResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadResponseError::NotJson => f.write_str("Error parsing upload response: not JSON"),
            UploadResponseError::NoFileList { expected } => write!(
                f,
                "Error: upload returned invalid entries for {expected} files"
            ),
            UploadResponseError::WrongCount { got, expected } => write!(
                f,
                "Error: upload returned {got} entries for {expected} files"
            ),
            UploadResponseError::IncompleteEntry { index } => {
                write!(f, "Error: upload entry {index} has no uri or name")
            }
        }
    }
}

impl std::error::Error for UploadResponseError {}

/// Validates the upload answer: `{"files": [...]}` with one entry per file, each with a
/// non-empty `uri` and `name` (what notify requires).
pub fn parse_upload_response(
    body: Option<Value>,
    expected: usize,
) -> Result<Vec<Value>, UploadResponseError> {
    let Some(body) = body else {
        return Err(UploadResponseError::NotJson);
    };
    let files = match body.get("files") {
        Some(Value::Array(files)) => files.clone(),
        Some(_) | None => return Err(UploadResponseError::NoFileList { expected }),
    };
    if files.len() != expected {
        return Err(UploadResponseError::WrongCount {
            got: files.len(),
            expected,
        });
    }
    let nonempty = |f: &Value, k: &str| {
        f.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if let Some(index) = files
        .iter()
        .position(|f| !nonempty(f, "uri") || !nonempty(f, "name"))
    {
        return Err(UploadResponseError::IncompleteEntry { index });
    }
    Ok(files)
}

/// `send_message_to_user`.
pub(crate) async fn send_message_to_user(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let message = match args.opt_str("message") {
        Ok(Some(m)) if !m.trim().is_empty() => m,
        Ok(_) => return ToolOutput::error("Error: message is required"),
        Err(e) => return e,
    };
    let target = match args.opt_nonblank("workspace_id") {
        Err(e) => return e,
        Ok(Some(raw)) => match parse_registered(ctx, "workspace_id", raw) {
            Ok(id) => id,
            Err(e) => return e,
        },
        Ok(None) => ctx.workspaces.primary(),
    };
    let paths = match args.opt_str_list("attachments") {
        Err(e) => return e,
        Ok(list) => list.unwrap_or_default(),
    };
    if let Some(bad) = paths.iter().find(|p| p.trim().is_empty()) {
        return ToolOutput::error(format!("Error: invalid attachment path {}", quote(bad)));
    }

    let mut uploaded: Vec<Value> = Vec::new();
    if !paths.is_empty() {
        let owned: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        // Held until the upload is answered: the files and the body are in memory until then.
        let _budget = match reserve_attachment_memory(&owned).await {
            Ok(permit) => permit,
            Err(e) => return e,
        };
        let guard = AttachmentGuard {
            state_dir: ctx.state_dir.clone(),
            secret_files: ctx.secret_files.clone(),
        };
        let boundary = new_boundary(ctx);
        let for_load = boundary.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load_multipart(&owned, &guard, &for_load)).await;
        let (bytes, count) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return ToolOutput::error(e.to_string()),
            Err(e) => return ToolOutput::error(format!("Error reading attachments: {e}")),
        };
        let total_mib = bytes.len() as u64 / (1024 * 1024);
        let mut outbound = OutboundUpload::begin(ctx, &target);
        let call = PlatformCall {
            method: http::Method::POST,
            body: CallBody::Multipart { bytes, boundary },
            ..PlatformCall::get(format!("/workspaces/{target}/chat/uploads"), &target)
        }
        .with_timeout(NOTIFY_TIMEOUT + Duration::from_secs(total_mib * UPLOAD_SECS_PER_MIB));
        let response = match ctx.call(call).await {
            Ok(r) => r,
            Err(e) => return ToolOutput::error(format!("Error uploading attachments: {e}")),
        };
        if response.status != 200 {
            return ToolOutput::error(format!(
                "Error: chat/uploads returned {}: {}",
                response.status,
                response.snippet(200)
            ));
        }
        uploaded = match parse_upload_response(response.json(), count) {
            Ok(list) => list,
            Err(e) => return ToolOutput::error(e.to_string()),
        };
        outbound.file_ids = uploaded
            .iter()
            .filter_map(pending_file_id)
            .map(str::to_owned)
            .collect();
    }

    let mut body = json!({"message": message});
    if !uploaded.is_empty() {
        body["attachments"] = Value::Array(uploaded.clone());
    }
    let call = PlatformCall::post_json(format!("/workspaces/{target}/notify"), &target, body)
        .with_timeout(NOTIFY_TIMEOUT);
    match ctx.call(call).await {
        Err(e) => ToolOutput::error(format!("Error sending message: {e}")),
        Ok(r) if r.status == 200 => ToolOutput::Text(if uploaded.is_empty() {
            "Message sent to user".to_owned()
        } else {
            format!("Message sent to user with {} attachment(s)", uploaded.len())
        }),
        Ok(r) => ToolOutput::error(format!(
            "Error: platform returned {}: {}",
            r.status,
            r.error_message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_file_ids_are_read_from_poll_mode_uris() {
        let id = |uri: &str| pending_file_id(&json!({"uri": uri})).map(str::to_owned);
        assert_eq!(
            id("platform-pending:ws-1/file-9").as_deref(),
            Some("file-9")
        );
        assert_eq!(id("platform-pending:ws-1/"), None);
        assert_eq!(id("https://cdn.example/f"), None);
        assert_eq!(pending_file_id(&json!({"name": "a"})), None);
    }

    #[test]
    fn upload_response_validation() {
        let ok = json!({"files": [{"uri": "platform-pending:w/f", "name": "a.txt", "mimeType": "text/plain", "size": 1}]});
        assert_eq!(parse_upload_response(Some(ok), 1).unwrap().len(), 1);
        assert_eq!(
            parse_upload_response(Some(json!({"files": []})), 2)
                .unwrap_err()
                .to_string(),
            "Error: upload returned 0 entries for 2 files"
        );
        assert!(
            parse_upload_response(Some(json!({"files": "x"})), 1)
                .unwrap_err()
                .to_string()
                .contains("invalid")
        );
        assert!(
            parse_upload_response(Some(json!({"files": [{"uri": "", "name": "a"}]})), 1).is_err()
        );
        assert!(
            parse_upload_response(None, 1)
                .unwrap_err()
                .to_string()
                .starts_with("Error parsing upload response")
        );
    }
}
