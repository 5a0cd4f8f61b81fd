//! Thin tonic handlers: each RPC checks its input shape, calls the core, and
//! turns the answer into its wire form. No scheduling logic lives here.
pub mod tool_service;
pub mod worker_service;

pub use tool_service::ToolApi;
pub use worker_service::WorkerApi;
