//! The state's transitions on their own: no runtime, no store, a worker
//! that is a list of commands.
use std::{cell::RefCell, rc::Rc};

use super::*;
use crate::tenant;
use crate::{
    config::Limits,
    model::{ProgressReport, ToolDef, ToolKey},
};

struct Test;

impl Io for Test {
    type Tx = Rc<RefCell<Vec<Command>>>;
    type Timer = ();
    fn send(tx: &Self::Tx, command: Command) -> bool {
        tx.borrow_mut().push(command);
        true
    }
    fn assign(tx: &Self::Tx, assignment: Assignment, _: SystemTime) -> bool {
        Self::send(tx, Command::Assign(assignment))
    }
    fn stop(_: ()) {}
}

type Sent = Rc<RefCell<Vec<Command>>>;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn spec(name: &str) -> ToolSpec {
    let def = ToolDef {
        name: ToolKey::from_key(name),
        ..Default::default()
    };
    ToolSpec::new(&def, &Limits::default()).unwrap()
}

fn worker(st: &mut State<Test>, tools: &[&str], max: usize) -> (WorkerId, Sent) {
    let sent = Sent::default();
    let specs = tools.iter().map(|t| spec(t)).collect();
    let id = st.add_worker("w".into(), specs, max, sent.clone());
    st.start_worker(id, now());
    (id, sent)
}

fn queue(st: &mut State<Test>, session: &str, tool: &str) -> Uuid {
    queue_args(st, session, tool, "{}")
}

fn record(session: &str, tool: &str, arguments: &str) -> TaskRecord {
    TaskRecord {
        id: Uuid::new_v4(),
        session: session.into(),
        tool: tool.into(),
        arguments: arguments.into(),
        timeout: Duration::from_secs(5),
        queue_deadline: None,
        idempotency_key: None,
        created_at: now(),
        state: TaskState::Queued,
        attempts: 0,
        started_at: None,
        finished_at: None,
        outcome: None,
        seq: 0,
        delivery: Default::default(),
        call: Default::default(),
        notes: Default::default(),
        retry_of: None,
    }
}

fn queue_args(st: &mut State<Test>, session: &str, tool: &str, arguments: &str) -> Uuid {
    let mut task = record(session, tool, arguments);
    let held = st.reserve(&mut task);
    let id = task.id;
    assert!(st.enqueue(task, held));
    st.dispatch_tool(tool, now());
    id
}

fn assigned(sent: &Sent) -> Vec<(Uuid, u32)> {
    sent.borrow()
        .iter()
        .filter_map(|c| match c {
            Command::Assign(a) => Some((a.task_id, a.attempt)),
            Command::Cancel { .. }
            | Command::Registered { .. }
            | Command::RegisterRefused { .. } => None,
        })
        .collect()
}

fn lost(attempts: u32) -> Outcome {
    Outcome::error("worker_lost", format!("{attempts}"))
}

#[test]
fn pending_counts_follow_reserve_and_release_per_session_and_tenant() {
    let mut st = State::<Test>::default();
    let key = tenant::key("acme", "s");
    let (mut a, mut b) = (record(&key, "t", "{}"), record(&key, "t", "[1]"));
    let held_a = st.reserve(&mut a);
    let held_b = st.reserve(&mut b);
    assert!(
        Arc::ptr_eq(&a.session, &b.session),
        "one shared key per session"
    );
    assert_eq!((st.pending(&key), st.tenant_pending("acme")), (2, 2));
    assert_eq!(st.tenant_pending_bytes("acme"), 5);
    st.release(held_a);
    st.release(held_b);
    assert_eq!((st.pending(&key), st.tenant_pending("acme")), (0, 0));
    assert_eq!(st.tenant_pending_bytes("acme"), 0);
}

