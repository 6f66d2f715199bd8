//! A second driver for the core's [`Fleet`], with no async runtime: std threads, a
//! `std::sync::mpsc` channel and a minimal HTTP/1.1 client over [`TcpStream`]. It exists to
//! show that the core is not tied to tokio: the same machine the production driver
//! (`io-tokio/src/driver.rs`) runs works here unchanged, and `tests/tests/blocking_driver.rs`
//! runs it end to end against the loopback platform stub.
//!
//! One loop thread owns the fleet. It drains `poll_output()` and performs each output:
//!
//! * `SendHttp` and `FetchUpload` run on short-lived threads, at most [`MAX_IN_FLIGHT`] at
//!   once (the rest wait in order), each reporting one outcome back on the channel;
//! * `Persist` is written on the loop thread itself (state files are a few KB, and one
//!   writer keeps two writes of the same file in order) and reported at once;
//! * `Append` (the inbox journal) is appended and fsync'd on the loop thread too;
//! * `SetAside` renames the unusable state file to its backup on the loop thread too, and
//!   reports the backup's name as a `Log` event;
//! * everything else (`Log`, `Arrived`, `PopDone`, `Rejected`, `TokenChanged`, `Exit`) goes
//!   to the embedding code's event channel ([`BlockingFleet::next_event`]).
//!
//! Then it waits on the channel until `poll_timeout()`, and feeds what came (`handle`) or
//! lets time pass (`handle_timeout`). Only `std` and the core are used here; the test in
//! `tests/tests/core_dependencies.rs` checks that.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use molecule_mcp_core::http::parse_retry_after_seconds;
use molecule_mcp_core::inbox::UploadFetch;
use molecule_mcp_core::state_layout::set_aside_name;
use molecule_mcp_core::workspace::AppendWrite;
use molecule_mcp_core::workspace::{Fleet, FleetPlan, Input, Output, PersistWrite};
use molecule_mcp_core::{HttpRequest, LogLevel, LogLine, Method, PersistError, RequestId};
use molecule_mcp_core::{TransportError, TransportErrorKind as Kind};

/// Most requests and downloads out at once (one thread each).
pub const MAX_IN_FLIGHT: usize = 16;
/// Cap on response bodies other than downloads (those use the core's `max_bytes`).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// Cap on a response head (status line and headers) and on a chunk-size line.
const MAX_HEAD: usize = 64 * 1024;
/// How long a stopping driver waits for unsaved inbox changes before it ends anyway (a
/// failing disk would otherwise keep it forever: the inbox retries its writes).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Reads every state file the plan asks for from `state_dir` into the plan. A missing or
/// unreadable file is left out: the core then starts that part fresh.
pub fn restore(plan: &mut FleetPlan, state_dir: &Path) {
    for (idx, file, name) in plan.files_to_restore() {
        if let Ok(bytes) = std::fs::read(state_dir.join(&name)) {
            plan.restore(idx, file, bytes);
        }
    }
}

/// Starts the loop thread for `plan` (restored with [`restore`]); state files live in
/// `state_dir`.
pub fn run(plan: FleetPlan, state_dir: &Path, seed: u64) -> BlockingFleet {
    let (tx, rx) = mpsc::channel();
    let (events_tx, events) = mpsc::channel();
    let driver = Driver {
        fleet: Fleet::new(plan, Instant::now(), seed),
        state_dir: state_dir.to_path_buf(),
        done: tx.clone(),
        events: events_tx,
        queued: VecDeque::new(),
        in_flight: 0,
    };
    let thread = std::thread::spawn(move || driver.run(&rx));
    BlockingFleet {
        tx,
        events,
        thread: Some(thread),
    }
}

/// The running driver. Dropping it stops it as [`BlockingFleet::shutdown`] does.
#[derive(Debug)]
pub struct BlockingFleet {
    tx: Sender<Msg>,
    events: Receiver<Output>,
    thread: Option<JoinHandle<()>>,
}

impl BlockingFleet {
    /// Feeds `input` to the fleet (e.g. [`Input::Pop`]; its answer comes as an event).
    pub fn send(&self, input: Input) {
        let _ = self.tx.send(Msg::Input(input));
    }

