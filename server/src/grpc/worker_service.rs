//! `errand.v1.WorkerService`: a worker's one long stream.
use std::{pin::Pin, sync::Arc};

use errand_proto::v1::{self as pb, worker_service_server::WorkerService};
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::{auth::caller, convert, status_codes};
use crate::auth::expiry;
use crate::{
    Error,
    auth::Caller,
    logs,
    model::{Command, Registration},
    quota::{Slot, SlotCounter},
    scheduler::{CommandTx, Finishing, Outgoing, Scheduler, WorkerId},
};

pub struct WorkerApi {
    sched: Arc<Scheduler>,
    shutdown: CancellationToken,
    workers: SlotCounter,
}

impl WorkerApi {
    /// `shutdown`: once cancelled, worker streams end.
    pub fn new(sched: Arc<Scheduler>, shutdown: CancellationToken) -> Self {
        Self {
            sched,
            shutdown,
            workers: SlotCounter::default(),
        }
    }
}

type Commands = Pin<Box<dyn Stream<Item = Result<pb::WorkerCommand, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type ConnectStream = Commands;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = caller(&request);
        let max = self.sched.config().limits.max_workers_per_tenant;
        let slot = self.workers.acquire(&caller.tenant, max).map_err(|n| {
            Error::ResourceExhausted(format!(
                "your tenant has {n} workers connected, the limit is {max}"
            ))
        })?;
        let mut inbound = request.into_inner();
        let wait = self.sched.config().register_timeout;
        let first = tokio::time::timeout(wait, inbound.message())
            .await
            .map_err(|_| {
                Error::DeadlineExceeded(format!(
                    "send Register as the first message within {} ms",
                    wait.as_millis()
                ))
            })?
            .map_err(|s| status_codes::refused_register(&s).map_or(s, Status::from))?;
        let register = match first.and_then(|m| m.kind) {
            Some(pb::worker_message::Kind::Register(register)) => register,
            Some(_) => {
                return Err(Error::invalid("the first message on Connect must be Register").into());
            }
            None => {
                return Err(Error::invalid(
                    "the stream ended or sent an empty message before Register",
                )
                .into());
            }
        };
        let reg = registration(&caller, register)?;
        let capacity = 2 * reg.max_concurrency.max(1) as usize + 8;
        let (tx, rx) = mpsc::channel(capacity);
        let worker = self.sched.register(reg, tx.clone()).await?;
        self.sched.tracker().spawn(serve_worker(
            self.sched.clone(),
            self.shutdown.clone(),
            worker,
            inbound,
            tx,
            (slot, caller),
        ));
        let max_message = self.sched.config().limits.max_message_bytes;
        let registered = tokio_stream::once(Ok(convert::registered_within(worker, max_message)));
        // Sequential: an Assignment waits for its dispatch record to be
        // durable, and the commands behind it wait with it. One whose record
        // could not be written is not sent: the scheduler takes it back (the
        // store's fault is neither the worker's nor the task's).
        let sched = self.sched.clone();
        let commands = futures::StreamExt::filter_map(ReceiverStream::new(rx), move |c| {
            let sched = sched.clone();
            async move {
                let out = match c {
                    Ok(out) => out,
                    Err(e) => return Some(Err(Status::from(e))),
                };
                if let Some(after) = out.after {
                    let recorded = after.wait().await;
                    if let Command::Assign(a) = &out.command {
                        match &recorded {
                            Ok(()) => sched.dispatch_recorded(worker, a.task_id, a.attempt),
                            Err(e) => sched.dispatch_unrecorded(worker, a.task_id, a.attempt, e),
                        }
                    }
                    if recorded.is_err() {
                        return None;
                    }
                }
                Some(Ok(convert::command(out.command)))
            }
        });
        Ok(Response::new(Box::pin(registered.chain(commands))))
    }
}

