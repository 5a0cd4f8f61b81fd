//! The database schema: versioned migrations, applied at start under an
//! advisory lock.

use deadpool_postgres::{GenericClient, Pool};
use tracing::info;

use super::errors::{pg_error, pool_error};
use crate::store::StoreError;

/// Advisory lock key ("ERND" + n) held while migrating.
const MIGRATE_LOCK: i64 = 0x4552_4e44_0001;

/// Schema migrations, applied in order; `errand_schema` records each one.
/// Only ever append.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks carrying their completion and lease; per-session seq counters;
    //    the tools each server's workers serve.
    "CREATE TABLE errand_tasks (
        id              uuid PRIMARY KEY,
        session         text NOT NULL,
        tool            text NOT NULL,
        arguments       text NOT NULL,
        timeout_ns      bigint NOT NULL,
        idempotency_key text,
        created_at      bigint NOT NULL,
        state           smallint NOT NULL,
        attempts        integer NOT NULL,
        started_at      bigint,
        finished_at     bigint,
        result          text,
        error_code      text,
        error_message   text,
        seq             bigint NOT NULL DEFAULT 0,
        owner           text,
        lease_until     timestamptz
    );
    CREATE INDEX errand_tasks_queued ON errand_tasks (tool, session, created_at) WHERE state = 0;
    CREATE INDEX errand_tasks_unfinished ON errand_tasks (session) WHERE state < 2;
    CREATE INDEX errand_tasks_leases ON errand_tasks (lease_until) WHERE state = 1;
    CREATE UNIQUE INDEX errand_tasks_idempotency ON errand_tasks (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX errand_tasks_completions ON errand_tasks (session, seq) WHERE seq > 0;
    CREATE INDEX errand_tasks_finished ON errand_tasks (finished_at) WHERE seq > 0;
    CREATE TABLE errand_sessions (
        session  text PRIMARY KEY,
        last_seq bigint NOT NULL
    );
    CREATE TABLE errand_turns (
        session   text PRIMARY KEY,
        served_at timestamptz NOT NULL
    );
    CREATE TABLE errand_tools (
        server_id         text NOT NULL,
        name              text NOT NULL,
        description       text NOT NULL,
        input_schema_json text NOT NULL,
        timeout_ms        bigint NOT NULL,
        workers           integer NOT NULL,
        seen_at           timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (server_id, name)
    );",
    // 2: a queued task's deadline (ns since the epoch), so a queue timeout
    //    holds across restarts; NULL in older rows.
    "ALTER TABLE errand_tasks ADD COLUMN queue_deadline bigint;
    CREATE INDEX errand_tasks_queue_deadlines ON errand_tasks (queue_deadline) WHERE state = 0;",
    // 3: the tool registry every server shares, so a known tool outlives a
    //    restart and is known on every server; times in ns since the epoch.
    "CREATE TABLE errand_tool_defs (
        name              text PRIMARY KEY,
        description       text NOT NULL,
        input_schema_json text NOT NULL,
        timeout_ms        bigint NOT NULL,
        queue_timeout_ms  bigint NOT NULL,
        last_served_at    bigint NOT NULL
    );",
    // 4: issue 17's call options (result budget, the arguments' canonical
    //    hash, dedup, fallback) and finish notes (summary, the fallback that
    //    answered). At most one unfinished joinable task per call, whichever
    //    server submits: the unique index makes joins atomic.
    "ALTER TABLE errand_tasks
        ADD COLUMN result_budget bigint,
        ADD COLUMN args_hash text,
        ADD COLUMN joinable integer,
        ADD COLUMN fallback text,
        ADD COLUMN summary text,
        ADD COLUMN answered_by text;
    CREATE UNIQUE INDEX errand_tasks_in_flight ON errand_tasks (session, tool, args_hash)
        WHERE joinable = 1 AND state < 2;
    CREATE INDEX errand_tasks_last_good ON errand_tasks (session, tool, args_hash, finished_at)
        WHERE state = 2;",
    // 5 (issue 17): a task's delivery policy, resolved at submit (1
    //    WHEN_IDLE, 2 INTERRUPT, 3 SILENT; older rows read WHEN_IDLE), and
    //    each session's acknowledged seq.
    "ALTER TABLE errand_tasks ADD COLUMN delivery smallint NOT NULL DEFAULT 1;
    ALTER TABLE errand_sessions ADD COLUMN acked_seq bigint NOT NULL DEFAULT 0;",
    // 6: a tool's delivery, dedup, budget, fallback and cancel policy, kept
    //    beside its definition (JSON text; empty: none set).
    "ALTER TABLE errand_tool_defs ADD COLUMN policy text NOT NULL DEFAULT '';",
    // 7: the task a retry repeats (`RetryTask`); NULL for submitted tasks.
    "ALTER TABLE errand_tasks ADD COLUMN retry_of uuid;",
    // 8 (issue 20): the last-good index holds only the successes that can
    //    answer a last-good fallback (see `last_good_candidate!`).
    concat!(
        "DROP INDEX errand_tasks_last_good;
        CREATE INDEX errand_tasks_last_good ON errand_tasks (session, tool, args_hash, finished_at)
            WHERE ",
        crate::store::sql::call_columns::pg_last_good_candidate!(),
        ";"
    ),
    // 9: listings across sessions walk this index and stop at their page
    //    (see SQLite's migration 9).
    "CREATE INDEX errand_tasks_listed ON errand_tasks (created_at, id);",
    // 10: when a task queued again after a run (its lease reclaimed, or its
    //     server gave it back) stops waiting for a worker, in ns since the
    //     epoch: its queue timeout counted afresh (`queue_deadline` keeps
    //     the first wait's, from submit, which gives the timeout).
    //     Tasks already queued again wait afresh from the upgrade.
    "ALTER TABLE errand_tasks ADD COLUMN requeue_deadline bigint;
    UPDATE errand_tasks
        SET requeue_deadline = (extract(epoch FROM now()) * 1e9)::int8
            + (queue_deadline - created_at)
        WHERE state = 0 AND attempts > 0;
    CREATE INDEX errand_tasks_requeue_deadlines ON errand_tasks (requeue_deadline)
        WHERE state = 0 AND attempts > 0;",
    // 11: each server's contact with the database, on the database's clock:
    //     `seen_at` its latest renewal or reap, `back_at` when it last came
    //     back from a silence longer than its lease (or started). A server
    //     reclaims expired leases only once it has been back for a lease,
    //     so after an outage every live server renews before any reaps.
    "CREATE TABLE errand_servers (
        server_id text PRIMARY KEY,
        seen_at   timestamptz NOT NULL,
        back_at   timestamptz NOT NULL
    );",
];

