//! The behaviour every [`SharedQueue`] keeps, written against the traits with
//! two servers on one store (`a` and `b`), and run for each engine that
//! offers one (today PostgreSQL; see `for_each_shared_store!` at the bottom).
use uuid::Uuid;

use super::{at, barrier, finish_seq, insert_new, succeed, task};
use crate::model::{TaskState, codes};
use crate::store::{SharedQueue, Store, StoredTool, ToolAdvert};

fn shared(store: &dyn Store) -> &dyn SharedQueue {
    store.shared().expect("a store shared by several servers")
}

fn advert(name: &str, timeout_ms: Option<u64>, workers: u32) -> ToolAdvert {
    ToolAdvert {
        name: name.into(),
        description: format!("{name}: looks things up"),
        input_schema: r#"{"type":"object"}"#.into(),
        default_timeout_ms: timeout_ms,
        workers,
    }
}

async fn claims_are_exclusive_and_come_back_queued(a: &dyn Store, b: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(a, &t).await;
    assert!(shared(a).claim("search", 0).await.unwrap().is_empty());
    let claimed = shared(a).claim("search", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, t.id);
    assert_eq!(
        claimed[0].state,
        TaskState::Queued,
        "a claim is not a dispatch"
    );
    assert_eq!(claimed[0].attempts, 0);
    assert!(shared(b).claim("search", 10).await.unwrap().is_empty());
    assert!(shared(a).claim("other-tool", 10).await.unwrap().is_empty());
}

async fn release_gives_claims_back_to_any_server(a: &dyn Store, b: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(a, &t).await;
    assert_eq!(shared(a).claim("search", 10).await.unwrap().len(), 1);
    shared(a).release(Vec::new()).await.unwrap();
    assert!(shared(b).claim("search", 10).await.unwrap().is_empty());
    shared(a).release(vec![t.id]).await.unwrap();
    let again = shared(b).claim("search", 10).await.unwrap();
    assert_eq!(again.iter().map(|t| t.id).collect::<Vec<_>>(), [t.id]);
}

async fn renew_keeps_only_this_servers_claims(a: &dyn Store, b: &dyn Store) {
    let (t1, t2) = (task("s1", None, at(1)), task("s2", None, at(2)));
    insert_new(a, &t1).await;
    insert_new(a, &t2).await;
    let mine: Vec<Uuid> = (shared(a).claim("search", 10).await.unwrap())
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(shared(a).renew(&[]).await.unwrap().is_empty());
    assert!(
        shared(b).renew(&mine).await.unwrap().is_empty(),
        "b holds none of a's claims"
    );
    // A task finished meanwhile is no longer held.
    finish_seq(b, &succeed(&t1, at(3))).await;
    assert_eq!(shared(a).renew(&mine).await.unwrap(), [t2.id]);
}

async fn cancel_finishes_a_task_another_server_holds(a: &dyn Store, b: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(a, &t).await;
    assert_eq!(shared(a).claim("search", 10).await.unwrap().len(), 1);
    a.record_dispatch(t.id, 1, at(2));
    barrier(a).await;
    let c = (shared(b).cancel(t.id, "not needed").await.unwrap()).expect("cancelled through b");
    assert_eq!(c.task_id, t.id);
    assert_eq!(c.seq, 1);
    assert_eq!(c.state, TaskState::Cancelled);
    assert_eq!(c.attempts, 1, "the attempts made so far are kept");
    assert!(
        matches!(&c.outcome, crate::model::Outcome::Error { code, message }
            if code == codes::CANCELLED && message == "cancelled by the client: not needed"),
        "the reason is kept: {:?}",
        c.outcome
    );
    assert!(shared(a).cancel(t.id, "").await.unwrap().is_none(), "once");
    assert!(
        shared(a)
            .cancel(Uuid::new_v4(), "")
            .await
            .unwrap()
            .is_none()
    );
    assert!(a.finish_task(&succeed(&t, at(3))).await.unwrap().is_none());
    let stored = b.get_task(t.id).await.unwrap().expect("kept");
    assert_eq!(stored.state, TaskState::Cancelled);
}

async fn tools_are_advertised_to_the_other_servers(a: &dyn Store, b: &dyn Store) {
    shared(a)
        .publish_tools(vec![
            advert("search", Some(1_500), 2),
            advert("fetch", None, 1),
        ])
        .await
        .unwrap();
    assert!(
        shared(a).remote_tools().await.unwrap().is_empty(),
        "a server's own tools are not remote to it"
    );
    shared(b)
        .publish_tools(vec![advert("search", Some(1_500), 3)])
        .await
        .unwrap();
    let seen_by_b = shared(b).remote_tools().await.unwrap();
    assert_eq!(
        seen_by_b,
        [advert("fetch", None, 1), advert("search", Some(1_500), 2)]
    );
    assert_eq!(
        shared(a).remote_tools().await.unwrap(),
        [advert("search", Some(1_500), 3)]
    );
    // Publishing replaces the server's list; withdrawing empties it.
    shared(a)
        .publish_tools(vec![advert("fetch", None, 4)])
        .await
        .unwrap();
    assert_eq!(
        shared(b).remote_tools().await.unwrap(),
        [advert("fetch", None, 4)]
    );
    shared(a).withdraw_tools().await.unwrap();
    assert!(shared(b).remote_tools().await.unwrap().is_empty());
}

