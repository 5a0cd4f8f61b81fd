//! Binds the services to a listener and runs them until a shutdown signal.
use std::{future::Future, sync::Arc, time::Duration};

use errand_proto::v1::{
    tool_service_server::ToolServiceServer, worker_service_server::WorkerServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tracing::info;

use crate::{
    config::Config,
    core::Core,
    grpc::{ToolApi, WorkerApi},
    store::{SharedStore, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("recovering unfinished tasks from the store failed: {0}")]
    Recover(#[from] StoreError),
    #[error("serving gRPC failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves errand on `listener` until `shutdown` resolves, then ends every
/// stream (clients are told to reconnect) and returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    store: SharedStore,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let core = Core::new(config, store);
    core.recover().await?;
    let purge = tokio::spawn(core.clone().purge_loop());
    let cluster = crate::cluster::start(&core);
    let result = router(&core)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), {
            let token = core.shutdown_token().clone();
            async move {
                shutdown.await;
                info!("shutting down");
                token.cancel();
            }
        })
        .await;
    core.shutdown_token().cancel();
    purge.abort();
    for task in cluster {
        task.abort();
    }
    crate::cluster::stop(&core).await;
    result.map_err(Into::into)
}

fn router(core: &Arc<Core>) -> tonic::transport::server::Router {
    let max = core.config().limits.max_message_bytes;
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(15)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            ToolServiceServer::new(ToolApi::new(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            WorkerServiceServer::new(WorkerApi::new(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
}