#[test]
fn argument_bytes_are_held_from_reserve_to_every_end_of_the_task() {
    let mut st = State::<Test>::default();
    let (w, _sent) = worker(&mut st, &["t"], 1);
    let key = tenant::key("acme", "s");
    let running = queue_args(&mut st, &key, "t", &format!("[{}]", "1".repeat(98)));
    let queued = queue_args(&mut st, &key, "t", "[22]");
    let other = queue_args(&mut st, &tenant::key("beta", "s"), "u", "[333]");
    assert_eq!(st.tenant_pending_bytes("acme"), 104);
    assert_eq!(st.tenant_pending_bytes("beta"), 5);
    // A task live already is not taken twice, and its reservation is given back.
    let mut twice = st.task(queued).unwrap().clone();
    let held = st.reserve(&mut twice);
    assert_eq!(st.tenant_pending_bytes("acme"), 108);
    assert!(!st.enqueue(twice, held));
    assert_eq!(st.tenant_pending_bytes("acme"), 104);
    // A lost worker's task is requeued, still held.
    drop(st.remove_worker(w, 3, lost, now()));
    assert_eq!(st.tenant_pending_bytes("acme"), 104);
    // Shared mode: handed back to the store, it is no longer held here.
    assert_eq!(st.unservable(&["u".into()]), [other]);
    assert_eq!(st.tenant_pending_bytes("beta"), 0);
    let outcome = || Outcome::error("x", "y");
    st.take(running, TaskState::Cancelled, outcome(), None, now())
        .unwrap();
    assert_eq!(st.tenant_pending_bytes("acme"), 4);
    st.take(queued, TaskState::TimedOut, outcome(), None, now())
        .unwrap();
    assert_eq!(st.tenant_pending_bytes("acme"), 0);
    assert_eq!(st.tenant_pending("acme"), 0);
}

#[test]
fn a_submit_past_the_tenant_s_argument_bytes_is_refused_saying_what_to_do() {
    use crate::{error::Error, model::SessionKey, scheduler::admission::check_room};
    let mut st = State::<Test>::default();
    let limits = Limits {
        max_pending_bytes_per_tenant: 10,
        ..Limits::default()
    };
    let key = tenant::key("acme", "s");
    let session = SessionKey::from_key(key.as_str());
    queue_args(&mut st, &key, "t", "[1,2,3]");
    assert!(check_room(&st, &session, 3, &limits, false).is_ok());
    let Err(Error::ResourceExhausted(message)) = check_room(&st, &session, 4, &limits, false)
    else {
        panic!("7 + 4 bytes is past 10")
    };
    assert_eq!(
        message,
        "your tenant's unfinished tasks hold 7 bytes of arguments, the limit is 10 \
         (--max-pending-bytes-per-tenant), and this call's are 4: wait for completions or \
         cancel some"
    );
    // Another tenant's bytes are its own.
    let beta = SessionKey::from_key(tenant::key("beta", "s").as_str());
    assert!(check_room(&st, &beta, 10, &limits, false).is_ok());
}

#[test]
fn a_queued_task_goes_to_a_worker_with_room_and_is_reported_dispatched() {
    let mut st = State::<Test>::default();
    let (_w, sent) = worker(&mut st, &["t"], 1);
    let first = queue(&mut st, "s", "t");
    let second = queue(&mut st, "s", "t");
    assert_eq!(assigned(&sent), [(first, 1)]);
    let effects = st.take_effects();
    assert_eq!(effects.dispatched.len(), 1);
    assert_eq!(
        (effects.dispatched[0].id, effects.dispatched[0].attempt),
        (first, 1)
    );
    assert_eq!(st.task(second).unwrap().state, TaskState::Queued);
    assert_eq!(st.running(), 1);
}