    /// The next output the driver does not perform itself, waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Output> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops heartbeats and polls, waits (at most [`STOP_GRACE`]) until every inbox change
    /// is on disk, and joins the loop thread. Requests still out finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BlockingFleet {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
enum Msg {
    /// A request thread's outcome (frees its slot).
    Done(Input),
    /// An input from the embedding code.
    Input(Input),
    Stop,
}

enum Job {
    Send(HttpRequest),
    Fetch(UploadFetch),
}

struct Driver {
    fleet: Fleet,
    state_dir: PathBuf,
    done: Sender<Msg>,
    events: Sender<Output>,
    queued: VecDeque<Job>,
    in_flight: usize,
}

impl Driver {
    fn run(mut self, rx: &Receiver<Msg>) {
        let mut stop_by: Option<Instant> = None;
        loop {
            while let Some(output) = self.fleet.poll_output() {
                self.perform(output);
            }
            self.pump();
            let now = Instant::now();
            if let Some(by) = stop_by
                && (self.fleet.all_saved() || now >= by)
            {
                return;
            }
            let timer = self.fleet.poll_timeout();
            let wake = [timer, stop_by].into_iter().flatten().min();
            let msg = match wake {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let now = Instant::now();
            match msg {
                Ok(Msg::Done(input)) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.fleet.handle(now, input);
                }
                Ok(Msg::Input(input)) => self.fleet.handle(now, input),
                Ok(Msg::Stop) => {
                    stop_by = Some(now + STOP_GRACE);
                    // Stopped machines send nothing more; what is already out may finish.
                    self.queued.clear();
                    self.fleet.handle(now, Input::Shutdown);
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The loop holds a sender itself, so this cannot happen; end if it does.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Checked after a message too: a steady stream of outcomes must not starve timers.
            if timer.is_some_and(|at| at <= now) {
                self.fleet.handle_timeout(now);
            }
        }
    }

    fn perform(&mut self, output: Output) {
        match output {
            Output::SendHttp(request) => self.queued.push_back(Job::Send(request)),
            Output::FetchUpload(fetch) => self.queued.push_back(Job::Fetch(fetch)),
            Output::Persist(write) => {
                let done = persist(&self.state_dir, write);
                // Handling it here is fine: the loop above keeps draining what it queues.
                self.fleet.handle(Instant::now(), done);
            }
            Output::Append(write) => {
                let done = append(&self.state_dir, write);
                self.fleet.handle(Instant::now(), done);
            }
            // On the loop thread, before any later write of the file.
            Output::SetAside(aside) => {
                let path = self.state_dir.join(&aside.path);
                let line = match set_aside(&path) {
                    Ok(backup) => format!(
                        "the unusable state file {} was moved aside to {}",
                        path.display(),
                        backup.display()
                    ),
                    Err(e) => format!(
                        "the unusable state file {} could not be moved aside: {e}",
                        path.display()
                    ),
                };
                let _ = self.events.send(Output::Log(LogLine {
                    level: LogLevel::Warn,
                    workspace_id: aside.workspace_id,
                    message: line,
                }));
            }
            other @ (Output::Log(_)
            | Output::Arrived(_)
            | Output::TokenChanged { .. }
            | Output::Rejected { .. }
            | Output::PopDone { .. }
            | Output::Exit { .. }) => {
                let _ = self.events.send(other);
            }
        }
    }

    /// Starts queued jobs, oldest first, while fewer than [`MAX_IN_FLIGHT`] are out. A job
    /// thread cannot panic short of running out of memory; if one did, its slot would stay
    /// taken and the core's own deadline would still settle the request.
    fn pump(&mut self) {
        while self.in_flight < MAX_IN_FLIGHT
            && let Some(job) = self.queued.pop_front()
        {
            self.in_flight += 1;
            let done = self.done.clone();
            let state_dir = self.state_dir.clone();
            std::thread::spawn(move || {
                let outcome = match job {
                    Job::Send(request) => send(&request, request.max_response_bytes.min(MAX_BODY)),
                    Job::Fetch(fetch) => download(fetch, &state_dir),
                };
                let _ = done.send(Msg::Done(outcome));
            });
        }
    }
}

/// Sends one request as the core described it, on a fresh connection, and returns the
/// input that reports its outcome: the response, or the transport failure (a body over
/// `max_body` bytes is [`Kind::BodyTooLarge`]; an `https://` URL is [`Kind::Connect`], this
/// client speaking plain http only).
pub fn send(request: &HttpRequest, max_body: usize) -> Input {
    answer(request.id, execute(request, max_body))
}

fn answer(id: RequestId, outcome: Result<Response, TransportError>) -> Input {
    match outcome {
        Ok(r) => Input::HttpResponse {
            id,
            status: r.status,
            retry_after: r.retry_after,
            body: r.body,
        },
        Err(error) => Input::HttpFailed { id, error },
    }
}

/// Downloads one upload under the core's byte cap; a 2xx body is staged privately, any
/// other answer goes back to the core as it was.
fn download(fetch: UploadFetch, state_dir: &Path) -> Input {
    let id = fetch.request.id;
    let cap = usize::try_from(fetch.max_bytes).unwrap_or(usize::MAX);
    let response = match execute(&fetch.request, cap) {
        Ok(r) if (200..300).contains(&r.status) => r,
        other => return answer(id, other),
    };
    let path = state_dir.join(&fetch.path);
    let result = match write_private_atomic(&path, &response.body) {
        Ok(()) => {
            let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            Ok(absolute.display().to_string())
        }
        Err(e) => Err(PersistError::from(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    };
    Input::UploadStaged { id, result }
}

/// Renames `path` to its timestamped backup name (the core's naming rule), never replacing
/// an existing backup. The tokio driver's copy is `io-tokio/src/persist.rs` (see
/// [`write_private_atomic`] for why each driver has its own).
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shown = path.to_string_lossy();
    for attempt in 1..=100 {
        let backup = PathBuf::from(set_aside_name(&shown, secs, attempt));
        if backup.symlink_metadata().is_err() {
            std::fs::rename(path, &backup)?;
            return Ok(backup);
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "100 backups of this second already exist",
    ))
}

/// Appends a journal write (created 0600, emptied first on `restart`, fsync'd; the
/// directory too when the file is new or restarted). The tokio driver's copy is
/// `io-tokio/src/persist.rs` (see [`write_private_atomic`] for why each driver has its own).
fn append(state_dir: &Path, write: AppendWrite) -> Input {
    let path = state_dir.join(&write.path);
    let created = !path.exists();
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if write.restart {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&write.contents)?;
            file.sync_data()
        })
        .map(|()| {
            if (write.restart || created)
                && let Ok(dir) = std::fs::File::open(state_dir)
            {
                let _ = dir.sync_all();
            }
        })
        .map_err(|e| PersistError::from(format!("{}: {e}", path.display())));
    Input::PersistDone {
        id: write.id,
        result,
    }
}

fn persist(state_dir: &Path, write: PersistWrite) -> Input {
    let path = state_dir.join(&write.path);
    let result = write_private_atomic(&path, &write.contents)
        .map_err(|e| PersistError::from(format!("{}: {e}", path.display())));
    Input::PersistDone {
        id: write.id,
        result,
    }
}

/// Replaces `path` atomically (unique temp file created 0600, fsync, rename, directory
/// fsync), creating missing directories 0700. The tokio driver has its own copy in
/// `io-tokio/src/persist.rs`: each driver owns its I/O (the core does none), and reusing
/// that one would link this driver against the crate that depends on tokio.
fn write_private_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        dirs.mode(0o700);
        options.mode(0o600);
    }
    dirs.create(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let written = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Ok(d) = std::fs::File::open(dir) {
        // Best effort: some filesystems refuse fsync on directories.
        let _ = d.sync_all();
    }
    written
}

// ----- a minimal HTTP/1.1 client ------------------------------------------------------

/// A complete response, as the core wants it.
struct Response {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

fn fail(kind: Kind, message: impl Into<String>) -> TransportError {
    TransportError {
        kind,
        message: message.into(),
    }
}

fn io_failure(e: &std::io::Error, doing: &str) -> TransportError {
    let timed_out = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let kind = if timed_out { Kind::Timeout } else { Kind::Io };
    fail(kind, format!("{doing}: {e}"))
}

/// Time left until `deadline`; a deadline already passed is a timeout.
fn remaining(deadline: Instant) -> Result<Duration, TransportError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(fail(Kind::Timeout, "the request's deadline passed"));
    }
    Ok(left)
}

