//! The scheduler on its own: no gRPC server, an in-memory store, a worker
//! that is just a channel, and tokio's paused clock for timeouts. A worker's
//! commands are read in their wire form (through [`crate::grpc::convert`]),
//! so these checks are the ones a worker sees.
use std::{collections::VecDeque, ops::Deref, sync::Arc, time::Duration};

use errand_proto::v1 as pb;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tonic::Status;

use super::*;
use crate::{
    config::Limits,
    grpc::convert,
    model::Submission,
    store::{
        StoreError,
        double::{Doubled, Hooks},
        memory::MemoryStore,
    },
};

/// A scheduler with the test's view of it: task IDs as a client sends them.
struct Core(Arc<Scheduler>);

impl Core {
    fn new(config: Config, store: SharedStore) -> Self {
        Core(Scheduler::new(config, store, Parts::default()))
    }

    async fn get_task(&self, task_id: &str) -> Result<TaskRecord, Error> {
        self.0.get_task(parse_task_id(task_id)?).await
    }

    fn store(&self) -> &SharedStore {
        &self.0.store
    }
}

impl Deref for Core {
    type Target = Arc<Scheduler>;
    fn deref(&self) -> &Arc<Scheduler> {
        &self.0
    }
}

/// A worker's command stream as the wire carries it: `Registered`, then
/// what the scheduler sends.
struct Commands {
    registered: VecDeque<pb::WorkerCommand>,
    rx: mpsc::Receiver<Result<Outgoing, Error>>,
}

impl Commands {
    fn try_recv(&mut self) -> Result<Result<pb::WorkerCommand, Status>, TryRecvError> {
        if let Some(first) = self.registered.pop_front() {
            return Ok(Ok(first));
        }
        self.rx
            .try_recv()
            .map(|c| c.map(wire).map_err(Status::from))
    }

    async fn recv(&mut self) -> Option<Result<pb::WorkerCommand, Status>> {
        if let Some(first) = self.registered.pop_front() {
            return Some(Ok(first));
        }
        let c = self.rx.recv().await?;
        Some(c.map(wire).map_err(Status::from))
    }
}

/// A command as the worker gets it: the memory store's dispatch records are
/// durable at once.
fn wire(out: Outgoing) -> pb::WorkerCommand {
    if let Some(after) = out.after {
        assert!(futures::FutureExt::now_or_never(after.wait()).is_some_and(|r| r.is_ok()));
    }
    convert::command(out.command)
}

fn core(config: Config) -> Core {
    Core::new(config, Arc::new(MemoryStore::default()))
}

async fn worker(core: &Core, tools: &[&str], max_concurrency: u32) -> (WorkerId, Commands) {
    let (tx, rx) = mpsc::channel(64);
    let register = pb::Register {
        worker_name: "w".into(),
        tools: tools
            .iter()
            .map(|t| pb::Tool {
                name: t.to_string(),
                ..Default::default()
            })
            .collect(),
        max_concurrency,
    };
    let id = core
        .register(convert::registration(register, "").unwrap(), tx)
        .await
        .unwrap();
    let mut rx = Commands {
        registered: VecDeque::from([convert::registered_within(id, 0)]),
        rx,
    };
    assert!(matches!(
        rx.try_recv().unwrap().unwrap().kind,
        Some(pb::worker_command::Kind::Registered(_))
    ));
    (id, rx)
}

fn submit_request(session: &str, tool: &str) -> Submission {
    let req = pb::SubmitToolRequest {
        session_id: session.into(),
        tool: tool.into(),
        arguments_json: "{}".into(),
        ..Default::default()
    };
    convert::submission(req, "", &Limits::default()).unwrap()
}

fn next(rx: &mut Commands) -> pb::worker_command::Kind {
    rx.try_recv().expect("a command").unwrap().kind.unwrap()
}

fn assignment(rx: &mut Commands) -> pb::Assignment {
    match next(rx) {
        pb::worker_command::Kind::Assignment(a) => a,
        other => panic!("expected an assignment, got {other:?}"),
    }
}

/// The worker's result `json` for assignment `a`, handed to the scheduler;
/// its finish goes on in the background.
async fn send_result(core: &Core, worker: WorkerId, a: &pb::Assignment, json: &str) {
    let result = pb::TaskResult {
        task_id: a.task_id.clone(),
        outcome: Some(pb::task_result::Outcome::ResultJson(json.into())),
        attempt: a.attempt,
        ..Default::default()
    };
    core.on_result(worker, convert::task_result(result).unwrap())
        .await;
}