#[test]
fn taking_a_running_task_tells_its_worker_and_fills_the_slot() {
    let mut st = State::<Test>::default();
    let (w, sent) = worker(&mut st, &["t"], 1);
    let first = queue(&mut st, "s", "t");
    let second = queue(&mut st, "s", "t");
    let ended = st
        .take(
            first,
            TaskState::Cancelled,
            lost(1),
            Some("cancelled".into()),
            now(),
        )
        .unwrap();
    assert_eq!(
        (ended.finish.state, ended.finish.attempts),
        (TaskState::Cancelled, 1)
    );
    assert!(sent.borrow().contains(&Command::Cancel {
        task_id: first,
        reason: "cancelled".into()
    }));
    assert_eq!(assigned(&sent), [(first, 1), (second, 1)]);
    assert!(st.holds(w, second, 1) && !st.holds(w, first, 0));
    assert_eq!(st.pending("s"), 1);
}

#[test]
fn a_worker_takes_its_tools_in_turn_and_asks_for_more_when_idle() {
    let mut st = State::<Test>::default();
    let a = queue(&mut st, "s", "a");
    let b = queue(&mut st, "s", "b");
    let a2 = queue(&mut st, "s", "a");
    let (w, sent) = worker(&mut st, &["a", "b"], 3);
    assert_eq!(assigned(&sent), [(a, 1), (b, 1), (a2, 1)]);
    st.take_effects();
    st.take(
        a,
        TaskState::Succeeded,
        Outcome::Result("1".into()),
        None,
        now(),
    );
    assert!(
        st.take_effects().wants_work,
        "a free slot and nothing queued"
    );
    assert!(st.holds(w, b, 0));
}

#[test]
fn a_departed_worker_s_tasks_are_requeued_first_or_end_when_exhausted() {
    let mut st = State::<Test>::default();
    let (w1, _) = worker(&mut st, &["t"], 2);
    queue(&mut st, "s", "t");
    queue(&mut st, "s", "t");
    let waiting = queue(&mut st, "s", "t");
    let gone = st.remove_worker(w1, 1, lost, now()).unwrap();
    assert_eq!(gone.running, 2);
    assert_eq!(gone.ended.len(), 2, "max_attempts 1: both running end");
    assert!(gone.requeued.is_empty());
    let (w2, sent) = worker(&mut st, &["t"], 1);
    assert_eq!(assigned(&sent), [(waiting, 1)]);
    let gone = st.remove_worker(w2, 3, lost, now()).unwrap();
    assert_eq!(gone.requeued, [(waiting, 1)]);
    let (_w3, sent) = worker(&mut st, &["t"], 1);
    assert_eq!(assigned(&sent), [(waiting, 2)], "its place kept, attempt 2");
}

#[test]
fn nothing_is_dispatched_while_draining() {
    let mut st = State::<Test>::default();
    st.start_draining();
    let (_w, sent) = worker(&mut st, &["t"], 1);
    queue(&mut st, "s", "t");
    assert!(sent.borrow().is_empty());
    assert_eq!(st.running(), 0);
}

#[test]
fn queued_tasks_no_worker_here_serves_are_handed_out() {
    let mut st = State::<Test>::default();
    let (w, _) = worker(&mut st, &["t"], 1);
    queue(&mut st, "s", "t");
    let queued = queue(&mut st, "s", "t");
    assert!(!st.has_room_for("t") && st.serves("t"));
    st.remove_worker(w, 3, lost, now()).unwrap();
    let tools: Vec<Arc<str>> = vec!["t".into()];
    let out = st.unservable(&tools);
    assert_eq!(out.len(), 2);
    assert!(out.contains(&queued));
    assert_eq!((st.pending("s"), st.task_ids().len()), (0, 0));
}

#[test]
fn tools_are_listed_per_tenant_with_their_workers() {
    let mut st = State::<Test>::default();
    worker(
        &mut st,
        &[&tenant::key("acme", "b"), &tenant::key("acme", "a")],
        1,
    );
    worker(&mut st, &[&tenant::key("acme", "a")], 1);
    worker(&mut st, &["a"], 1);
    let listed: Vec<(String, u32)> = st
        .list_tools("acme")
        .into_iter()
        .map(|(s, n)| (s.name.to_string(), n))
        .collect();
    assert_eq!(listed, [("a".to_string(), 2), ("b".to_string(), 1)]);
    assert_eq!(st.tool_names(""), ["a"]);
}