/// Sends `request` (`Connection: close`), giving up at its deadline.
fn execute(request: &HttpRequest, max_body: usize) -> Result<Response, TransportError> {
    let url = request.url.as_str();
    let Some(rest) = url.strip_prefix("http://") else {
        let message = format!("{url}: the blocking driver speaks plain http only (no TLS)");
        return Err(fail(Kind::Connect, message));
    };
    if rest.contains(['\r', '\n', ' ']) {
        return Err(fail(Kind::Protocol, "URL contains whitespace"));
    }
    let (authority, target) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let slash = if target.starts_with('/') { "" } else { "/" };
    let method = request.method.as_str();
    let mut head = format!("{method} {slash}{target} HTTP/1.1\r\nHost: {authority}\r\n");
    // The core decides every header; only framing and the host are added here.
    for (name, value) in request.wire_headers() {
        if value.contains(['\r', '\n']) {
            let message = format!("header {name} contains a line break");
            return Err(fail(Kind::Protocol, message));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if request.method == Method::Post || !request.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut conn = Conn::open(authority, request.deadline)?;
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    conn.stream
        .set_write_timeout(Some(remaining(request.deadline)?))
        .and_then(|()| conn.stream.write_all(&bytes))
        .map_err(|e| io_failure(&e, "sending the request"))?;
    conn.response(max_body)
}

/// One connection and the bytes read from it but not consumed yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Conn {
    fn open(authority: &str, deadline: Instant) -> Result<Conn, TransportError> {
        // A port follows the last ':' unless that ':' is inside an IPv6 literal's brackets.
        let has_port = authority
            .rfind(':')
            .is_some_and(|i| !authority[i..].contains(']'));
        let address = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addrs = address
            .to_socket_addrs()
            .map_err(|e| fail(Kind::Connect, format!("resolving {authority}: {e}")))?;
        let mut last = format!("{authority} resolved to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let buf = Vec::new();
                    return Ok(Conn {
                        stream,
                        buf,
                        deadline,
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    return Err(io_failure(&e, &format!("connecting to {addr}")));
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        Err(fail(Kind::Connect, last))
    }

    /// Reads more bytes into the buffer, within the deadline; false at end of stream.
    fn fill(&mut self) -> Result<bool, TransportError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.stream
                .set_read_timeout(Some(remaining(self.deadline)?))
                .map_err(|e| io_failure(&e, "reading the response"))?;
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(&e, "reading the response")),
            }
        }
    }

    /// Removes and returns the first `n` buffered bytes (the caller made sure they exist).
    fn split(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    /// The bytes up to and including the first `delim`, read within `max` bytes.
    fn take_until(&mut self, delim: &[u8], max: usize) -> Result<Vec<u8>, TransportError> {
        let mut from = 0;
        loop {
            if let Some(at) = self.buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                return Ok(self.split(from + at + delim.len()));
            }
            from = self.buf.len().saturating_sub(delim.len());
            if self.buf.len() > max {
                let message = format!("response head or chunk line over {max} bytes");
                return Err(fail(Kind::Protocol, message));
            }
            if !self.fill()? {
                return Err(fail(Kind::Io, "connection closed mid-response"));
            }
        }
    }

    /// Exactly `n` bytes.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, TransportError> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(fail(Kind::Io, "connection closed mid-body"));
            }
        }
        Ok(self.split(n))
    }

    /// The response: head, then the body framed by chunks, `Content-Length` or the end of
    /// the stream, refused as soon as it is known to exceed `max_body`.
    fn response(&mut self, max_body: usize) -> Result<Response, TransportError> {
        // Interim 1xx answers carry no body; the final response follows them.
        let (status, headers) = loop {
            let (status, headers) = parse_head(&self.take_until(b"\r\n\r\n", MAX_HEAD)?)?;
            if status >= 200 {
                break (status, headers);
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let retry_after = header("retry-after").and_then(parse_retry_after_seconds);
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = match header("content-length") {
            _ if status == 204 || status == 304 => Vec::new(),
            _ if chunked => self.chunked(max_body)?,
            Some(length) => match length.parse::<usize>() {
                Ok(length) if length > max_body => return Err(too_large(max_body)),
                Ok(length) => self.take(length)?,
                Err(_) => return Err(fail(Kind::Protocol, "bad Content-Length")),
            },
            None => loop {
                // Part of the body may have come with the head: check before reading more.
                if self.buf.len() > max_body {
                    return Err(too_large(max_body));
                }
                if !self.fill()? {
                    break std::mem::take(&mut self.buf);
                }
            },
        };
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }

    fn chunked(&mut self, max_body: usize) -> Result<Vec<u8>, TransportError> {
        let mut body = Vec::new();
        loop {
            let line = self.take_until(b"\r\n", MAX_HEAD)?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| fail(Kind::Protocol, "bad chunk size"))?;
            if size == 0 {
                // The connection closes after this response: trailers stay unread.
                return Ok(body);
            }
            if body.len().saturating_add(size) > max_body {
                return Err(too_large(max_body));
            }
            body.extend(self.take(size)?);
            if self.take(2)? != b"\r\n" {
                return Err(fail(Kind::Protocol, "chunk without CRLF"));
            }
        }
    }
}

fn too_large(max_body: usize) -> TransportError {
    let message = format!("response body larger than {max_body} bytes");
    fail(Kind::BodyTooLarge, message)
}

/// Status code and headers (trimmed) of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), TransportError> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let mut status_line = lines.next().unwrap_or_default().splitn(3, ' ');
    let version = status_line.next().unwrap_or_default();
    let status = status_line
        .next()
        .filter(|code| version.starts_with("HTTP/1.") && code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|status| *status >= 100)
        .ok_or_else(|| fail(Kind::Protocol, "malformed status line"))?;
    let headers = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| fail(Kind::Protocol, "malformed header line"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect::<Result<_, TransportError>>()?;
    Ok((status, headers))
}