/// Reads a worker's messages until its stream ends (or its token expires),
/// then gives its tasks back. Either side ending ends it: the worker's
/// messages, or its commands (the server ended them with an error, or the
/// HTTP/2 stream carrying them is gone), after which a worker left
/// registered would take tasks it never receives.
async fn serve_worker(
    sched: Arc<Scheduler>,
    shutdown: CancellationToken,
    worker: WorkerId,
    mut inbound: Streaming<pb::WorkerMessage>,
    tx: CommandTx,
    (_slot, caller): (Slot, Caller),
) {
    let expiry = expiry::reached(expiry::deadline(&caller));
    tokio::pin!(expiry);
    // This stream's results whose store writes are under way: polled here
    // rather than spawned one task each.
    let mut finishing = FuturesUnordered::<Finishing>::new();
    let commands_gone = tx.closed();
    tokio::pin!(commands_gone);
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(()) = finishing.next(), if !finishing.is_empty() => continue,
            _ = &mut expiry => {
                debug!(worker_id = worker, "the worker's token expired: closing its stream");
                // Never waits: a worker that does not read its commands
                // sees its stream end without the reason.
                let _ = tx.try_send(Err(expiry::expired(&caller)));
                break;
            }
            msg = inbound.message() => msg,
            // After the messages that arrived: a worker that sends its last
            // result and hangs up ends both sides at once, and the result,
            // read before the hang-up, is taken.
            () = &mut commands_gone => {
                debug!(worker_id = worker, "the worker's command stream ended: closing its registration");
                break;
            }
        };
        let kind = match msg {
            Ok(Some(msg)) => msg.kind,
            Ok(None) => break,
            Err(status) => {
                debug!(worker_id = worker, code = ?status.code(), message = %logs::field(status.message()), "worker stream failed");
                // An oversized or undecodable message: tell the worker as
                // gRPC's table says, with what to fix (if its stream has
                // room: a worker that reads nothing is not waited for).
                if let Some(e) = status_codes::refused_worker_message(&status) {
                    warn!(worker_id = worker, error = %e, "a worker's message was refused: closing its stream");
                    let _ = tx.try_send(Err(e));
                }
                break;
            }
        };
        let result = match kind {
            Some(pb::worker_message::Kind::Result(result)) => result,
            Some(pb::worker_message::Kind::Heartbeat(_)) => continue,
            Some(pb::worker_message::Kind::Progress(p)) => {
                match convert::progress_report(p) {
                    Ok(report) => sched.on_progress(worker, report),
                    Err(task_id) => {
                        debug!(worker_id = worker, task_id = %logs::field(&task_id), "progress with a malformed task_id ignored");
                    }
                }
                continue;
            }
            Some(pb::worker_message::Kind::Register(register)) => {
                // A later Register: the worker serves more tools.
                let added = match registration(&caller, register) {
                    Ok(reg) => sched.register_more(worker, reg).await,
                    Err(e) => Err(e),
                };
                let command = match added {
                    Ok(()) => Command::Registered {
                        worker_id: worker,
                        max_message_bytes: sched.config().limits.max_message_bytes,
                    },
                    // Only the new tools are refused: the stream, the
                    // tools it served and its running tasks go on.
                    Err(e) => {
                        warn!(worker_id = worker, error = %e, "a later Register was refused");
                        Command::RegisterRefused {
                            kind: e.kind(),
                            message: crate::error::bound(e.into_message()).into(),
                        }
                    }
                };
                let _ = tx
                    .send(Ok(Outgoing {
                        command,
                        after: None,
                    }))
                    .await;
                continue;
            }
            None => {
                protocol_error(&tx, worker, "WorkerMessage has no kind set").await;
                break;
            }
        };
        match convert::task_result(result) {
            // Waits while the finisher is full: the stream is not read meanwhile.
            Ok(result) => {
                let rest = driving(&mut finishing, sched.take_result(worker, result)).await;
                finishing.extend(rest);
            }
            Err(task_id) => {
                warn!(worker_id = worker, task_id = %logs::field(&task_id), "result with a malformed task_id ignored");
            }
        }
    }
    // The finishes still under way go on without the stream.
    if !finishing.is_empty() {
        sched
            .tracker()
            .spawn(async move { while finishing.next().await.is_some() {} });
    }
    sched.worker_gone(worker).await;
}

/// Awaits `start` while driving `finishing`: a result waiting for a place
/// among the finisher's slots waits for finishes this stream drives, which
/// would never free one if they were not polled meanwhile.
async fn driving<T>(
    finishing: &mut FuturesUnordered<Finishing>,
    start: impl Future<Output = T>,
) -> T {
    tokio::pin!(start);
    loop {
        tokio::select! {
            done = &mut start => return done,
            Some(()) = finishing.next(), if !finishing.is_empty() => {}
        }
    }
}

/// A Register as the scheduler takes it. Errors: PERMISSION_DENIED for a
/// tool the caller's token may not serve; INVALID_ARGUMENT for a bad field.
fn registration(caller: &Caller, register: pb::Register) -> Result<Registration, Error> {
    if let Some(denied) = register.tools.iter().find(|t| !caller.may_serve(&t.name)) {
        return Err(Error::PermissionDenied(format!(
            "this worker token may not serve tool {}: it may serve {}",
            crate::error::quote(&denied.name),
            crate::error::list(caller.tools.as_deref().unwrap_or_default())
        )));
    }
    convert::registration(register, &caller.tenant)
}

async fn protocol_error(tx: &CommandTx, worker: WorkerId, message: &str) {
    let e = Error::invalid(message);
    warn!(worker_id = worker, error = %e, "protocol error: closing the worker's stream");
    let _ = tx.send(Err(e)).await;
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use futures::stream::FuturesUnordered;
    use tokio::sync::Semaphore;

    use super::driving;
    use crate::scheduler::Finishing;

    /// A result that waits for a finisher slot held by one of the stream's
    /// own finishes gets it once that finish, driven meanwhile, ends.
    #[tokio::test(start_paused = true)]
    async fn a_result_waiting_for_a_slot_drives_the_finishes_that_hold_them() {
        let slots = Arc::new(Semaphore::new(1));
        let held = slots.clone().try_acquire_owned().unwrap();
        let mut finishing = FuturesUnordered::<Finishing>::new();
        finishing.push(Box::pin(async move {
            // Not done at its first poll, as a durable write.
            tokio::task::yield_now().await;
            drop(held);
        }));
        // Bounded (the paused clock jumps to it once nothing can run), so
        // that a regression fails at once rather than hangs.
        let slot = tokio::time::timeout(
            Duration::from_secs(30),
            driving(&mut finishing, slots.clone().acquire_owned()),
        )
        .await
        .expect("the slot was freed by the finish holding it");
        assert!(slot.is_ok());
        assert!(
            finishing.is_empty(),
            "the finish holding the slot ran to its end"
        );
    }
}