mod forgetting {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn a_full_tenant_forgets_its_longest_unserved_tools_to_make_room() {
        let mut st = State::<Test>::default();
        let (a, _) = worker(&mut st, &["a", "b"], 1);
        let (c, _) = worker(&mut st, &["c"], 1);
        let (_d, _) = worker(&mut st, &["d"], 1);
        st.remove_worker(c, 3, lost, now());
        st.remove_worker(a, 3, lost, now() + Duration::from_secs(1));
        // "q" has no worker but a queued task: it is needed, never forgotten.
        let (q, _) = worker(&mut st, &["q"], 1);
        st.remove_worker(q, 3, lost, now());
        queue(&mut st, "s", "q");
        assert_eq!(st.tool_count(), 5);
        // Room for 2 new names under a cap of 5: "c" (unserved longest),
        // then one of "a"/"b" go; "d" (served) and "q" (needed) stay.
        let gone = st.make_room("", &keys(&["x", "y"]), 5).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(&*gone[0], "c");
        assert!(st.tools.contains_key("d") && st.tools.contains_key("q"));
        // Re-registering known names needs no room.
        assert!(st.make_room("", &keys(&["d"]), 3).unwrap().is_empty());
        // Nothing left to forget: refused with the count kept.
        st.make_room("", &keys(&["x", "y"]), 5).unwrap();
        let (_x, _) = worker(&mut st, &["x", "y"], 1);
        assert_eq!(st.make_room("", &keys(&["z"]), 3), Err(5));
    }

    #[test]
    fn unserved_tools_are_forgotten_after_the_retention_unless_needed() {
        let mut st = State::<Test>::default();
        let (a, _) = worker(&mut st, &["a", "q"], 1);
        let (_b, _) = worker(&mut st, &["b"], 1);
        st.remove_worker(a, 3, lost, now());
        queue(&mut st, "s", "q");
        let hour = Duration::from_secs(3600);
        assert!(st.forget_unserved(hour, now() + hour / 2).is_empty());
        assert_eq!(st.forget_unserved(hour, now() + hour), keys(&["a"]));
        assert!(st.tools.contains_key("q") && st.tools.contains_key("b"));
        // Needed and served tools stay however long.
        assert!(st.forget_unserved(hour, now() + hour * 10).is_empty());
    }
}

fn report(id: Uuid, attempt: u32, detail: &str) -> ProgressReport {
    ProgressReport {
        task_id: id,
        attempt,
        progress: 1.0,
        total: 5.0,
        message: "working".into(),
        detail_json: detail.into(),
    }
}

fn resume_of(sent: &Sent, id: Uuid, attempt: u32) -> Option<Arc<str>> {
    sent.borrow().iter().find_map(|c| match c {
        Command::Assign(a) if a.task_id == id && a.attempt == attempt => {
            Some(a.resume_detail.clone())
        }
        _ => None,
    })?
}

