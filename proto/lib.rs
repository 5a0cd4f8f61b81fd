//! The errand wire contract, generated from `proto/errand/v1/errand.proto`.
//!
//! ```no_run
//! use errand_proto::v1::{tool_service_client::ToolServiceClient, SubmitToolRequest};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:7466")
//!     .connect()
//!     .await?;
//! let mut client = ToolServiceClient::new(channel);
//! let ack = client
//!     .submit_tool(SubmitToolRequest {
//!         session_id: "demo".into(),
//!         tool: "echo".into(),
//!         arguments_json: r#"{"text":"hi"}"#.into(),
//!         ..Default::default()
//!     })
//!     .await?
//!     .into_inner();
//! println!("{}", ack.ack);
//! # Ok(()) }
//! ```

/// Package `errand.v1`. Generated code: never edited by hand.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("errand.v1");

    /// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/errand_descriptor.bin"));
}
