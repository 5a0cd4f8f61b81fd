//! The errand server: agents submit tool calls, workers run them, and each
//! session's results stream back in completion order.
//!
//! Layout, one module per concern:
//! - [`config`]: the server's settings (limits, timeouts, retention, the
//!   PostgreSQL store's options), each default once, and `Config::validate`.
//! - [`model`]: tasks and completions as the core sees them, and their wire form.
//! - [`core`]: the scheduler: one owner of the live state (queues, workers,
//!   running tasks), dispatch, timeouts, cancellation, retries.
//! - [`queue`]: the per-tool queue that keeps sessions fair to each other.
//! - [`tools`]: the tool registry and argument validation against each
//!   tool's JSON Schema.
//! - [`sessions`]: wake-ups for open `Completions` streams and the stream
//!   loop that replays then follows a session's completions.
//! - [`store`]: the persistence seam ([`store::Store`]) and its memory,
//!   SQLite and PostgreSQL implementations.
//! - [`text`]: the texts errand writes for the model.
//! - [`cluster`]: shared mode, several servers on one database: claiming,
//!   leases, the reaper, cross-server wake-ups and tool discovery.
//! - [`grpc`]: thin tonic handlers that translate between the wire and the core.
//! - [`auth`]: bearer tokens from the operator's tokens file, hashed at rest,
//!   and the interceptor that turns one into a [`auth::Caller`].
//! - [`tenant`]: how the handlers namespace sessions and tools per tenant,
//!   so the core and the store need not know tenants exist.
//! - [`quota`]: per-tenant stream and worker counts, per-token submit rate.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`server`]: binds it all to a listener (TLS optional) with health,
//!   reflection and a graceful shutdown.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use errand_server::{config::Config, server, store::memory::MemoryStore};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let store = std::sync::Arc::new(MemoryStore::default());
//! server::serve(listener, Config::default(), store, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod quota;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tenant;
pub mod text;
pub mod tools;

pub use error::Error;

/// The throwaway PostgreSQL cluster (from the `errand-testkit`
/// dev-dependency) that the store tests run on.
#[cfg(test)]
pub(crate) use errand_testkit::pg as test_pg;
