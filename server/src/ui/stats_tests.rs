//! What the dashboard remembers, and its bounds per tenant.
use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn event(kind: ActivityKind, id: Uuid, session: &str, secs: u64) -> Activity {
    Activity {
        kind,
        task_id: id,
        session: session.into(),
        tool: "t".into(),
        at: at(secs),
    }
}

fn finished(state: TaskState, seq: u64, run_ms: u64) -> ActivityKind {
    ActivityKind::Finished {
        state,
        seq,
        run: Some(Duration::from_millis(run_ms)),
    }
}

/// A finish of tool key `tool` in session key `session`.
fn finish_of(tool: &str, session: &str, secs: u64) -> Activity {
    Activity {
        tool: tool.into(),
        ..event(
            finished(TaskState::Succeeded, 1, 5),
            Uuid::new_v4(),
            session,
            secs,
        )
    }
}

#[test]
fn one_tenants_tool_churn_neither_blanks_another_tenant_nor_its_own_new_tools() {
    let s = Stats::default();
    s.observe(&finish_of("t1\u{1f}kept", "t1\u{1f}s", 0));
    for i in 0..2000 {
        s.observe(&finish_of(&format!("t2\u{1f}churn{i}"), "t2\u{1f}s", 1));
    }
    s.observe(&finish_of("t3\u{1f}new", "t3\u{1f}s", 2));
    for tool in ["t1\u{1f}kept", "t2\u{1f}churn1999", "t3\u{1f}new"] {
        assert_eq!(s.tool(tool, at(10)).succeeded, 1, "{tool}");
    }
    assert_eq!(s.tool("t2\u{1f}churn0", at(10)).succeeded, 0, "evicted");
}

#[test]
fn one_tenants_sessions_and_tasks_do_not_evict_anothers() {
    let s = Stats::default();
    let mine = Uuid::new_v4();
    let started = ActivityKind::Started {
        attempt: 1,
        worker_id: 7,
        worker_name: "w".into(),
    };
    s.observe(&event(started.clone(), mine, "t1\u{1f}s", 0));
    for i in 0..3000u64 {
        s.observe(&event(
            started.clone(),
            Uuid::new_v4(),
            &format!("t2\u{1f}s{i}"),
            1 + i,
        ));
    }
    assert_eq!(s.sessions(Some("t1"), usize::MAX).len(), 1);
    assert_eq!(s.attempts(mine).len(), 1);
    assert!(s.sessions(Some("t2"), usize::MAX).len() <= 500);
}

#[test]
fn counts_the_last_hour_and_percentiles_of_runs() {
    let s = Stats::default();
    for i in 1..=100 {
        s.observe(&event(
            finished(TaskState::Succeeded, i, i),
            Uuid::new_v4(),
            "a",
            0,
        ));
    }
    s.observe(&event(
        finished(TaskState::Failed, 101, 5),
        Uuid::new_v4(),
        "a",
        0,
    ));
    s.observe(&event(
        finished(TaskState::Cancelled, 102, 5),
        Uuid::new_v4(),
        "a",
        0,
    ));
    let now = s.tool("t", at(10));
    assert_eq!((now.succeeded, now.failed), (100, 1));
    assert_eq!(now.p50, Some(Duration::from_millis(50)));
    assert_eq!(now.p99, Some(Duration::from_millis(99)));
    let later = s.tool("t", at(3700));
    assert_eq!(
        later,
        ToolSummary::default(),
        "an hour later nothing counts"
    );
    assert_eq!(s.tool("other", at(10)), ToolSummary::default());
}

#[test]
fn sessions_attempts_and_depth_are_remembered_and_bounded() {
    let s = Stats::default();
    let id = Uuid::new_v4();
    let started = |attempt| ActivityKind::Started {
        attempt,
        worker_id: 7,
        worker_name: "w".into(),
    };
    s.observe(&event(ActivityKind::Submitted, id, "t1\u{1f}old", 0));
    s.observe(&event(started(1), id, "t1\u{1f}s", 1));
    s.observe(&event(started(2), id, "t1\u{1f}s", 2));
    s.observe(&event(
        finished(TaskState::Succeeded, 4, 9),
        id,
        "t1\u{1f}s",
        3,
    ));
    s.observe(&event(
        ActivityKind::Acked { up_to_seq: 3 },
        Uuid::nil(),
        "t1\u{1f}s",
        4,
    ));
    let attempts = s.attempts(id);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].finished_at, None, "replaced by attempt 2");
    assert_eq!(attempts[1].state, Some(TaskState::Succeeded));
    let sessions = s.sessions(Some("t1"), 10);
    assert_eq!(sessions[0].session.as_ref(), "t1\u{1f}s");
    assert_eq!((sessions[0].last_seq, sessions[0].acked_seq), (4, 3));
    assert_eq!(sessions.len(), 2);
    assert!(s.sessions(Some("t2"), 10).is_empty());
    for i in 0..(SESSIONS_KEPT as u64 + 10) {
        s.observe(&event(
            ActivityKind::Submitted,
            id,
            &format!("x{i}"),
            10 + i,
        ));
    }
    assert_eq!(s.sessions(Some(""), usize::MAX).len(), SESSIONS_PER_TENANT);
    assert_eq!(s.sessions(Some("t1"), usize::MAX).len(), 2, "not evicted");

    let depth: HashMap<Arc<str>, (usize, usize)> = [
        (Arc::from("t1\u{1f}a"), (3, 1)),
        (Arc::from("t1\u{1f}b"), (1, 0)),
        (Arc::from("t2\u{1f}a"), (5, 2)),
    ]
    .into();
    for i in 0..(DEPTH_SAMPLES as u64 + 5) {
        s.sample(&depth, at(i));
    }
    let t1 = s.depth(Some("t1"));
    assert_eq!(t1.len(), DEPTH_SAMPLES);
    assert_eq!((t1[0].1, t1[0].2), (4, 1));
    assert_eq!((s.depth(None)[0].1, s.depth(None)[0].2), (9, 3));
}
