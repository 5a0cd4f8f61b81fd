//! The tool registry: [`Store::tools`], [`Store::put_tools`] and
//! [`Store::forget_tools`].
use super::at;
use crate::store::{Store, StoredTool};

/// Two definitions as a worker registers them: one with every field set,
/// one of another tenant with none.
pub(in crate::store) fn definitions() -> (StoredTool, StoredTool) {
    let search = StoredTool {
        name: "search".into(),
        description: "Searches the web; quotes \"kept\", accents é kept".into(),
        input_schema: r#"{"type":"object","properties":{"q":{"type":"string"}}}"#.into(),
        timeout_ms: 30_500,
        queue_timeout_ms: 90_250,
        last_served_at: at(10),
    };
    let fetch = StoredTool {
        name: "acme\u{1f}fetch".into(),
        description: String::new(),
        input_schema: String::new(),
        timeout_ms: 0,
        queue_timeout_ms: 0,
        last_served_at: at(5),
    };
    (search, fetch)
}

pub(in crate::store) async fn tool_definitions_round_trip_replace_and_forget(store: &dyn Store) {
    assert!(store.tools().await.unwrap().is_empty());
    let (search, fetch) = definitions();
    store
        .put_tools(&[search.clone(), fetch.clone()])
        .await
        .unwrap();
    // By name: the tenant's separator (0x1f) sorts before letters.
    assert_eq!(
        store.tools().await.unwrap(),
        vec![fetch.clone(), search.clone()]
    );

    // A new definition replaces the stored one; the time it was last
    // served never moves back.
    let replaced = StoredTool {
        description: "Searches the web, in French".into(),
        input_schema: String::new(),
        timeout_ms: 10_000,
        queue_timeout_ms: 0,
        last_served_at: at(7),
        ..search.clone()
    };
    store
        .put_tools(std::slice::from_ref(&replaced))
        .await
        .unwrap();
    let kept_time = StoredTool {
        last_served_at: at(10),
        ..replaced.clone()
    };
    assert_eq!(
        store.tools().await.unwrap(),
        vec![fetch.clone(), kept_time.clone()]
    );
    let later = StoredTool {
        last_served_at: at(20),
        ..replaced.clone()
    };
    store.put_tools(std::slice::from_ref(&later)).await.unwrap();
    assert_eq!(
        store.tools().await.unwrap(),
        vec![fetch.clone(), later.clone()]
    );

    // Forgetting removes only the named ones that exist.
    let removed = store
        .forget_tools(&["search".into(), "unknown".into()])
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(store.tools().await.unwrap(), vec![fetch]);
    assert_eq!(store.forget_tools(&[]).await.unwrap(), 0);
    store.put_tools(&[]).await.unwrap();
}
