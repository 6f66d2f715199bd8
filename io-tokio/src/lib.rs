//! # molecule-mcp-io-tokio
//!
//! Runs the `molecule-mcp-core` fleet machine on tokio: a pooled hyper client (rustls for
//! https), private atomic file persistence in the state directory, and log actions mapped
//! to `tracing` on **stderr** (stdout belongs to MCP). Everything tokio-specific lives here,
//! so the core can be driven by any other runtime with the same contract.
//!
//! | file | concept |
//! |---|---|
//! | `entropy.rs` | OS randomness: the seeds of every `molecule_mcp_core::rng::Rng` |
//! | `http_client.rs` | the shared pooled HTTP client |
//! | `driver.rs` | the core `Fleet` (every workspace) on one task, and the handle tools use |
//! | `request_queue.rs` | the requests the driver sends, at most N at once |
//! | `state_dir.rs` | where state lives (CONFIGS_DIR → /configs → ~/.molecule-workspace) |
//! | `persist.rs` | 0600 temp + fsync + rename writes |
//! | `logging.rs` | tracing on stderr, core log actions |

pub mod driver;
pub mod entropy;
pub mod http_client;
pub mod logging;
pub mod persist;
mod request_queue;
pub mod secrets;
pub mod state_dir;

pub use driver::FleetHandle;
pub use http_client::{HttpClient, HttpResponse};
