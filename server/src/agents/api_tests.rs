//! The agent API on its own: a scheduler on an in-memory store, a worker
//! that is just a channel, two tenants' callers. What every front end
//! relies on: names keyed per tenant, another tenant's task NOT_FOUND as an
//! unknown one is, the submit rate checked before the call, stream slots
//! per tenant.
use std::{sync::Arc, time::Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentApi, Call, listing};
use crate::{
    Error,
    auth::{Caller, Role},
    config::Config,
    model::{Registration, TaskState, ToolDef, ToolKey},
    scheduler::{Admitted, Outgoing, Parts, Scheduler},
    sessions::Feed,
    store::{SharedStore, memory::MemoryStore},
};

/// The API, and the channel of a worker of tenant "acme" serving `echo`.
async fn api(config: Config) -> (AgentApi, mpsc::Receiver<Result<Outgoing, Error>>) {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let parts = Parts::default();
    let (hub, metrics) = (parts.hub.clone(), parts.metrics.clone());
    let sched = Scheduler::new(config, store.clone(), parts);
    let (tx, rx) = mpsc::channel(64);
    let reg = Registration {
        worker_name: "w".into(),
        tools: vec![ToolDef {
            name: ToolKey::new("acme", "echo"),
            description: "Echoes.".into(),
            ..Default::default()
        }],
        max_concurrency: 4,
    };
    sched.register(reg, tx).await.unwrap();
    let feed = Feed::new(store, hub, CancellationToken::new(), 16);
    (AgentApi::new(sched, feed, metrics), rx)
}

fn agent(tenant: &str) -> Caller {
    Caller {
        tenant: tenant.into(),
        role: Some(Role::Agent),
        tools: None,
        token_id: format!("{tenant}-token").into(),
        expires: None,
    }
}

fn call(tool: &str) -> Call {
    Call {
        session: "s".into(),
        tool: tool.into(),
        arguments_json: "{}".into(),
        idempotency_key: String::new(),
    }
}

#[tokio::test]
async fn names_are_keyed_per_tenant_and_another_tenants_task_is_not_found() {
    let (api, _worker) = api(Config::default()).await;
    let (acme, zeta) = (agent("acme"), agent("zeta"));
    let tools = Agent::list_tools(&api, &acme).await.unwrap();
    assert_eq!(
        (
            tools.len(),
            tools[0].name.as_str(),
            tools[0].description.as_str()
        ),
        (1, "echo", "Echoes.")
    );
    assert!(Agent::list_tools(&api, &zeta).await.unwrap().is_empty());

    let submitted = Agent::submit(&api, &acme, call("echo")).await.unwrap();
    assert_eq!(submitted.admitted, Admitted::New);
    let task = &submitted.task.task;
    assert_eq!(
        (&*task.session, &*task.tool),
        ("acme\u{1f}s", "acme\u{1f}echo")
    );
    let id = task.id.to_string();
    assert_eq!(api.task(&acme, &id).await.unwrap().task.id, task.id);

    // Another tenant's task reads as an unknown one, whatever it asks.
    let unknown = crate::scheduler::not_found(task.id).to_string();
    for e in [
        api.task(&zeta, &id).await.unwrap_err(),
        api.cancel(&zeta, &id, String::new()).await.unwrap_err(),
        api.stored_task(&zeta, &id).await.unwrap_err(),
    ] {
        assert!(matches!(&e, Error::NotFound(m) if *m == unknown), "{e:?}");
    }
    // zeta has no tool `echo`: its call names a tool of its own tenant.
    let e = Agent::submit(&api, &zeta, call("echo")).await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");

    let page = listing::Page::default();
    let mine = listing::task_query(&acme, "s", "", [], page, api.limits()).unwrap();
    let theirs = listing::task_query(&zeta, "s", "", [], page, api.limits()).unwrap();
    assert_eq!(api.list_tasks(&mine).await.unwrap().tasks.len(), 1);
    assert_eq!(api.list_tasks(&theirs).await.unwrap().total_size, 0);

    let cancelled = Agent::cancel_task(&api, &acme, &id).await.unwrap();
    assert_eq!(cancelled.task.state, TaskState::Cancelled);
    let waited = Agent::wait(&api, &acme, cancelled, Instant::now()).await;
    assert_eq!(waited.unwrap().task.state, TaskState::Cancelled);
}

#[tokio::test]
async fn the_submit_rate_is_checked_before_the_call() {
    let mut config = Config::default();
    config.limits.submits_per_second_per_token = 1;
    let (api, _worker) = api(config).await;
    let acme = agent("acme");
    Agent::submit(&api, &acme, call("echo")).await.unwrap();
    // Over the rate, even a call that names no possible tool hears of the
    // rate first (a call the bucket refilled for, after a stall of a
    // second, is refused for its name and takes the token); another token
    // has its own.
    let mut refused = Vec::new();
    for _ in 0..5 {
        match Agent::submit(&api, &acme, call("no tool!")).await {
            Err(Error::RateLimited { .. }) => break,
            other => refused.push(other.map(|_| ()).unwrap_err()),
        }
    }
    assert!(refused.len() < 5, "never rate-limited: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| matches!(e, Error::InvalidArgument(_))),
        "{refused:?}"
    );
    let e = Agent::submit(&api, &agent("zeta"), call("no tool!"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[tokio::test]
async fn session_streams_hold_a_slot_of_their_tenant_until_dropped() {
    let mut config = Config::default();
    config.limits.max_streams_per_tenant = 1;
    let (api, _worker) = api(config).await;
    let (acme, zeta) = (agent("acme"), agent("zeta"));
    let open = api.completions(&acme, "s", 0).await.unwrap();
    let e = api.session_events(&acme, "t", 0, true).await.err();
    assert!(matches!(e, Some(Error::ResourceExhausted(_))), "{e:?}");
    let _theirs = api.completions(&zeta, "s", 0).await.unwrap();
    drop(open);
    let mut events = api.session_events(&acme, "s", 0, true).await.unwrap();

    // The stream carries the session's completion once the task ends.
    let submitted = Agent::submit(&api, &acme, call("echo")).await.unwrap();
    let id = submitted.task.task.id.to_string();
    api.cancel(&acme, &id, "enough".into()).await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), events.next()).await;
    match next.expect("the completion within 30 s") {
        Some(Ok(crate::sessions::Event::Completion(c))) => {
            assert_eq!(
                (c.task_id, c.state),
                (submitted.task.task.id, TaskState::Cancelled)
            )
        }
        other => panic!("a completion, not {other:?}"),
    }
}