/// One definition per tool across the servers: `register_tools` refuses a
/// definition that differs from the stored one while another live server's
/// workers serve the tool (returning the stored one, writing nothing), and
/// advertises the tool for this server when it accepts; `put_tools` never
/// replaces such a definition either. Once no other server serves the tool,
/// a new definition replaces it.
async fn one_definition_per_tool_while_any_server_serves_it(a: &dyn Store, b: &dyn Store) {
    let (search, fetch) = super::tools::definitions();
    let different = StoredTool {
        description: "Different".into(),
        input_schema: r#"{"type":"object","required":["zzz"]}"#.into(),
        ..search.clone()
    };
    let accepted = shared(a)
        .register_tools(&[search.clone(), fetch.clone()])
        .await
        .unwrap();
    assert!(accepted.is_empty(), "{accepted:?}");
    // A's registration advertises its tools at once, before its publisher runs.
    let seen_by_b: Vec<String> = shared(b)
        .remote_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(seen_by_b, [fetch.name.clone(), search.name.clone()]);
    // Through B: refused whole, the stored definition returned.
    let refused = shared(b)
        .register_tools(&[different.clone(), fetch.clone()])
        .await
        .unwrap();
    assert_eq!(refused, std::slice::from_ref(&search));
    assert_eq!(b.tools().await.unwrap(), [fetch.clone(), search.clone()]);
    // The upkeep's writes do not replace it either.
    b.put_tools(std::slice::from_ref(&different)).await.unwrap();
    assert_eq!(a.tools().await.unwrap(), [fetch.clone(), search.clone()]);
    // The same definition is welcome on B.
    assert!(
        shared(b)
            .register_tools(std::slice::from_ref(&search))
            .await
            .unwrap()
            .is_empty()
    );
    // A's own advert does not hold A back: its local registry decides there.
    shared(b).withdraw_tools().await.unwrap();
    assert!(
        shared(a)
            .register_tools(std::slice::from_ref(&different))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.tools().await.unwrap(), [fetch.clone(), different.clone()]);
    // A's workers left: nothing serves the tool, and B replaces it.
    shared(a).publish_tools(Vec::new()).await.unwrap();
    assert!(
        shared(b)
            .register_tools(std::slice::from_ref(&search))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.tools().await.unwrap(), [fetch.clone(), search.clone()]);
    let refused = shared(a)
        .register_tools(std::slice::from_ref(&different))
        .await
        .unwrap();
    assert_eq!(refused, std::slice::from_ref(&search));
    // A forgets the tool (none of its workers serves it, no task needs it):
    // the definition B's workers serve stays, so a different one is still
    // refused. It was deleted, and the next registration took the tool as new.
    a.forget_tools(std::slice::from_ref(&search.name))
        .await
        .unwrap();
    assert_eq!(a.tools().await.unwrap(), [fetch.clone(), search.clone()]);
    let refused = shared(a).register_tools(&[different]).await.unwrap();
    assert_eq!(refused, [search]);
}

async fn last_seqs_reports_each_session_that_has_one(a: &dyn Store, b: &dyn Store) {
    for (session, n) in [("s1", 2), ("s2", 1)] {
        for i in 0..n {
            let t = task(session, None, at(i));
            insert_new(a, &t).await;
            finish_seq(b, &succeed(&t, at(10 + i))).await;
        }
    }
    let sessions = ["s1", "s2", "s3"].map(String::from);
    let mut seqs = shared(b).last_seqs(&sessions).await.unwrap();
    seqs.sort();
    assert_eq!(seqs, [("s1".to_string(), 2), ("s2".to_string(), 1)]);
    assert!(shared(a).last_seqs(&[]).await.unwrap().is_empty());
}

/// Declares one `#[tokio::test]` per listed behaviour and shared engine,
/// each on two stores (two servers) over one fresh database.
macro_rules! for_each_shared_store {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            use crate::store::postgres::{PostgresOptions, PostgresStore};

            async fn open(url: &str) -> PostgresStore {
                PostgresStore::connect(url, PostgresOptions::default()).await.unwrap()
            }

            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = crate::store::tests::pg_database().await else {
                        return;
                    };
                    let (a, b) = (open(&url).await, open(&url).await);
                    assert_ne!(
                        crate::store::SharedQueue::server_id(&a),
                        crate::store::SharedQueue::server_id(&b)
                    );
                    super::$name(&a, &b).await;
                }
            )*
        }
    };
}

for_each_shared_store! {
    claims_are_exclusive_and_come_back_queued,
    release_gives_claims_back_to_any_server,
    renew_keeps_only_this_servers_claims,
    cancel_finishes_a_task_another_server_holds,
    tools_are_advertised_to_the_other_servers,
    one_definition_per_tool_while_any_server_serves_it,
    last_seqs_reports_each_session_that_has_one,
}
