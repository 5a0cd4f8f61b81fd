//! The wire edge: thin tonic handlers that turn each request into domain
//! types ([`convert`]), make one call (the agent API, [`crate::agents`],
//! for `ToolService`; the scheduler for `WorkerService`), and turn the
//! answer back. No scheduling, keying or quota logic lives here.
pub mod auth;
pub mod completions;
pub mod convert;
pub mod failed_auth;
pub mod listing;
pub mod metadata_limit;
pub mod rate;
pub mod request_deadline;
pub mod results;
pub mod status_codes;
pub mod tool_service;
pub mod transport;
pub mod worker_service;

pub use tool_service::ToolApi;
pub use worker_service::WorkerApi;
