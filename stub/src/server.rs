//! The HTTP/1.1 side: a tokio accept loop on `127.0.0.1:0`, one hyper connection task per
//! socket, request buffering (capped), journaling, scripted actions, graceful shutdown.
//!
//! A handler never holds the state lock across an `.await`. A poisoned lock (a panic in some
//! other task) is recovered with `into_inner`, so one failure cannot take down the stub.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::routes::{self, Reply, StubRequest};
use super::script::{self, Action};
use super::state::State;
use super::types::JournalEntry;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Flips to `true` once on shutdown; hung requests and connections watch it.
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn new(state: State, shutdown: watch::Receiver<bool>) -> Shared {
        Shared {
            state: Mutex::new(state),
            shutdown,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves once shutdown was requested (or the stub handle is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    // Map right away: the borrowed value must not live across an await (it is not `Send`).
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Accepts connections until shutdown, then lets open connections finish gracefully.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let stop = stopped(shared.shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(connection(stream, shared));
                }
                // E.g. EMFILE: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            () = &mut stop => break,
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let stop = stopped(shared.shutdown.clone());
    let svc_shared = Arc::clone(&shared);
    let service = service_fn(move |req| handle(Arc::clone(&svc_shared), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request: buffer, journal, apply a script if one matches, else the route pipeline.
/// `Err` makes hyper close the connection without a response (scripted drop / hang end).
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<StubBody>, io::Error> {
    let (parts, body) = req.into_parts();
    let max = shared.lock().opts.max_body_bytes;
    let (body, too_large) = match Limited::new(body, max).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => (Bytes::new(), true),
        Err(_) => return Err(io::Error::other("request body read failed")),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let method = parts.method.as_str().to_string();
    let entry = JournalEntry {
        id: 0,
        method: method.clone(),
        path: path.clone(),
        query: raw_query.clone(),
        headers: headers.clone(),
        body: body.clone(),
        at: SystemTime::now(),
        status: None,
    };
    let (entry_id, action) = {
        let mut st = shared.lock();
        let id = st.journal_push(entry);
        (id, script::take(&mut st.scripts, &method, &path))
    };
    let request = StubRequest {
        method,
        path,
        query: routes::parse_query(raw_query.as_deref()),
        headers,
        body,
    };

    let response = match action {
        Some(Action::Respond {
            status,
            headers,
            body,
        }) => build(status, &headers, StubBody::full(body)),
        Some(Action::ResetMidBody {
            status,
            headers,
            body,
            sent,
        }) => {
            let mut headers = headers;
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
            headers.push(("content-length".into(), body.len().to_string()));
            let partial = body.slice(..sent.min(body.len()));
            build(status, &headers, StubBody::reset_after(partial))
        }
        Some(Action::EchoRequest { status }) => {
            let auth = request
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let echoed: serde_json::Map<String, serde_json::Value> = request
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let body = serde_json::json!({
                "error": format!("request refused; you sent Authorization: {auth}"),
                "hint": format!("{} {}?{}", request.method, request.path, raw_query.as_deref().unwrap_or_default()),
                "headers": echoed,
            });
            build(
                status,
                &[("content-type".into(), "application/json".into())],
                StubBody::full(Bytes::from(body.to_string())),
            )
        }
        Some(Action::Drop) => return Err(io::Error::other("scripted drop")),
        Some(Action::Hang) => {
            stopped(shared.shutdown.clone()).await;
            return Err(io::Error::other("scripted hang ended by shutdown"));
        }
        Some(Action::Delay(d)) => {
            tokio::time::sleep(d).await;
            normal(&shared, &request, too_large)
        }
        None => normal(&shared, &request, too_large),
    };
    shared
        .lock()
        .journal_set_status(entry_id, response.status().as_u16());
    Ok(response)
}

fn normal(shared: &Shared, request: &StubRequest, too_large: bool) -> Response<StubBody> {
    let reply = if too_large {
        Reply::error(413, "request body too large")
    } else {
        routes::handle(&mut shared.lock(), request, Instant::now())
    };
    build(reply.status, &reply.headers, StubBody::full(reply.body))
}

/// Invalid statuses become 500 and invalid header names/values are skipped: a test's typo
/// must not crash the stub.
fn build(status: u16, headers: &[(String, String)], body: StubBody) -> Response<StubBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// Response body: a single chunk, or a chunk followed (after a short pause so hyper flushes
/// it) by an error, which makes hyper abort the connection mid-body.
pub(crate) struct StubBody {
    chunk: Option<Bytes>,
    fail: Option<Pin<Box<Sleep>>>,
}

impl StubBody {
    fn full(bytes: Bytes) -> StubBody {
        StubBody {
            chunk: Some(bytes).filter(|b| !b.is_empty()),
            fail: None,
        }
    }

    fn reset_after(bytes: Bytes) -> StubBody {
        StubBody {
            chunk: Some(bytes).filter(|b| !b.is_empty()),
            fail: Some(Box::pin(tokio::time::sleep(Duration::from_millis(50)))),
        }
    }
}

impl Body for StubBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.fail.as_mut() {
            None => Poll::Ready(None),
            Some(sleep) => match sleep.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    self.fail = None;
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "scripted reset",
                    ))))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunk.is_none() && self.fail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.chunk, &self.fail) {
            (Some(c), None) => SizeHint::with_exact(c.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (Some(_) | None, Some(_)) => SizeHint::default(),
        }
    }
}