#[test]
fn progress_is_taken_from_the_holder_only_numbered_across_attempts_and_resumed() {
    let mut st = State::<Test>::default();
    let (w1, _) = worker(&mut st, &["t"], 1);
    let id = queue(&mut st, "s", "t");
    let (w2, sent) = worker(&mut st, &["t"], 1);
    assert!(
        st.record_progress(w2, report(id, 0, ""), now()).is_none(),
        "not its task"
    );
    assert!(
        st.record_progress(w1, report(id, 2, ""), now()).is_none(),
        "not its attempt"
    );
    let first = st
        .record_progress(w1, report(id, 1, r#"{"page":3}"#), now())
        .unwrap();
    let second = st.record_progress(w1, report(id, 0, ""), now()).unwrap();
    assert_eq!((first.index, second.index), (1, 2));
    assert_eq!(st.session_progress("s"), std::slice::from_ref(&second));
    assert_eq!(st.progress_of(id), Some(second));
    // The worker is lost: the run's progress goes, its last detail reaches
    // the next attempt (on the idle second worker).
    drop(st.remove_worker(w1, 3, lost, now()));
    assert!(st.holds(w2, id, 2));
    assert_eq!(resume_of(&sent, id, 2).as_deref(), Some(r#"{"page":3}"#));
    assert!(st.progress_of(id).is_none() && st.session_progress("s").is_empty());
    let third = st.record_progress(w2, report(id, 2, ""), now()).unwrap();
    assert_eq!(third.index, 3, "the index keeps rising across attempts");
    st.take(
        id,
        TaskState::Succeeded,
        Outcome::Result("1".into()),
        None,
        now(),
    );
    assert!(st.session_progress("s").is_empty() && st.progress_of(id).is_none());
    assert!(
        st.record_progress(w2, report(id, 0, ""), now()).is_none(),
        "ended"
    );
}

#[test]
fn a_task_handed_back_and_claimed_again_keeps_its_progress_count_and_detail() {
    let mut st = State::<Test>::default();
    let (w1, _) = worker(&mut st, &["t"], 1);
    let id = queue(&mut st, "s", "t");
    let task = st.task(id).unwrap().clone();
    st.record_progress(w1, report(id, 0, r#"{"page":7}"#), now())
        .unwrap();
    drop(st.remove_worker(w1, 3, lost, now()));
    // Shared mode: no worker here serves it, so it goes back to the store.
    assert_eq!(st.unservable(&["t".into()]), [id]);
    assert!(st.task(id).is_none());
    // Claimed again later, for a new worker.
    let mut task = task;
    let held = st.reserve(&mut task);
    assert!(st.enqueue(task, held));
    let (w2, sent) = worker(&mut st, &["t"], 1);
    assert_eq!(resume_of(&sent, id, 2).as_deref(), Some(r#"{"page":7}"#));
    let next = st.record_progress(w2, report(id, 0, ""), now()).unwrap();
    assert_eq!(next.index, 2, "the count went with it");
}

/// Shared mode: the room a server claims from the store's queue for and
/// the room a submit takes here never count one free slot twice.
mod room {
    use std::collections::HashSet;

    use super::*;

    fn plan(st: &mut State<Test>, skip: &[&str]) -> Vec<(Arc<str>, Reservation)> {
        let skip: HashSet<Arc<str>> = skip.iter().map(|t| Arc::from(*t)).collect();
        st.reserve_claims(&skip)
    }

    fn sizes(plan: &[(Arc<str>, Reservation)]) -> Vec<(&str, usize)> {
        plan.iter().map(|(t, r)| (&**t, r.len())).collect()
    }

    fn give_back(st: &mut State<Test>, plan: Vec<(Arc<str>, Reservation)>) {
        for (_, room) in plan {
            st.release_room(room, now());
        }
    }

    /// The e2e flake: a claim in flight while a submit came in; both took
    /// the one slot and the claimed task waited here, counted nowhere.
    #[test]
    fn a_slot_held_for_a_claim_in_flight_is_not_offered_to_a_submit_nor_claimed_again() {
        let mut st = State::<Test>::default();
        worker(&mut st, &["t"], 1);
        let claim = plan(&mut st, &[]);
        assert_eq!(sizes(&claim), [("t", 1)]);
        assert!(st.reserve_room("t").is_none(), "no room for a submit now");
        assert!(
            st.claims_hold_room_for("t"),
            "but it may wait for the claim"
        );
        assert!(plan(&mut st, &[]).is_empty(), "no second claim for it");
        give_back(&mut st, claim);
        let submit = st.reserve_room("t").expect("room again once given back");
        assert!(
            !st.claims_hold_room_for("t"),
            "a submit's slot is not a claim's"
        );
        assert!(
            st.reserve_room("t").is_none(),
            "a second submit meanwhile queues in the store, not here"
        );
        assert!(
            plan(&mut st, &[]).is_empty(),
            "the submit's slot is held too"
        );
        st.release_room(submit, now());
        assert_eq!(sizes(&plan(&mut st, &[])), [("t", 1)]);
    }

    #[test]
    fn a_worker_serving_several_tools_counts_each_slot_for_one_tool() {
        let mut st = State::<Test>::default();
        worker(&mut st, &["a", "b"], 2);
        worker(&mut st, &["b"], 1);
        let first = plan(&mut st, &[]);
        assert_eq!(sizes(&first), [("a", 2), ("b", 1)], "3 slots, not 5");
        give_back(&mut st, first);
        // The next round starts with the other tool, so neither starves.
        let second = plan(&mut st, &[]);
        assert_eq!(sizes(&second), [("b", 3)]);
        give_back(&mut st, second);
        // A tool the store had no more of leaves its slots to the others.
        assert_eq!(sizes(&plan(&mut st, &["b"])), [("a", 2)]);
    }

    #[test]
    fn running_tasks_take_room_and_a_draining_server_claims_nothing() {
        let mut st = State::<Test>::default();
        worker(&mut st, &["t"], 2);
        queue(&mut st, "s", "t");
        assert_eq!(sizes(&plan(&mut st, &[])), [("t", 1)]);
        let mut st = State::<Test>::default();
        worker(&mut st, &["t"], 2);
        st.start_draining();
        assert!(plan(&mut st, &[]).is_empty());
        assert!(st.reserve_room("t").is_none());
    }

    #[test]
    fn giving_room_back_dispatches_what_waits_for_it_and_a_gone_worker_holds_nothing() {
        let mut st = State::<Test>::default();
        let (_, sent) = worker(&mut st, &["t"], 1);
        let held = st.reserve_room("t").unwrap();
        let waiting = queue(&mut st, "s", "t");
        assert!(assigned(&sent).is_empty(), "the slot is held");
        st.take_effects();
        st.release_room(held, now());
        assert_eq!(assigned(&sent), [(waiting, 1)]);
        assert!(
            !st.take_effects().wants_work,
            "no claim for room given back"
        );
        let (w2, _) = worker(&mut st, &["u"], 1);
        let held = st.reserve_room("u").unwrap();
        drop(st.remove_worker(w2, 3, lost, now()));
        st.release_room(held, now());
        assert!(plan(&mut st, &[]).is_empty(), "w is busy, w2 is gone");
    }
}

/// A dispatch the store could not record is taken back: its attempt not
/// spent, the task first in its queue, the worker kept; nothing is
/// dispatched while held, and the release hands it out again as attempt 1.
#[test]
fn an_unrecorded_dispatch_is_taken_back_and_held_until_released() {
    let mut st = State::<Test>::default();
    let (w, sent) = worker(&mut st, &["t"], 1);
    let first = queue(&mut st, "s", "t");
    let second = queue(&mut st, "s", "t");
    assert_eq!(assigned(&sent), [(first, 1)]);
    sent.borrow_mut().clear();
    assert!(st.unassign(w, first, 1));
    assert!(st.hold_dispatch());
    assert!(!st.hold_dispatch(), "held once");
    let task = st.task(first).unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Queued, 0));
    assert!(!st.unassign(w, first, 1), "taken back once");
    // Held: the free slot takes nothing, neither now nor on a new task.
    queue(&mut st, "s", "t");
    assert!(sent.borrow().is_empty());
    assert_eq!(st.running(), 0);
    st.release_dispatch(now());
    assert_eq!(assigned(&sent), [(first, 1)], "its place kept, attempt 1");
    assert_ne!(first, second);
}
