//! The core's fleet on the blocking driver (`tests/src/blocking_driver.rs`: std threads, no
//! async runtime) against the loopback platform stub. The stub needs a tokio runtime of
//! its own; the driver runs on a plain std thread and never touches it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use molecule_mcp_core::inbox::{InboxConfig, saved_state};
use molecule_mcp_core::workspace::{
    Fleet, FleetPlan, Input, Output, PopTicket, Restored, WorkspacePlan,
};
use molecule_mcp_core::{
    Headers, HttpRequest, Method, PlatformUrl, RequestId, RequestKind, Secret, SessionConfig,
    StateLayout, TransportErrorKind, USER_AGENT,
};
use molecule_mcp_tests::blocking_driver::{self, BlockingFleet};
use molecule_mcp_tests::stub::{InboundMessage, JournalEntry, PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;
use tokio::runtime::Runtime;

const WAIT: Duration = Duration::from_secs(10);

/// The stub on a runtime of its own (one worker: the stub is all it runs).
fn stub() -> (Runtime, PlatformStub) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stub = rt.block_on(PlatformStub::start()).expect("stub");
    (rt, stub)
}

/// One workspace with heartbeats and a poll-mode inbox, both every 200 ms.
fn plan(stub: &PlatformStub, ws: &str, token: &str, dir: &TempDir) -> FleetPlan {
    let platform = PlatformUrl::parse(&stub.url()).expect("stub url");
    let mut session = SessionConfig::new(
        platform.clone(),
        ws,
        Secret::new(token),
        "test",
        serde_json::json!({"name": "blocking"}),
    );
    session.heartbeat_interval = Duration::from_millis(200);
    let mut inbox = InboxConfig::new(platform, ws, Secret::new(token));
    inbox.poll_interval = Duration::from_millis(200);
    let mut plan = FleetPlan {
        workspaces: vec![WorkspacePlan {
            workspace_id: ws.to_owned(),
            session: Some(session),
            inbox: Some(inbox),
            layout: StateLayout::SINGLE,
            state_dir_display: dir.as_str().to_owned(),
            restored: Restored::default(),
        }],
        multi_workspace: false,
    };
    blocking_driver::restore(&mut plan, dir.path());
    plan
}