async fn result(core: &Core, worker: WorkerId, a: &pb::Assignment, json: &str) {
    send_result(core, worker, a, json).await;
    // The finisher writes in the background: wait until it has.
    core.tracker().close();
    core.tracker().wait().await;
    core.tracker().reopen();
}

#[tokio::test]
async fn submit_dispatches_within_the_call_and_a_result_completes_with_seq_1() {
    let core = core(Config::default());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    let (task, dedup) = core.submit(submit_request("s", "t")).await.unwrap();
    assert!(!dedup);
    let a = assignment(&mut rx);
    assert_eq!((a.task_id.clone(), a.attempt), (task.id.to_string(), 1));
    result(&core, w, &a, r#"{"ok":true}"#).await;
    let done = core.get_task(&a.task_id).await.unwrap();
    assert_eq!((done.state, done.seq), (TaskState::Succeeded, 1));
    let log = core.store().completions_after("s", 0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn a_second_result_for_the_same_task_is_ignored() {
    let core = core(Config::default());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    result(&core, w, &a, "1").await;
    result(&core, w, &a, "2").await;
    let log = core.store().completions_after("s", 0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Outcome::Result("1".into()));
}

#[tokio::test]
async fn results_that_are_not_json_fail_the_task() {
    let core = core(Config::default());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    result(&core, w, &a, "not json").await;
    let task = core.get_task(&a.task_id).await.unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(
        matches!(task.outcome, Some(Outcome::Error { ref code, .. }) if code == codes::INVALID_RESULT)
    );
}

/// Waits (10 s of the test's clock at most) until `announced`, a session's
/// wake-ups, carries the completion of task `task_id` (a client's form):
/// an ending is stored and announced after its worker is told.
async fn ended_in(
    announced: &mut tokio::sync::broadcast::Receiver<crate::sessions::Wake>,
    task_id: &str,
) {
    let wait = async {
        loop {
            match announced.recv().await.expect("the hub is open") {
                crate::sessions::Wake::Completion(c) if c.task_id.to_string() == task_id => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the ending was announced");
}

#[tokio::test(start_paused = true)]
async fn timeouts_fire_on_the_clock_and_tell_the_worker() {
    let core = core(Config {
        default_timeout: Duration::from_secs(30),
        ..Config::default()
    });
    let (_w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    assert_eq!(a.timeout_ms, 30_000);
    let mut announced = core.hub.subscribe("s");
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(
        core.get_task(&a.task_id).await.unwrap().state,
        TaskState::Running
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancel = rx.recv().await.unwrap().unwrap().kind.unwrap();
    assert!(matches!(cancel, pb::worker_command::Kind::Cancel(ref c) if c.reason == "timeout"));
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(
        core.get_task(&a.task_id).await.unwrap().state,
        TaskState::TimedOut
    );
}

#[tokio::test]
async fn a_lost_worker_s_task_keeps_its_place_at_the_head_of_its_session() {
    let core = core(Config::default());
    let (w1, mut rx1) = worker(&core, &["t"], 1).await;
    let (first, _) = core.submit(submit_request("s", "t")).await.unwrap();
    let (second, _) = core.submit(submit_request("s", "t")).await.unwrap();
    assert_eq!(assignment(&mut rx1).task_id, first.id.to_string());
    core.worker_gone(w1).await;
    let (_w2, mut rx2) = worker(&core, &["t"], 1).await;
    let a = assignment(&mut rx2);
    assert_eq!((a.task_id, a.attempt), (first.id.to_string(), 2));
    assert_eq!(
        core.get_task(&second.id.to_string()).await.unwrap().state,
        TaskState::Queued
    );
}

#[tokio::test]
async fn a_worker_takes_its_tools_in_turn() {
    let core = core(Config::default());
    assert!(matches!(
        core.submit(submit_request("s", "a")).await,
        Err(Error::NotFound(_))
    ));
    let (w, mut rx) = worker(&core, &["a", "b"], 1).await;
    for _ in 0..3 {
        core.submit(submit_request("s", "a")).await.unwrap();
        core.submit(submit_request("s", "b")).await.unwrap();
    }
    let mut tools = Vec::new();
    for _ in 0..4 {
        let a = assignment(&mut rx);
        tools.push(a.tool.clone());
        result(&core, w, &a, "0").await;
    }
    assert_eq!(tools, ["a", "b", "a", "b"]);
}

#[tokio::test]
async fn recovery_requeues_unfinished_tasks_and_fails_exhausted_ones() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let config = Config {
        max_attempts: 2,
        ..Config::default()
    };
    let before = Core::new(config.clone(), store.clone());
    let (_w, mut rx) = worker(&before, &["t"], 2).await;
    let (queued_once, _) = before.submit(submit_request("s", "t")).await.unwrap();
    let (exhausted, _) = before.submit(submit_request("s", "t")).await.unwrap();
    let _ = assignment(&mut rx);
    let _ = assignment(&mut rx);
    // Make the second one look like it already used its attempts.
    store.record_dispatch(exhausted.id, 2, std::time::SystemTime::now());
    drop(before);

    let after = Core::new(config, store.clone());
    assert_eq!(after.recover().await.unwrap(), 2);
    assert_eq!(
        after
            .get_task(&exhausted.id.to_string())
            .await
            .unwrap()
            .state,
        TaskState::Failed
    );
    let (_w, mut rx) = worker(&after, &["t"], 2).await;
    let a = assignment(&mut rx);
    assert_eq!((a.task_id, a.attempt), (queued_once.id.to_string(), 2));
}

/// What [`Refusing`] changes in a memory store: it refuses (permanently)
/// any outcome whose result contains "poison", as PostgreSQL refuses a
/// value it cannot hold.
#[derive(Default)]
struct Poisoned;

type Refusing = Doubled<Poisoned>;

impl Hooks for Poisoned {
    fn finishing(&self, finish: &crate::model::Finish) -> Result<(), StoreError> {
        if matches!(&finish.outcome, Outcome::Result(r) if r.contains("poison")) {
            return Err(StoreError::Rejected("invalid byte sequence".into()));
        }
        Ok(())
    }
}

/// Issue 15.5: a permanent store error ends that one task FAILED with
/// store_rejected (it used to be retried for ever, the task left RUNNING).
#[tokio::test]
async fn an_outcome_the_store_refuses_fails_that_task_only() {
    let core = Core::new(Config::default(), Arc::new(Refusing::default()));
    let (w, mut rx) = worker(&core, &["t"], 2).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    core.submit(submit_request("s", "t")).await.unwrap();
    let (bad, good) = (assignment(&mut rx), assignment(&mut rx));
    result(&core, w, &bad, r#""poison""#).await;
    result(&core, w, &good, "1").await;
    let bad = core.get_task(&bad.task_id).await.unwrap();
    assert_eq!(bad.state, TaskState::Failed);
    assert!(
        matches!(&bad.outcome, Some(Outcome::Error { code, .. }) if code == codes::STORE_REJECTED),
        "{:?}",
        bad.outcome
    );
    let good = core.get_task(&good.task_id).await.unwrap();
    assert_eq!(good.state, TaskState::Succeeded);
}

fn submit_with_queue_timeout(session: &str, tool: &str, queue_timeout_ms: u64) -> Submission {
    let mut sub = submit_request(session, tool);
    sub.queue_timeout_ms = queue_timeout_ms;
    sub
}

fn error_code(task: &TaskRecord) -> &str {
    match &task.outcome {
        Some(Outcome::Error { code, .. }) => code,
        other => panic!("expected an error outcome, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_no_worker_takes_times_out_at_its_queue_deadline() {
    let core = core(Config::default());
    let (_w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let _busy = assignment(&mut rx);
    let (waiting, _) = core
        .submit(submit_with_queue_timeout("s", "t", 1_000))
        .await
        .unwrap();
    assert_eq!(
        waiting.queue_deadline,
        Some(waiting.created_at + Duration::from_secs(1))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = waiting.id.to_string();
    assert_eq!(core.get_task(&id).await.unwrap().state, TaskState::Queued);
    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::task::yield_now().await;
    let task = core.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    assert_eq!(error_code(&task), codes::QUEUE_TIMEOUT);
    let Some(Outcome::Error { message, .. }) = &task.outcome else {
        unreachable!()
    };
    assert!(
        message.contains("no worker took") && message.contains("1000 ms"),
        "{message}"
    );
    // The worker is never told: it never had the task.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test(start_paused = true)]
async fn a_queue_deadline_holds_across_a_restart() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let before = Core::new(Config::default(), store.clone());
    let (_w, mut rx) = worker(&before, &["t"], 1).await;
    before.submit(submit_request("s", "t")).await.unwrap();
    let _busy = assignment(&mut rx);
    let (waiting, _) = before
        .submit(submit_with_queue_timeout("s", "t", 1_000))
        .await
        .unwrap();
    // The old server's timers stop with it.
    before.shutdown.cancel();
    drop(before);

    let after = Core::new(Config::default(), store.clone());
    assert_eq!(after.recover().await.unwrap(), 2);
    let id = waiting.id.to_string();
    assert_eq!(after.get_task(&id).await.unwrap().state, TaskState::Queued);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    tokio::task::yield_now().await;
    let task = after.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    assert_eq!(error_code(&task), codes::QUEUE_TIMEOUT);
}

/// A call a worker took is not ended by its queue timeout when the run
/// outlasts it: queued again (the server restarted while it ran, or its
/// worker went away), it waits for a worker its queue timeout afresh. The
/// stored deadline here passed long ago; it used to end the call at once at
/// recovery ("no worker took this call"), and after a lost worker nothing
/// bounded the wait at all.
#[tokio::test(start_paused = true)]
async fn a_call_queued_again_after_a_run_waits_its_queue_timeout_afresh() {
    // A call submitted a minute ago with a 1 s queue timeout, taken by a
    // worker at once, and running when the server stopped.
    let template = core(Config::default());
    let _served = worker(&template, &["t"], 0).await;
    let (mut ran, _) = template
        .submit(submit_with_queue_timeout("s", "t", 1_000))
        .await
        .unwrap();
    ran.created_at = SystemTime::now() - Duration::from_secs(60);
    ran.queue_deadline = Some(ran.created_at + Duration::from_secs(1));
    let store: SharedStore = Arc::new(MemoryStore::default());
    store.insert_task(&ran).await.unwrap();
    store
        .record_dispatch(ran.id, 1, ran.created_at)
        .wait()
        .await
        .unwrap();

    let after = Core::new(Config::default(), store.clone());
    assert_eq!(after.recover().await.unwrap(), 1);
    let id = ran.id.to_string();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(after.get_task(&id).await.unwrap().state, TaskState::Queued);
    let (w, mut rx) = worker(&after, &["t"], 1).await;
    let again = assignment(&mut rx);
    assert_eq!((again.task_id.as_str(), again.attempt), (id.as_str(), 2));

    // Its worker goes away: it waits once more, then times out.
    after.worker_gone(w).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(after.get_task(&id).await.unwrap().state, TaskState::Queued);
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::yield_now().await;
    let task = after.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    assert_eq!(error_code(&task), codes::QUEUE_TIMEOUT);
    let Some(Outcome::Error { message, .. }) = &task.outcome else {
        unreachable!()
    };
    assert!(message.contains("1000 ms"), "{message}");
}

/// One deadline per task waiting in the queue, none once a worker took it
/// or it ended: nothing is kept for a task's run or after it (the old timer
/// per submit lived until the deadline, whatever became of its task).
#[tokio::test(start_paused = true)]
async fn queue_deadlines_end_at_dispatch_and_at_any_ending() {
    let core = core(Config::default());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    let (taken, _) = core.submit(submit_request("s", "t")).await.unwrap();
    let running = assignment(&mut rx);
    assert_eq!(running.task_id, taken.id.to_string());
    assert_eq!(
        core.deadlines.len(),
        0,
        "a dispatched task keeps no deadline"
    );
    let (waiting, _) = core.submit(submit_request("s", "t")).await.unwrap();
    let (cancelled, _) = core.submit(submit_request("s", "t")).await.unwrap();
    assert_eq!(core.deadlines.len(), 2);
    core.cancel(cancelled.id, "").await.unwrap();
    assert_eq!(core.deadlines.len(), 1, "an ended task keeps no deadline");
    // The worker goes away: its task is queued again before its deadline,
    // which holds again; the waiting one is dispatched to the next worker.
    core.worker_gone(w).await;
    assert_eq!(core.deadlines.len(), 2);
    let (_w2, mut rx2) = worker(&core, &["t"], 2).await;
    let ids = [assignment(&mut rx2).task_id, assignment(&mut rx2).task_id];
    assert!(ids.contains(&waiting.id.to_string()) && ids.contains(&taken.id.to_string()));
    assert_eq!(core.deadlines.len(), 0);
}

/// One attempt deadline per running attempt, none once it ended, however
/// it ended: a result, a cancel, a lost worker (its task then queued again),
/// or the deadline itself.
#[tokio::test(start_paused = true)]
async fn attempt_deadlines_end_with_their_attempt() {
    let core = core(Config {
        default_timeout: Duration::from_secs(30),
        ..Config::default()
    });
    let (w, mut rx) = worker(&core, &["t"], 3).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(core.submit(submit_request("s", "t")).await.unwrap().0.id);
    }
    let running: Vec<_> = (0..3).map(|_| assignment(&mut rx)).collect();
    assert_eq!(core.attempt_deadlines.len(), 3, "one per running attempt");
    core.cancel(ids[0], "").await.unwrap();
    assert_eq!(core.attempt_deadlines.len(), 2, "a cancel ends it");
    let a = running
        .iter()
        .find(|a| a.task_id == ids[1].to_string())
        .unwrap();
    result(&core, w, a, "1").await;
    assert_eq!(core.attempt_deadlines.len(), 1, "a result ends it");
    core.worker_gone(w).await;
    assert_eq!(core.attempt_deadlines.len(), 0, "a lost worker ends it");
    let (_w2, mut rx2) = worker(&core, &["t"], 1).await;
    let again = assignment(&mut rx2);
    assert_eq!(again.task_id, ids[2].to_string());
    let mut announced = core.hub.subscribe("s");
    assert_eq!(
        core.attempt_deadlines.len(),
        1,
        "the next attempt has its own"
    );
    // Waiting for the worker's cancel lets the paused clock run to the
    // deadline (30 s); a deadline that never fires fails at 60 s.
    let cancel = tokio::time::timeout(Duration::from_secs(60), rx2.recv())
        .await
        .expect("the attempt timed out")
        .unwrap()
        .unwrap()
        .kind
        .unwrap();
    assert!(matches!(cancel, pb::worker_command::Kind::Cancel(ref c) if c.reason == "timeout"));
    assert_eq!(core.attempt_deadlines.len(), 0, "a fired deadline is gone");
    ended_in(&mut announced, &again.task_id).await;
    assert_eq!(
        core.get_task(&again.task_id).await.unwrap().state,
        TaskState::TimedOut
    );
}

mod outage;
mod registry;
mod shared;
mod unrecorded;

/// A call that fails while the server drains was accepted before the
/// drain: its fallback run is still admitted (stored, queued for the next
/// start or another server) instead of the call ending FAILED for good.
#[tokio::test]
async fn a_call_failing_during_a_drain_keeps_its_fallback_run() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let before = Core::new(Config::default(), store.clone());
    let (w, mut rx) = worker(&before, &["primary", "backup"], 2).await;
    let req = pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "primary".into(),
        arguments_json: "{}".into(),
        fallback: Some(pb::Fallback {
            kind: Some(pb::fallback::Kind::Tool("backup".into())),
        }),
        ..Default::default()
    };
    let sub = convert::submission(req, "", &Limits::default()).unwrap();
    let (call, _) = before.submit(sub).await.unwrap();
    let a = assignment(&mut rx);
    before.stop_taking_work();
    let failed = pb::TaskResult {
        task_id: a.task_id.clone(),
        outcome: Some(pb::task_result::Outcome::Error(pb::ToolError {
            code: "upstream_down".into(),
            message: "503".into(),
        })),
        attempt: a.attempt,
        ..Default::default()
    };
    before
        .on_result(w, convert::task_result(failed).unwrap())
        .await;
    before.tracker().close();
    before.tracker().wait().await;
    assert!(
        store
            .completions_after("s", 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "the call did not end as it was"
    );
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "nothing is dispatched while draining"
    );
    before.shutdown.cancel();
    drop(before);

    let after = Core::new(Config::default(), store.clone());
    after.recover().await.unwrap();
    let (w, mut rx) = worker(&after, &["primary", "backup"], 2).await;
    let run = assignment(&mut rx);
    assert_eq!(run.tool, "backup");
    assert_ne!(run.task_id, call.id.to_string(), "the run, not the call");
    result(&after, w, &run, "42").await;
    let log = store.completions_after("s", 0, 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].task_id, log[0].state),
        (call.id, TaskState::Succeeded)
    );
    let used = log[0].notes.answered_by.as_ref().expect("FallbackUsed");
    assert_eq!(&*used.tool, "backup");
    assert_eq!(used.primary.code, "upstream_down");
}
