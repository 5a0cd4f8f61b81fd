//! The tool registry's stored copy: a known tool outlives a restart, a
//! replaced definition replaces the stored one, and forgetting a tool
//! deletes it from the store too.
use std::time::{Duration, SystemTime};

use super::*;
use crate::{
    model::{Registration, ToolDef, ToolKey},
    store::StoredTool,
};

fn described(name: &str, description: &str) -> ToolDef {
    ToolDef {
        name: ToolKey::new("", name),
        description: description.into(),
        input_schema_json: r#"{"type":"object"}"#.into(),
        timeout_ms: 5_000,
        queue_timeout_ms: 60_000,
        ..Default::default()
    }
}

async fn register(core: &Core, tools: Vec<ToolDef>) -> Result<(WorkerId, Commands), Error> {
    let (tx, rx) = mpsc::channel(64);
    let register = Registration {
        worker_name: "w".into(),
        tools,
        max_concurrency: 1,
    };
    let id = core.register(register, tx).await?;
    let rx = Commands {
        registered: VecDeque::from([convert::registered_within(id, 0)]),
        rx,
    };
    Ok((id, rx))
}

#[tokio::test]
async fn a_known_tool_outlives_a_restart_and_takes_calls_until_a_worker_comes() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let before = Core::new(Config::default(), store.clone());
    let (w, _rx) = register(&before, vec![described("t", "Looks things up")])
        .await
        .unwrap();
    before.worker_gone(w).await;
    let stored = store.tools().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].name.as_str(), stored[0].description.as_str()),
        ("t", "Looks things up")
    );
    assert_eq!(
        (stored[0].timeout_ms, stored[0].queue_timeout_ms),
        (5_000, 60_000)
    );
    drop(before);

    let after = Core::new(Config::default(), store.clone());
    assert_eq!(after.load_tools().await.unwrap(), 1);
    let listed = after.list_tools("");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.name.name(), listed[0].1), ("t", 0));
    assert_eq!(listed[0].0.queue_timeout, Some(Duration::from_secs(60)));
    let (task, _) = after.submit(submit_request("s", "t")).await.unwrap();
    assert_eq!(task.state, TaskState::Queued);
    // The tool's own queue timeout, from its stored definition.
    assert_eq!(
        task.queue_deadline,
        Some(task.created_at + Duration::from_secs(60))
    );
    let (_w, mut rx) = worker(&after, &["t"], 1).await;
    assert_eq!(assignment(&mut rx).task_id, task.id.to_string());
}

#[tokio::test]
async fn a_new_definition_with_no_worker_serving_replaces_the_stored_one() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let core = Core::new(Config::default(), store.clone());
    let (w, _rx) = register(&core, vec![described("t", "old")]).await.unwrap();
    // Served: a different definition is refused, and the stored one stays.
    let refused = register(&core, vec![described("t", "new")]).await;
    assert!(
        matches!(&refused, Err(Error::FailedPrecondition(m)) if m.contains("description")),
        "{:?}",
        refused.err()
    );
    assert_eq!(store.tools().await.unwrap()[0].description, "old");
    core.worker_gone(w).await;
    register(&core, vec![described("t", "new")]).await.unwrap();
    let stored = store.tools().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].description, "new");
}

#[tokio::test]
async fn a_forgotten_tool_is_deleted_from_the_store() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    // Last served two days ago: past the default retention of one day.
    let long_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let old = |name: &str, at| StoredTool {
        name: name.into(),
        description: String::new(),
        input_schema: String::new(),
        timeout_ms: 0,
        queue_timeout_ms: 0,
        policy: String::new(),
        last_served_at: at,
    };
    store
        .put_tools(&[old("stale", long_ago), old("recent", SystemTime::now())])
        .await
        .unwrap();
    let core = Core::new(Config::default(), store.clone());
    assert_eq!(core.load_tools().await.unwrap(), 2);
    core.registry_upkeep().await;
    let names: Vec<String> = store
        .tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["recent"]);
    let listed: Vec<String> = (core.list_tools("").iter())
        .map(|(s, _)| s.name.name().to_string())
        .collect();
    assert_eq!(listed, ["recent"]);
}

/// An idempotent repeat gets its task even when its tool is not known here
/// (forgotten, or never stored): the store is asked by key; a new call to
/// the unknown tool is NOT_FOUND.
#[tokio::test]
async fn a_repeat_to_a_tool_unknown_here_is_answered_from_the_store() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let before = Core::new(Config::default(), store.clone());
    let (_w, _rx) = worker(&before, &["t"], 1).await;
    let mut keyed = submit_request("s", "t");
    keyed.idempotency_key = "k1".into();
    let (first, _) = before.submit(keyed.clone()).await.unwrap();
    drop(before);

    // Its registry not loaded: `t` is unknown to this scheduler.
    let after = Core::new(Config::default(), store.clone());
    let (again, repeated) = after.submit(keyed.clone()).await.unwrap();
    assert!(repeated);
    assert_eq!(again.id, first.id);
    // Blank arguments mean `{}` here as at admission, whatever the blank.
    for blank in ["", " \n\t "] {
        let mut retry = keyed.clone();
        retry.arguments_json = blank.into();
        let (again, repeated) = after.submit(retry).await.unwrap();
        assert!(repeated && again.id == first.id, "{blank:?}");
    }
    let mut other = submit_request("s", "t");
    other.idempotency_key = "k2".into();
    assert!(matches!(
        after.submit(other).await,
        Err(Error::NotFound(m)) if m.contains("unknown tool")
    ));
}
