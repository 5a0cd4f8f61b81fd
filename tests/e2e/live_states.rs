//! A task's state is one state everywhere: after a worker leaves mid-task
//! or the server restarts, the requeued tasks are QUEUED alike in GetTask,
//! in ListTasks' status filters and totals, in ListTools' queue depth and
//! in CancelTasks by status.
use errand_client::{Client, pb};
use errand_tests::{
    raw::{connect_worker_for, tool},
    *,
};

fn by_status(session: &str, status: pb::TaskStatus) -> pb::ListTasksRequest {
    pb::ListTasksRequest {
        session_id: session.into(),
        statuses: vec![status as i32],
        ..Default::default()
    }
}

fn cancel_by_status(session: &str, status: pb::TaskStatus) -> pb::CancelTasksRequest {
    pb::CancelTasksRequest {
        session_id: session.into(),
        statuses: vec![status as i32],
        ..Default::default()
    }
}

/// Submits 5 tasks of `tool` to `session`, lets a worker with room for 3
/// take 3 of them, and returns their IDs (the taken ones first).
async fn three_of_five_taken(
    server: &Server,
    client: &Client,
    session: &str,
    tool_name: &str,
) -> (Vec<String>, raw::RawWorker) {
    let mut worker = connect_worker_for(&server.addr, vec![tool(tool_name, "")], 3).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            client
                .submit(session, tool_name, "{}")
                .await
                .unwrap()
                .task_id,
        );
    }
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(worker.next_assignment().await.task_id);
    }
    ids.retain(|id| !taken.contains(id));
    taken.extend(ids);
    (taken, worker)
}

/// Every task of `ids` is QUEUED in GetTask, in ListTasks(QUEUED) (rows and
/// total), and none is listed or counted as RUNNING.
async fn all_queued_everywhere(client: &Client, session: &str, ids: &[String]) {
    for id in ids {
        let task = client.get_task(id).await.unwrap();
        assert_eq!(
            status_of(task.status),
            pb::TaskStatus::Queued,
            "GetTask {id}"
        );
    }
    let queued = client
        .list_tasks(by_status(session, pb::TaskStatus::Queued))
        .await
        .unwrap();
    let mut listed: Vec<_> = queued.tasks.iter().map(|t| t.task_id.clone()).collect();
    let mut want = ids.to_vec();
    listed.sort();
    want.sort();
    assert_eq!(listed, want, "ListTasks(QUEUED) lists every requeued task");
    assert_eq!(queued.total_size, 5, "ListTasks(QUEUED) counts them");
    assert!(
        (queued.tasks.iter()).all(|t| status_of(t.status) == pb::TaskStatus::Queued),
        "{queued:?}"
    );
    let running = client
        .list_tasks(by_status(session, pb::TaskStatus::Running))
        .await
        .unwrap();
    assert_eq!(
        (running.tasks.len(), running.total_size),
        (0, 0),
        "ListTasks(RUNNING) lists none: {:?}",
        running.tasks
    );
}

/// Only the queued tasks are cancelled by CancelTasks(QUEUED), all of them.
async fn cancel_by_status_finds_them(client: &Client, session: &str, ids: &[String]) {
    let none = client
        .cancel_tasks(cancel_by_status(session, pb::TaskStatus::Running))
        .await
        .unwrap();
    assert_eq!(none, 0, "no task runs: CancelTasks(RUNNING) cancels none");
    let all = client
        .cancel_tasks(cancel_by_status(session, pb::TaskStatus::Queued))
        .await
        .unwrap();
    assert_eq!(all, 5, "CancelTasks(QUEUED) cancels every queued task");
    for id in ids {
        let task = client.get_task(id).await.unwrap();
        assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled, "{id}");
    }
}

#[tokio::test]
async fn tasks_requeued_when_their_worker_leaves_are_queued_in_every_listing() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let (ids, worker) = three_of_five_taken(&server, &client, "left", "stale").await;
    worker.leave().await;

    all_queued_everywhere(&client, "left", &ids).await;
    if !on_postgres() {
        // Shared mode keeps its queue in the store: not counted here.
        let tool = &client.list_tools().await.unwrap()[0];
        assert_eq!(
            (tool.queued, tool.running),
            (5, 0),
            "ListTools' depth agrees"
        );
    }
    cancel_by_status_finds_them(&client, "left", &ids).await;
}

#[tokio::test]
async fn tasks_running_at_a_restart_are_queued_in_every_listing() {
    if on_postgres() {
        // Shared mode gives running tasks back to the store's queue (the
        // reaper, or the drain); the memory store keeps none: this is the
        // durable store's recovery.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let client = server.client().await;
    let (ids, worker) = three_of_five_taken(&server, &client, "restart", "stale").await;
    server.restart().await;
    drop(worker);
    let client = server.client().await;

    all_queued_everywhere(&client, "restart", &ids).await;
    cancel_by_status_finds_them(&client, "restart", &ids).await;
}