/// The first event `pick` accepts, skipping others (log lines, arrivals of other messages).
fn wait_event<T>(driver: &BlockingFleet, mut pick: impl FnMut(Output) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = driver.next_event(left).expect("the awaited event in time");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

fn answered(j: &[JournalEntry], path: &str) -> usize {
    j.iter()
        .filter(|e| e.path == path && e.status == Some(200))
        .count()
}

#[test]
fn the_fleet_runs_end_to_end_on_std_threads() {
    let (rt, stub) = stub();
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("blocking").poll());
    let dir = TempDir::new("blocking-driver").expect("temp dir");
    let driver = blocking_driver::run(plan(&stub, &ws, &token, &dir), dir.path(), 1);

    // Register, then heartbeats on the 200 ms grid, and inbox polls meanwhile.
    let beating = rt.block_on(stub.wait_for(
        |j| answered(j, "/registry/register") == 1 && answered(j, "/registry/heartbeat") >= 3,
        WAIT,
    ));
    assert!(beating, "register and three heartbeats reach the stub");

    // An injected message arrives as an event; a second one too.
    let first = stub.inject_message(&ws, InboundMessage::canvas("first words, to be popped"));
    let second = stub.inject_message(&ws, InboundMessage::canvas("second words, kept"));
    for expected in [&first, &second] {
        let arrived = wait_event(&driver, |e| {
            if let Output::Arrived(m) = e
                && &m.activity_id == expected
            {
                return Some(m);
            }
            None
        });
        assert_eq!(&arrived.activity_id, expected);
    }

    // A pop is answered only once the queue without the message is on disk.
    driver.send(Input::Pop {
        ticket: PopTicket(7),
        activity_id: first.clone(),
    });
    let popped = wait_event(&driver, |e| {
        let Output::PopDone {
            ticket: PopTicket(7),
            message,
            saved: true,
        } = e
        else {
            return None;
        };
        Some(message)
    });
    assert_eq!(popped.map(|m| m.activity_id), Some(first.clone()));
    // What a restart would read: the snapshot and the journal appended after it.
    let snapshot = std::fs::read(dir.join(".mcp_inbox_state")).expect("inbox state");
    let journal = std::fs::read(dir.join(".mcp_inbox_journal")).unwrap_or_default();
    let state =
        String::from_utf8(saved_state(&snapshot, &journal).expect("decodes")).expect("utf-8");
    assert!(
        !state.contains("first words"),
        "the popped message is off disk"
    );
    assert!(state.contains("second words"), "the other one is on disk");
    assert!(
        dir.join(".platform_inbound_secret").is_file(),
        "the session's persist went through the same path"
    );

    // An upload is downloaded into chat-uploads/ (0600) and acked.
    let (file_id, _) = stub.inject_upload(&ws, "notes.txt", "text/plain", &b"upload bytes"[..]);
    let acked = rt.block_on(stub.wait_until(
        |s| {
            s.pending_uploads(&ws)
                .iter()
                .any(|u| u.file_id == file_id && u.acked)
        },
        WAIT,
    ));
    assert!(acked, "the upload is downloaded, staged and acked");
    let staged: Vec<_> = std::fs::read_dir(dir.join("chat-uploads"))
        .expect("uploads dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].to_string_lossy().ends_with("-notes.txt"));
    assert_eq!(std::fs::read(&staged[0]).expect("staged"), b"upload bytes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&staged[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Every request carried the core's headers, and only the framing the driver adds.
    let journal = stub.journal();
    assert!(journal.len() >= 8, "{} requests", journal.len());
    let bearer = format!("Bearer {token}");
    for entry in &journal {
        let what = format!("{} {}", entry.method, entry.path);
        assert_eq!(entry.header("user-agent"), Some(USER_AGENT), "{what}");
        assert_eq!(
            entry.header("authorization"),
            Some(bearer.as_str()),
            "{what}"
        );
        assert_eq!(entry.header("connection"), Some("close"), "{what}");
        assert!(entry.header("origin").is_some(), "{what}");
    }

    let started = Instant::now();
    driver.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");

    // A restart from the state directory: the popped message never comes back.
    let restored = Fleet::new(plan(&stub, &ws, &token, &dir), Instant::now(), 2);
    let queued: Vec<String> = restored
        .peek(10)
        .into_iter()
        .map(|m| m.activity_id)
        .collect();
    assert!(queued.contains(&second), "{queued:?}");
    assert!(!queued.contains(&first), "{queued:?}");
}

#[test]
fn a_token_rejected_at_register_exits_with_code_3() {
    let (_rt, stub) = stub();
    let (ws, _token) = stub.create_workspace(WorkspaceSpec::named("rejected").poll());
    let dir = TempDir::new("blocking-driver-rejected").expect("temp dir");
    let driver = blocking_driver::run(plan(&stub, &ws, "not-the-token", &dir), dir.path(), 1);
    let (code, message) = wait_event(&driver, |e| {
        let Output::Exit { code, message } = e else {
            return None;
        };
        Some((code, message))
    });
    assert_eq!(code, 3, "{message}");
    assert!(!message.contains("not-the-token"), "no secret in {message}");
    let started = Instant::now();
    driver.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ----- the HTTP/1.1 client on canned answers ---------------------------------------------

/// Serves `answer` to one connection and returns the request head it read.
fn canned(answer: &[u8]) -> (String, std::thread::JoinHandle<String>) {
    let answer = answer.to_vec();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).expect("read") == 1 {
            head.push(byte[0]);
        }
        let _ = stream.write_all(&answer);
        String::from_utf8(head).expect("utf-8 head")
    });
    (base, server)
}

fn request(method: Method, url: String, body: &[u8], timeout: Duration) -> HttpRequest {
    HttpRequest {
        id: RequestId(42),
        kind: RequestKind::Tool,
        method,
        url,
        bearer: Some(Secret::new("tok")),
        headers: Headers::from(vec![("Origin", "http://o.example".to_owned())]),
        body: body.to_vec(),
        max_response_bytes: RequestKind::Tool.max_response_bytes(),
        deadline: Instant::now() + timeout,
    }
}

