//! Finishing tasks inside a transaction: each finish takes its session's next
//! seq, at most once per task.
use std::collections::HashMap;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::rows::{exec, notify_left_queue, rows, task_from_row};
use super::writer::Guard;
use crate::model::{CompletionRecord, Finish, TaskRecord, TaskState};
use crate::store::StoreError;
use crate::store::sql::call_columns;
use crate::store::sql::codec::{TASK_COLUMNS, outcome_columns, state_code, time_to_i64};

/// Finishes tasks in `tx`: each gets its session's next seq, at most once.
/// Returns each finish's completion (`None`: unknown, finished, or stale).
pub(super) async fn finish_in(
    tx: &Transaction<'_>,
    finishes: &[(Finish, Guard)],
) -> Result<Vec<Option<CompletionRecord>>, StoreError> {
    if finishes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = finishes.iter().map(|(f, _)| f.task_id).collect();
    // Fallback runs go whether or not their call was still open: a run left
    // behind would be claimed again.
    let drops: Vec<Uuid> = finishes
        .iter()
        .filter_map(|(f, _)| f.notes.drop_run)
        .collect();
    // Tasks that leave the shared queue here: dropped or ended while queued.
    let mut unqueued: Vec<Uuid> = Vec::new();
    if !drops.is_empty() {
        unqueued = rows(
            tx,
            "DELETE FROM errand_tasks WHERE id = ANY($1) RETURNING id, state",
            &[&drops],
        )
        .await?
        .iter()
        .filter(|r| r.get::<_, i16>(1) == state_code(TaskState::Queued))
        .map(|r| r.get(0))
        .collect();
    }
    // Task rows first, in id order, then session rows in name order: one
    // lock order for every server.
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = ANY($1) AND state < 2
         ORDER BY id FOR UPDATE"
    );
    let mut open: HashMap<Uuid, TaskRecord> = rows(tx, &sql, &[&ids])
        .await?
        .iter()
        .map(|r| task_from_row(r).map(|t| (t.id, t)))
        .collect::<Result<_, _>>()?;
    let mut accepted: Vec<Option<(TaskRecord, Finish)>> = Vec::with_capacity(finishes.len());
    for (finish, guard) in finishes {
        let ok = open.get(&finish.task_id).is_some_and(|t| match guard {
            Guard::Attempt => !(t.state == TaskState::Running && t.attempts > finish.attempts),
            Guard::Any | Guard::Cancel => true,
            Guard::Queued => t.state == TaskState::Queued,
        });
        accepted.push(if ok {
            open.remove(&finish.task_id).map(|t| {
                let mut f = finish.clone();
                if matches!(guard, Guard::Cancel | Guard::Queued) {
                    f.attempts = t.attempts;
                }
                (t, f)
            })
        } else {
            None
        });
    }
    let mut per_session: HashMap<&str, i64> = HashMap::new();
    for (t, _) in accepted.iter().flatten() {
        *per_session.entry(&t.session).or_default() += 1;
    }
    unqueued.extend(
        accepted
            .iter()
            .flatten()
            .filter(|(t, _)| t.state == TaskState::Queued)
            .map(|(t, _)| t.id),
    );
    notify_left_queue(tx, &unqueued).await?;
    if per_session.is_empty() {
        return Ok(accepted.iter().map(|_| None).collect());
    }
    let mut names: Vec<&str> = per_session.keys().copied().collect();
    names.sort_unstable();
    let counts: Vec<i64> = names.iter().map(|n| per_session[n]).collect();
    // The first seq of each session's share of this batch.
    let mut next: HashMap<String, i64> = rows(
        tx,
        "INSERT INTO errand_sessions (session, last_seq)
         SELECT s, n FROM unnest($1::text[], $2::int8[]) AS u(s, n) ORDER BY s
         ON CONFLICT (session) DO UPDATE SET last_seq = errand_sessions.last_seq + EXCLUDED.last_seq
         RETURNING session, last_seq",
        &[&names, &counts],
    )
    .await?
    .iter()
    .map(|r| {
        let s: String = r.get(0);
        let last: i64 = r.get(1);
        let first = last - per_session[s.as_str()] + 1;
        (s, first)
    })
    .collect();
    let mut out = Vec::with_capacity(accepted.len());
    let (
        mut u_id,
        mut u_state,
        mut u_attempts,
        mut u_fin,
        mut u_res,
        mut u_code,
        mut u_msg,
        mut u_seq,
        mut u_summary,
        mut u_answered,
    ) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let mut cancelled = Vec::new();
    let mut latest: HashMap<String, i64> = HashMap::new();
    for (a, (_, guard)) in accepted.into_iter().zip(finishes) {
        let Some((task, finish)) = a else {
            out.push(None);
            continue;
        };
        let slot = next.get_mut(&*task.session).ok_or_else(|| {
            StoreError::Internal("a session's seq counter was not returned".into())
        })?;
        let seq = *slot;
        *slot += 1;
        latest.insert(task.session.to_string(), seq);
        let (res, code, msg) = outcome_columns(Some(&finish.outcome));
        u_id.push(finish.task_id);
        u_state.push(state_code(finish.state));
        u_attempts.push(finish.attempts as i32);
        u_fin.push(time_to_i64(finish.finished_at));
        u_res.push(res.map(str::to_string));
        u_code.push(code.map(str::to_string));
        u_msg.push(msg.map(str::to_string));
        u_seq.push(seq);
        let (summary, answered) = call_columns::finish_columns(&finish.notes);
        u_summary.push(summary.map(str::to_string));
        u_answered.push(answered);
        if *guard == Guard::Cancel && task.state == TaskState::Running {
            // Its holder tells the worker why: "id<TAB>reason".
            let message = match &finish.outcome {
                crate::model::Outcome::Error { message, .. } => message.as_str(),
                crate::model::Outcome::Result(_) => "",
            };
            let reason = crate::text::cancel_reason(message);
            cancelled.push(super::listen::cancel_payload(task.id, reason));
        }
        out.push(Some(CompletionRecord::new(&task, &finish, seq as u64)));
    }
    exec(
        tx,
        "UPDATE errand_tasks t SET state = u.state, attempts = u.attempts, finished_at = u.fin,
             result = u.res, error_code = u.code, error_message = u.msg, seq = u.seq,
             summary = u.summary, answered_by = u.answered, owner = NULL, lease_until = NULL
         FROM unnest($1::uuid[], $2::int2[], $3::int4[], $4::int8[], $5::text[], $6::text[],
                     $7::text[], $8::int8[], $9::text[], $10::text[])
             AS u(id, state, attempts, fin, res, code, msg, seq, summary, answered)
         WHERE t.id = u.id",
        &[
            &u_id,
            &u_state,
            &u_attempts,
            &u_fin,
            &u_res,
            &u_code,
            &u_msg,
            &u_seq,
            &u_summary,
            &u_answered,
        ],
    )
    .await?;

    let payloads: Vec<String> = latest
        .into_iter()
        .map(|(s, seq)| format!("{seq}\t{s}"))
        .collect();
    exec(
        tx,
        "SELECT pg_notify('errand_completions', p) FROM unnest($1::text[]) AS p",
        &[&payloads],
    )
    .await?;
    if !cancelled.is_empty() {
        exec(
            tx,
            "SELECT pg_notify('errand_cancels', p) FROM unnest($1::text[]) AS p",
            &[&cancelled],
        )
        .await?;
    }
    Ok(out)
}
