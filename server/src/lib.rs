//! The errand server: agents submit tool calls, workers run them, and each
//! session's results stream back in completion order.
//!
//! Layout, one module per concern:
//! - [`config`]: the server's settings (limits, timeouts, retention, the
//!   PostgreSQL store's options), each default once, and `Config::validate`.
//! - [`model`]: tasks, completions and what workers and agents send, as the
//!   scheduler and the store see them (domain types, no wire types), and
//!   the tenant-keyed [`model::SessionKey`] and [`model::ToolKey`], which
//!   print as the client's name only.
//! - [`scheduler`]: the one owner of the live state (queues, workers,
//!   running tasks): `state` (synchronous transitions), `admission`
//!   (argument, size, timeout and quota checks), `finisher` (store write,
//!   then the session's streams), `timers`, `lifecycle` (recover, drain,
//!   purge), `queue` (the fair per-tool queue and the [`scheduler::queue::Backlog`]
//!   seam between single-server and shared mode).
//! - [`fields`]: the one rule for text fields at the API boundary
//!   (identifiers refuse NUL, free text escapes it), whatever the front end.
//! - [`json_text`]: the one rule for every JSON text accepted (arguments,
//!   results, schemas): size, syntax, no lone surrogates, a depth limit.
//! - [`tools`]: tool definitions and argument validation against each
//!   tool's JSON Schema.
//! - [`sessions`]: the hub that wakes open `Completions` streams and the
//!   feed that replays then follows a session's completions.
//! - [`store`]: the persistence seam ([`store::Store`]) and its memory,
//!   SQLite and PostgreSQL implementations.
//! - [`text`]: the texts errand writes for the model.
//! - [`results`]: previews of results over their budget, and the pages
//!   `ReadResult` cuts results into.
//! - [`cluster`]: shared mode, several servers on one database: claiming,
//!   leases, the reaper, cross-server wake-ups and tool discovery.
//! - [`agents`]: the agent side in domain types, one API for every front
//!   end ([`agents::AgentApi`]): tenant keying, the own-task check, the
//!   submit rate and stream quotas, submit/get/cancel/list/wait and session
//!   streams; and [`agents::Agent`], the MCP front end's seam.
//! - [`grpc`]: the wire edge, the only place (with [`server`]) that sees
//!   the contract's messages and tonic: thin handlers that translate to and
//!   from [`agents`] and the scheduler, the auth interceptor, and
//!   [`grpc::convert`], every `pb` <-> domain mapping and the one
//!   error-to-status mapping.
//! - [`mcp`]: the MCP front end (Tasks extension) on its own listener, a
//!   thin adapter over [`agents`], rendering MCP JSON from domain types.
//! - [`a2a`]: the A2A 1.0 front end (agent card, JSON-RPC, HTTP+JSON and
//!   gRPC on one listener), the same kind of adapter.
//! - [`auth`]: bearer tokens from the operator's tokens file, hashed at rest,
//!   the [`auth::Caller`] a token stands for, and [`auth::expiry`], the end
//!   of the streams a token opened.
//! - [`tenant`]: how sessions and tools are keyed per tenant: the handlers
//!   key what clients name, the scheduler counts and lists per tenant, and
//!   the store keeps keys as it keeps names.
//! - [`quota`]: per-tenant stream and worker counts, per-token submit rate.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`net`]: what every listener bounds: connections per listener and per
//!   peer, handshake and idle timeouts, HTTP/2 streams, headers and windows.
//! - [`logs`]: client values escaped and bounded in log lines, and a
//!   throttle for lines a client can trigger at will.
//! - [`ui`]: the dashboard on `--ui-listen` (embedded assets, a JSON API,
//!   live events from the session hub).
//! - [`server`]: wires it all to a listener (TLS optional) with health,
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

pub mod a2a;
pub mod agents;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fields;
pub mod grpc;
pub mod json_text;
pub mod logs;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod net;
pub mod quota;
pub mod results;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tenant;
pub mod text;
pub mod tools;
pub mod ui;

pub use error::Error;

/// The throwaway PostgreSQL cluster (from the `errand-testkit`
/// dev-dependency) that the store tests run on.
#[cfg(test)]
pub(crate) use errand_testkit::pg as test_pg;