/// `(status, retry_after, body)` of a response; panics on a failure.
fn response(input: Input) -> (u16, Option<Duration>, Vec<u8>) {
    let Input::HttpResponse {
        id,
        status,
        retry_after,
        body,
    } = input
    else {
        panic!("expected a response, got {input:?}");
    };
    assert_eq!(id, RequestId(42));
    (status, retry_after, body)
}

fn failure(input: Input) -> (TransportErrorKind, String) {
    let Input::HttpFailed { id, error } = input else {
        panic!("expected a failure, got {input:?}");
    };
    assert_eq!(id, RequestId(42));
    (error.kind, error.message)
}

fn exchange(answer: &[u8], max_body: usize) -> (String, Input) {
    let (base, server) = canned(answer);
    let url = format!("{base}/a/b?q=1");
    let input = blocking_driver::send(&request(Method::Get, url, b"", WAIT), max_body);
    (server.join().expect("server"), input)
}

#[test]
fn the_client_writes_the_cores_headers_and_frames_the_body() {
    let (base, server) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    let post = request(Method::Post, format!("{base}/x"), b"{\"a\":1}", WAIT);
    let (status, _, body) = response(blocking_driver::send(&post, 1024));
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
    let host = base.trim_start_matches("http://");
    let expected = format!(
        "POST /x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer tok\r\n\
         User-Agent: {USER_AGENT}\r\nOrigin: http://o.example\r\nContent-Length: 7\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(server.join().expect("server"), expected);
    let (head, _) = exchange(b"HTTP/1.1 204 No Content\r\n\r\n", 1024);
    assert!(head.starts_with("GET /a/b?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        !head.contains("Content-Length"),
        "a GET has no body: {head}"
    );
}

#[test]
fn the_client_reads_chunked_eof_and_interim_answers() {
    let chunked =
        b"HTTP/1.1 503 Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
    let (_, input) = exchange(chunked, 1024);
    let expected = (503, Some(Duration::from_secs(7)), b"hello world".to_vec());
    assert_eq!(response(input), expected);
    let (_, input) = exchange(b"HTTP/1.0 200 OK\r\n\r\nall until the end", 1024);
    assert_eq!(response(input).2, b"all until the end");
    let interim =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
    let (_, input) = exchange(interim, 1024);
    assert_eq!(response(input), (201, None, b"x".to_vec()));
}

#[test]
fn the_client_refuses_large_bodies_bad_answers_tls_and_slow_servers() {
    let cases: [(&'static [u8], TransportErrorKind); 6] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            TransportErrorKind::BodyTooLarge,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
            TransportErrorKind::BodyTooLarge,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nhello world", TransportErrorKind::BodyTooLarge),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", TransportErrorKind::Io),
        (b"SMTP ready\r\n\r\n", TransportErrorKind::Protocol),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", TransportErrorKind::Protocol),
    ];
    for (answer, kind) in cases {
        let (_, input) = exchange(answer, 10);
        assert_eq!(
            failure(input).0,
            kind,
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    let endless_head = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 70_000]].concat();
    let (_, input) = exchange(&endless_head, 10);
    assert_eq!(failure(input).0, TransportErrorKind::Protocol);

    let tls = request(Method::Get, "https://p.example/x".to_owned(), b"", WAIT);
    let (kind, message) = failure(blocking_driver::send(&tls, 10));
    assert_eq!(kind, TransportErrorKind::Connect);
    assert!(message.contains("plain http only"), "{message}");

    // A server that accepts and never answers: the request's deadline ends the wait.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/slow", listener.local_addr().expect("addr"));
    let started = Instant::now();
    let slow = request(Method::Get, url, b"", Duration::from_millis(300));
    let (kind, _) = failure(blocking_driver::send(&slow, 10));
    assert_eq!(kind, TransportErrorKind::Timeout);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(listener);
}
