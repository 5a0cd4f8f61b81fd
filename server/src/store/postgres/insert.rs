//! Inserting new tasks inside the writer's transaction: idempotency keys,
//! joinable calls in flight, and the per-session bound across servers.
use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::rows::{notify_tools, prefixed, rows, task_from_row};
use super::writer::Writer;
use crate::model::{TaskRecord, TaskState};
use crate::store::sql::{
    call_columns,
    codec::{duration_to_i64, state_code, time_to_i64},
};
use crate::store::{Inserted, StoreError};

/// How many times one transaction tries the tasks whose insert lost a race
/// it cannot answer (a joinable twin that finished between the insert and
/// the re-query) before it tells their callers to retry.
const INSERT_ROUNDS: usize = 3;

type Answer = Result<Inserted, StoreError>;

impl Writer {
    /// Inserts new tasks; returns each one's answer in order. A task is
    /// answered [`Inserted::New`] only when its row is stored.
    pub(super) async fn insert_in(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<Vec<Answer>, StoreError> {
        let mut answers: Vec<Option<Answer>> = vec![None; tasks.len()];
        let mut left: Vec<usize> = (0..tasks.len()).collect();
        for _ in 0..INSERT_ROUNDS {
            if left.is_empty() {
                break;
            }
            let round: Vec<&TaskRecord> = left.iter().map(|&i| tasks[i]).collect();
            let got = self.insert_round(tx, &round).await?;
            let mut next = Vec::new();
            for (&i, a) in left.iter().zip(got) {
                match a {
                    Some(a) => answers[i] = Some(a),
                    None => next.push(i),
                }
            }
            left = next;
        }
        Ok(answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "the task's twin in flight kept changing while it was stored: retry".into(),
                    ))
                })
            })
            .collect())
    }

    /// One try at [`Self::insert_in`]: `None` for a task that is neither
    /// stored nor answered by a twin (try it again).
    async fn insert_round(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<Vec<Option<Answer>>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut answers: Vec<Option<Answer>> = vec![None; tasks.len()];
        // Earlier tasks with the same idempotency key.
        let existing = self.existing_by_key(tx, tasks).await?;
        for (i, t) in tasks.iter().enumerate() {
            if let Some(key) = &t.idempotency_key
                && let Some(e) = existing.get(&(t.session.to_string(), key.to_string()))
                && e.id != t.id
            {
                answers[i] = Some(Ok(Inserted::Existing(Box::new(e.clone()))));
            }
        }
        // Joinable tasks whose call is in flight.
        let flying = self.in_flight(tx, tasks).await?;
        for (i, t) in tasks.iter().enumerate() {
            if answers[i].is_none()
                && let Some(e) = flying.get(&call_of(t))
                && e.id != t.id
            {
                answers[i] = Some(Ok(Inserted::Joined(Box::new(e.clone()))));
            }
        }
        // The per-session limit on unfinished tasks, across every server.
        let sessions: Vec<String> = tasks
            .iter()
            .map(|t| t.session.to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut pending: HashMap<String, usize> = rows(
            tx,
            "SELECT session, count(*) FROM errand_tasks
             WHERE session = ANY($1) AND state < 2 GROUP BY session",
            &[&sessions],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as usize))
        .collect();
        let limit = self.options.max_pending_per_session;
        let mut seen_keys = HashMap::new();
        let mut seen_calls = HashMap::new();
        // A task skipped behind an earlier twin of the batch, by its twin.
        let mut leader: HashMap<usize, usize> = HashMap::new();
        let mut new = Vec::new();
        let mut refused = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            if answers[i].is_some() {
                continue;
            }
            if let Some(key) = &t.idempotency_key
                && let Some(&first) = seen_keys.get(&(t.session.clone(), key.clone()))
            {
                // A second task with this key in the same batch: answered
                // with the first once it is stored, or as the first was.
                leader.insert(i, first);
                continue;
            }
            if t.call.joinable
                && let Some(&first) = seen_calls.get(&call_of(t))
            {
                // A second identical joinable call in the batch: joins the
                // first once it is stored, or is answered as it was.
                leader.insert(i, first);
                continue;
            }
            if let Some(key) = &t.idempotency_key {
                seen_keys.insert((t.session.clone(), key.clone()), i);
            }
            if t.call.joinable {
                seen_calls.insert(call_of(t), i);
            }
            let count = pending.entry(t.session.to_string()).or_default();
            if *count >= limit {
                answers[i] = Some(Err(StoreError::LimitReached(format!(
                    "session {:?} has {count} unfinished tasks, the limit is {limit}: wait for \
                     completions or cancel some",
                    // The client's name, never the tenant's key.
                    crate::tenant::strip(&t.session)
                ))));
                refused.push(i);
                continue;
            }
            *count += 1;
            new.push(i);
        }
        if !refused.is_empty() {
            // A retry of a batch that did commit: its row is stored, and
            // counted among the session's unfinished tasks.
            let ids: Vec<Uuid> = refused.iter().map(|&i| tasks[i].id).collect();
            let present: HashSet<Uuid> = rows(
                tx,
                "SELECT id FROM errand_tasks WHERE id = ANY($1)",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for i in refused {
                if present.contains(&tasks[i].id) {
                    answers[i] = Some(Ok(Inserted::New));
                }
            }
        }
        if !new.is_empty() {
            let ids: Vec<Uuid> = new.iter().map(|&i| tasks[i].id).collect();
            let session: Vec<&str> = new.iter().map(|&i| &*tasks[i].session).collect();
            let tool: Vec<&str> = new.iter().map(|&i| &*tasks[i].tool).collect();
            let args: Vec<&str> = new.iter().map(|&i| &*tasks[i].arguments).collect();
            let timeout: Vec<i64> = new
                .iter()
                .map(|&i| duration_to_i64(tasks[i].timeout))
                .collect();
            let key: Vec<Option<&str>> = new
                .iter()
                .map(|&i| tasks[i].idempotency_key.as_deref())
                .collect();
            let created: Vec<i64> = new
                .iter()
                .map(|&i| time_to_i64(tasks[i].created_at))
                .collect();
            let state: Vec<i16> = new.iter().map(|&i| state_code(tasks[i].state)).collect();
            let attempts: Vec<i32> = new.iter().map(|&i| tasks[i].attempts as i32).collect();
            let queue_deadline: Vec<Option<i64>> = new
                .iter()
                .map(|&i| tasks[i].queue_deadline.map(time_to_i64))
                .collect();
            let calls: Vec<_> = new
                .iter()
                .map(|&i| call_columns::insert_columns(&tasks[i].call))
                .collect();
            let budget: Vec<i64> = calls.iter().map(|c| c.0).collect();
            let hash: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
            let joinable: Vec<i32> = calls.iter().map(|c| c.2 as i32).collect();
            let fallback: Vec<Option<&str>> = calls.iter().map(|c| c.3.as_deref()).collect();
            let delivery: Vec<i16> = new.iter().map(|&i| tasks[i].delivery.code()).collect();
            let retry_of: Vec<Option<Uuid>> = new.iter().map(|&i| tasks[i].retry_of).collect();
            // A task inserted `Running` is claimed by this server at once
            // (its worker has room); it gets a lease, and attempts count
            // from its dispatch as always.
            let lease_ms = self.options.lease.as_millis() as f64;
            let stored: HashSet<Uuid> = rows(
                tx,
                "INSERT INTO errand_tasks (id, session, tool, arguments, timeout_ns,
                     idempotency_key, created_at, state, attempts, queue_deadline,
                     result_budget, args_hash, joinable, fallback, delivery, retry_of, owner,
                     lease_until)
                 SELECT u.*,
                     CASE WHEN u.state = 1 THEN $10 END,
                     CASE WHEN u.state = 1 THEN now() + $11 * interval '1 millisecond' END
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                     $5::int8[], $6::text[], $7::int8[], $8::int2[], $9::int4[], $12::int8[],
                     $13::int8[], $14::text[], $15::int4[], $16::text[], $17::int2[],
                     $18::uuid[])
                     AS u(id, session, tool, arguments, timeout_ns, idempotency_key,
                          created_at, state, attempts, queue_deadline, result_budget, args_hash,
                          joinable, fallback, delivery, retry_of)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &ids,
                    &session,
                    &tool,
                    &args,
                    &timeout,
                    &key,
                    &created,
                    &state,
                    &attempts,
                    &&*self.server_id,
                    &lease_ms,
                    &queue_deadline,
                    &budget,
                    &hash,
                    &joinable,
                    &fallback,
                    &delivery,
                    &retry_of,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let mut tools = HashSet::new();
            for &i in &new {
                if stored.contains(&tasks[i].id) {
                    if tasks[i].state == TaskState::Queued {
                        tools.insert(tasks[i].tool.to_string());
                    }
                    answers[i] = Some(Ok(Inserted::New));
                }
            }
            let tools: Vec<String> = tools.into_iter().collect();
            notify_tools(tx, &tools).await?;
        }
        // What is left lost a race on its key or call (to another server,
        // or to an earlier twin of this batch), or is a retry of a batch
        // that did commit. It is `New` only if its own row is stored; a
        // twin's refusal is its own; anything else is tried again.
        if answers.iter().any(Option::is_none) {
            let existing = self.existing_by_key(tx, tasks).await?;
            let flying = self.in_flight(tx, tasks).await?;
            let unanswered: Vec<Uuid> = tasks
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .map(|(t, _)| t.id)
                .collect();
            let present: HashSet<Uuid> = rows(
                tx,
                "SELECT id FROM errand_tasks WHERE id = ANY($1)",
                &[&unanswered],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            // In order: a twin's leader comes before it, so it is settled.
            for (i, t) in tasks.iter().enumerate() {
                if answers[i].is_some() {
                    continue;
                }
                let found = t
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| existing.get(&(t.session.to_string(), k.to_string())));
                let joined = flying.get(&call_of(t)).filter(|_| t.call.joinable);
                answers[i] = match (found, joined) {
                    (Some(e), _) if e.id != t.id => {
                        Some(Ok(Inserted::Existing(Box::new(e.clone()))))
                    }
                    (_, Some(e)) if e.id != t.id => Some(Ok(Inserted::Joined(Box::new(e.clone())))),
                    _ if present.contains(&t.id) => Some(Ok(Inserted::New)),
                    _ => match leader.get(&i).and_then(|&l| answers[l].as_ref()) {
                        Some(Err(e)) => Some(Err(e.clone())),
                        _ => None,
                    },
                };
            }
        }
        Ok(answers)
    }

    /// The unfinished joinable tasks of the joinable calls among `tasks`,
    /// by [`call_of`].
    async fn in_flight(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<HashMap<(String, String, String), TaskRecord>, StoreError> {
        let calls: Vec<(String, String, String)> = tasks
            .iter()
            .filter(|t| t.call.joinable)
            .map(|t| call_of(t))
            .collect();
        if calls.is_empty() {
            return Ok(HashMap::new());
        }
        let sessions: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
        let tools: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
        let hashes: Vec<&str> = calls.iter().map(|c| c.2.as_str()).collect();
        let sql = format!(
            "SELECT {} FROM errand_tasks t
             JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(session, tool, hash)
               ON t.session = k.session AND t.tool = k.tool AND t.args_hash = k.hash
             WHERE t.joinable = 1 AND t.state < 2",
            prefixed("t.")
        );
        let mut out = HashMap::new();
        for r in rows(tx, &sql, &[&sessions, &tools, &hashes]).await? {
            let t = task_from_row(&r)?;
            out.insert(call_of(&t), t);
        }
        Ok(out)
    }

    async fn existing_by_key(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<HashMap<(String, String), TaskRecord>, StoreError> {
        let (sessions, keys): (Vec<&str>, Vec<&str>) = tasks
            .iter()
            .filter_map(|t| t.idempotency_key.as_deref().map(|k| (&*t.session, k)))
            .unzip();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {} FROM errand_tasks t
             JOIN unnest($1::text[], $2::text[]) AS k(session, key)
               ON t.session = k.session AND t.idempotency_key = k.key",
            prefixed("t.")
        );
        let mut out = HashMap::new();
        for r in rows(tx, &sql, &[&sessions, &keys]).await? {
            let t = task_from_row(&r)?;
            let key = t.idempotency_key.as_deref().unwrap_or_default().to_string();
            out.insert((t.session.to_string(), key), t);
        }
        Ok(out)
    }
}

/// A joinable call's identity: session, tool and arguments hash.
fn call_of(t: &TaskRecord) -> (String, String, String) {
    (
        t.session.to_string(),
        t.tool.to_string(),
        t.call.args_hash.to_string(),
    )
}
