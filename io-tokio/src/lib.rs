//! # molecule-mcp-io-tokio
//!
//! Runs `molecule-mcp-core` session machines on tokio: a pooled hyper client (rustls for
//! https), private atomic file persistence in the state directory, and log actions mapped
//! to `tracing` on **stderr** (stdout belongs to MCP). Everything tokio-specific lives here,
//! so the core can be driven by any other runtime with the same contract.
//!
//! | file | concept |
//! |---|---|
//! | `entropy.rs` | OS randomness: the seeds of every `molecule_mcp_core::rng::Rng` |
//! | `http_client.rs` | the shared pooled HTTP client |
//! | `session_driver.rs` | many sessions on one task: timers, HTTP, persistence, events |
//! | `inbox_driver.rs` | many inboxes on one task, plus the handle the inbox tools use |
//! | `wake_heap.rs` | which machine to wake when (shared by both drivers) |
//! | `request_queue.rs` | the requests both drivers send, at most N at once |
//! | `state_dir.rs` | where state lives (CONFIGS_DIR → /configs → ~/.molecule-workspace) |
//! | `persist.rs` | 0600 temp + fsync + rename writes |
//! | `logging.rs` | tracing on stderr, core log actions |

pub mod entropy;
pub mod http_client;
pub mod inbox_driver;
pub mod logging;
pub mod persist;
mod request_queue;
pub mod session_driver;
pub mod state_dir;
mod wake_heap;

pub use http_client::{HttpClient, HttpResponse};
pub use inbox_driver::{InboxHandle, InboxSpec};
pub use session_driver::{DriverEvent, DriverHandle, PersistPaths, SessionSpec};