/// Creates or upgrades the schema, one server at a time, as `role` on
/// database `db` (named in a refusal for want of a privilege).
pub(super) async fn migrate(pool: &Pool, role: &str, db: &str) -> Result<(), StoreError> {
    migrate_as(pool).await.map_err(|e| match e {
        Migrate::Privilege(why) => StoreError::Internal(privilege_hint(&why, role, db)),
        Migrate::Store(e) => e,
    })
}

/// Why a migration failed.
enum Migrate {
    /// PostgreSQL's `insufficient_privilege`, its message.
    Privilege(String),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Migrate {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(d) if *d.code() == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                Migrate::Privilege(d.message().to_string())
            }
            _ => Migrate::Store(pg_error(e)),
        }
    }
}

impl From<StoreError> for Migrate {
    fn from(e: StoreError) -> Self {
        Migrate::Store(e)
    }
}

/// What to fix when `role` may not create errand's tables in `db`
/// (PostgreSQL 15 and later give only the database's owner CREATE on the
/// schema `public`). Bounded: the names come from the URL.
fn privilege_hint(why: &str, role: &str, db: &str) -> String {
    let bound = |s: &str| s.chars().take(64).collect::<String>();
    let (why, role, db) = (bound(why), bound(role), bound(db));
    format!(
        "the database role `{role}` may not create errand's tables in database `{db}` \
         ({why}): make the role the database's owner (`createdb -O {role} {db}` for a new \
         database, or `ALTER DATABASE {db} OWNER TO {role}`), or give it CREATE on the \
         schema (`GRANT CREATE ON SCHEMA public TO {role}`, run as the database's owner)"
    )
}

async fn migrate_as(pool: &Pool) -> Result<(), Migrate> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    // A migration of a large table may take longer than the connections'
    // statement_timeout (the store's operation timeout): not this one. Its
    // notices are no news ("relation \"errand_schema\" already exists,
    // skipping" at every start): the driver would log each at INFO.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL client_min_messages = warning")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS errand_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let version: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM errand_schema", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(Migrate::Store(StoreError::Internal(format!(
            "the database has errand schema version {version}, newer than this errand knows \
             ({known}): it was written by a newer errand; run that version or a later one"
        ))));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO errand_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
        info!(version = i + 1, "database schema migrated");
    }
    Ok(tx.commit().await?)
}
