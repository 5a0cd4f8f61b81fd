//! `errand.v1.WorkerService`: a worker's one long stream.
use std::sync::Arc;

use errand_proto::v1::{self as pb, worker_service_server::WorkerService};
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::{
    auth::Caller,
    core::{Core, WorkerId},
    quota::{Counter, Slot},
    tenant,
};

/// Completions of one worker being written to the store at once. Past this,
/// the server stops reading the worker's stream until some are written.
const MAX_FINISHING: usize = 1024;

pub struct WorkerApi {
    core: Arc<Core>,
    workers: Counter,
}

impl WorkerApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            workers: Counter::default(),
        }
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type ConnectStream = ReceiverStream<Result<pb::WorkerCommand, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = Caller::of(&request);
        let max = self.core.config().limits.max_workers_per_tenant;
        let slot = self.workers.acquire(&caller.tenant, max).map_err(|n| {
            Status::resource_exhausted(format!(
                "your tenant has {n} workers connected, the limit is {max}"
            ))
        })?;
        let mut inbound = request.into_inner();
        let wait = self.core.config().register_timeout;
        let first = tokio::time::timeout(wait, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "send Register as the first message within {} ms",
                    wait.as_millis()
                ))
            })??;
        let mut register = match first.and_then(|m| m.kind) {
            Some(pb::worker_message::Kind::Register(register)) => register,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message on Connect must be Register",
                ));
            }
            None => {
                return Err(Status::invalid_argument(
                    "the stream ended or sent an empty message before Register",
                ));
            }
        };
        if let Some(denied) = register.tools.iter().find(|t| !caller.may_serve(&t.name)) {
            return Err(Status::permission_denied(format!(
                "this worker token may not serve tool {:?}: it may serve {}",
                denied.name,
                caller.tools.as_deref().unwrap_or_default().join(", ")
            )));
        }
        for tool in &mut register.tools {
            crate::tools::check_name(&tool.name)?;
            tool.name = tenant::key(&caller.tenant, &tool.name);
        }
        let capacity = 2 * register.max_concurrency.max(1) as usize + 8;
        let (tx, rx) = mpsc::channel(capacity);
        let worker = self.core.register_worker(&register, tx.clone())?;
        self.core
            .tracker()
            .spawn(serve_worker(self.core.clone(), worker, inbound, tx, slot));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Reads a worker's messages until its stream ends, then gives its tasks back.
async fn serve_worker(
    core: Arc<Core>,
    worker: WorkerId,
    mut inbound: Streaming<pb::WorkerMessage>,
    tx: mpsc::Sender<Result<pb::WorkerCommand, Status>>,
    _slot: Slot,
) {
    let mut finishing = FuturesUnordered::new();
    let shutdown = core.shutdown_token().clone();
    loop {
        tokio::select! {
            Some(_) = finishing.next(), if !finishing.is_empty() => continue,
            _ = shutdown.cancelled() => break,
            msg = inbound.message(), if finishing.len() < MAX_FINISHING => match msg {
                Ok(Some(msg)) => match core.on_worker_message(worker, msg) {
                    Ok(Some(done)) => finishing.push(done),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(worker_id = worker, error = %e, "protocol error: closing the worker's stream");
                        let _ = tx.send(Err(e.into())).await;
                        break;
                    }
                },
                Ok(None) => break,
                Err(status) => {
                    debug!(worker_id = worker, %status, "worker stream failed");
                    break;
                }
            },
        }
    }
    while finishing.next().await.is_some() {}
    core.worker_gone(worker).await;
}
