//! The errand Rust client: call errand as an agent ([`Client`]) or serve
//! tools as a worker ([`worker`]). The `errand` command-line program (the
//! `errand-cli` crate) is built on the same pieces; this crate does not
//! depend on the server.
//!
//! ```no_run
//! # async fn f() -> Result<(), errand_client::Error> {
//! use tokio_stream::StreamExt;
//! let client = errand_client::Client::connect("127.0.0.1:7466").await?;
//! let ack = client.submit("demo", "echo", r#"{"text":"hi"}"#).await?;
//! println!("{}", ack.ack); // text for the model: the result comes later
//! let mut results = client.completions("demo", 0);
//! while let Some(done) = results.next().await {
//!     let done = done?;
//!     println!("{} finished: {}", done.task_id, done.message);
//! }
//! # Ok(()) }
//! ```
//!
//! Layout: [`client`] (the agent side), [`follow`] (following completions,
//! or session events with progress, across reconnections, observably),
//! [`worker`] (a worker's connection loop around any [`worker::Handler`]),
//! [`exec`] (a handler that runs a program per task), [`error`], [`tls`] (TLS settings checked,
//! handshake failures named).

pub mod client;
pub mod error;
pub mod exec;
pub mod follow;
pub mod tls;
pub mod worker;

pub use client::{
    Client, ConnectOptions, Credentials, TlsOptions, connect_channel, endpoint, endpoint_with,
};
pub use errand_proto::v1 as pb;
pub use error::Error;
pub use follow::{FollowEvent, FollowOptions};
