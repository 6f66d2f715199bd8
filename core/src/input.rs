//! Everything a driver feeds into the core besides the passage of time.

use std::time::Duration;

use crate::action::{PersistError, PersistId};
use crate::http::{RequestId, TransportError};

/// An event for [`crate::Session::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete HTTP response for request `id`.
    HttpResponse {
        /// The id from the `SendHttp` action.
        id: RequestId,
        /// Status code.
        status: u16,
        /// `Retry-After`, already converted to a delay by the driver.
        retry_after: Option<Duration>,
        /// Response body (drivers cap its size).
        body: Vec<u8>,
    },
    /// Request `id` produced no response.
    HttpFailed {
        /// The id from the `SendHttp` action.
        id: RequestId,
        /// What went wrong.
        error: TransportError,
    },
    /// Outcome of a `Persist` action.
    PersistDone {
        /// The id from the `Persist` action.
        id: PersistId,
        /// `Err(detail)` when the write failed (detail must not contain the value).
        result: Result<(), PersistError>,
    },
    /// Stop: no further requests; the session becomes terminal.
    Shutdown,
}
