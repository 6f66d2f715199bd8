//! The HTTP requests a driver's machines want sent, with a bound on how many are out at once.
//!
//! The driver queues every `SendHttp` here. [`RequestQueue::pump`] starts queued requests
//! (oldest first) on their own tasks while fewer than `max` are out; each task reports
//! exactly one outcome back to the driver as a fleet [`Input`], and the driver calls
//! [`RequestQueue::settled`] when it sees one. Without the bound, N
//! workspaces starting together open N connections at once (10,000 at start-up kept
//! ~230 MB of buffers resident); a queued request's deadline keeps running meanwhile, as
//! for any local delay, and the core enforces it.

use std::collections::VecDeque;

use molecule_mcp_core::workspace::Input;
use molecule_mcp_core::{HttpRequest, RequestId, TransportError, TransportErrorKind};
use tokio::sync::mpsc;

use crate::http_client::{HttpClient, HttpResponse};

/// The fleet input for request `id`'s response or transport failure.
fn input_for(id: RequestId, outcome: Result<HttpResponse, TransportError>) -> Input {
    match outcome {
        Ok(resp) => Input::HttpResponse {
            id,
            status: resp.status,
            retry_after: resp.retry_after(),
            // No copy: a body read into one buffer becomes the Vec as it is.
            body: Vec::from(resp.body),
        },
        Err(error) => Input::HttpFailed { id, error },
    }
}

/// Queued and in-flight requests of the driver.
pub(crate) struct RequestQueue {
    queued: VecDeque<HttpRequest>,
    in_flight: usize,
    max: usize,
    http: HttpClient,
    outcomes: mpsc::UnboundedSender<Input>,
}

impl RequestQueue {
    /// A queue sending through `http`, at most `max` at once, outcomes to `outcomes`.
    pub(crate) fn new(
        http: HttpClient,
        max: usize,
        outcomes: mpsc::UnboundedSender<Input>,
    ) -> Self {
        RequestQueue {
            queued: VecDeque::new(),
            in_flight: 0,
            max: max.max(1),
            http,
            outcomes,
        }
    }

    /// Queues `request` (sent by the next [`RequestQueue::pump`]).
    pub(crate) fn push(&mut self, request: HttpRequest) {
        self.queued.push_back(request);
    }

    /// One request's outcome came back.
    pub(crate) fn settled(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Drops everything not sent yet (the machines are stopping); what is out may finish.
    pub(crate) fn clear(&mut self) {
        self.queued.clear();
    }

    /// Starts queued requests while fewer than `max` are out.
    pub(crate) fn pump(&mut self) {
        while self.in_flight < self.max {
            let Some(request) = self.queued.pop_front() else {
                return;
            };
            self.in_flight += 1;
            let http = self.http.clone();
            let guard = OutcomeGuard {
                id: request.id,
                tx: Some(self.outcomes.clone()),
            };
            tokio::spawn(async move {
                let outcome = http.execute(&request).await;
                guard.send(input_for(request.id, outcome));
            });
        }
    }
}

/// Delivers exactly one outcome per sent request: the answer, or (if the request task ended
/// without one, e.g. by panicking or being dropped at shutdown) a transport failure, so the
/// in-flight count stays exact.
struct OutcomeGuard {
    id: RequestId,
    tx: Option<mpsc::UnboundedSender<Input>>,
}

impl OutcomeGuard {
    fn send(mut self, input: Input) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(input);
        }
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let error = TransportError {
                kind: TransportErrorKind::Io,
                message: "the request task ended without an outcome".to_owned(),
            };
            let _ = tx.send(input_for(self.id, Err(error)));
        }
    }
}
