//! The columns of issue 17's call options and finish notes, for both SQL
//! engines: `result_budget`, `args_hash`, `joinable` and `fallback` written
//! at insert, `summary` and `answered_by` at finish. The two JSON columns
//! (`fallback`, `answered_by`) hold small objects; NULL everywhere reads as
//! a task stored before they existed.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{BadRow, state_code, state_from_code, to_i64};
use crate::model::{Answered, ArgsHash, CallOptions, Fallback, FallbackFor, FinishNotes, Primary};

/// The call columns as stored.
#[derive(Debug, Default)]
pub(crate) struct CallRow {
    pub result_budget: Option<i64>,
    pub args_hash: Option<String>,
    /// 1: joinable.
    pub joinable: Option<i64>,
    pub fallback: Option<String>,
    pub summary: Option<String>,
    pub answered_by: Option<String>,
}

/// SQLite's condition for a stored task that can answer a last-good
/// fallback: it SUCCEEDED, and its call asked for a last-good fallback
/// itself (its `fallback` column names `last_good_max_age_ms`, see
/// [`FallbackJson`]). The last-good index holds only such rows, and the
/// lookup asks for exactly this text (SQLite uses a partial index only for
/// a query that repeats its condition), so any other success skips that
/// index at its finish: a random leaf in a wide index, measured at 14 % of
/// the server's CPU per task when every success entered it.
macro_rules! last_good_candidate {
    () => {
        "state = 2 AND instr(fallback, '\"last_good_max_age_ms\":') > 0"
    };
}
pub(crate) use last_good_candidate;

/// [`last_good_candidate!`] for PostgreSQL.
macro_rules! pg_last_good_candidate {
    () => {
        "state = 2 AND strpos(fallback, '\"last_good_max_age_ms\":') > 0"
    };
}
pub(crate) use pg_last_good_candidate;

#[derive(Serialize, Deserialize, Default)]
struct FallbackJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_good_max_age_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    primary: Option<PrimaryJson>,
}

#[derive(Serialize, Deserialize)]
struct PrimaryJson {
    state: i16,
    code: String,
    message: String,
    attempts: u32,
}

#[derive(Serialize, Deserialize)]
struct AnsweredJson {
    primary: PrimaryJson,
    tool: String,
    last_good_age_ms: u64,
    task_id: String,
}

impl PrimaryJson {
    fn of(p: &Primary) -> Self {
        Self {
            state: state_code(p.state),
            code: p.code.clone(),
            message: p.message.clone(),
            attempts: p.attempts,
        }
    }

    fn decode(self) -> Result<Primary, BadRow> {
        Ok(Primary {
            state: state_from_code(self.state)
                .ok_or_else(|| BadRow(format!("unknown primary state {}", self.state)))?,
            code: self.code,
            message: self.message,
            attempts: self.attempts,
        })
    }
}

fn uuid(s: &str) -> Result<Uuid, BadRow> {
    Uuid::parse_str(s).map_err(|_| BadRow(format!("bad task id {s:?} in a JSON column")))
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// The SQL condition "not a fallback run" on the `fallback` column (what
/// [`crate::store::TaskQuery::passes_filter`] says for the memory store).
/// The `run_for` key is written only for a run, and inside a JSON string
/// every `"` is escaped, so `run_for":` matches nothing but that key.
pub(crate) const NOT_A_RUN: &str = r#"(fallback IS NULL OR fallback NOT LIKE '%"run_for":%')"#;

/// `result_budget`, `args_hash`, `joinable` (0 or 1) and `fallback` of a new task.
pub(crate) fn insert_columns(call: &CallOptions) -> (i64, String, i64, Option<String>) {
    let fallback = (call.fallback.is_some() || call.fallback_for.is_some()).then(|| {
        let mut f = FallbackJson::default();
        match &call.fallback {
            Some(Fallback::Tool(tool)) => f.tool = Some(tool.to_string()),
            Some(Fallback::LastGood { max_age_ms }) => f.last_good_max_age_ms = Some(*max_age_ms),
            None => {}
        }
        if let Some(run) = &call.fallback_for {
            f.run_for = Some(run.parent.to_string());
            f.primary = Some(PrimaryJson::of(&run.primary));
        }
        json(&f)
    });
    (
        to_i64(call.result_budget),
        call.args_hash.hex(),
        i64::from(call.joinable),
        fallback,
    )
}

/// `summary` and `answered_by` of a finish.
pub(crate) fn finish_columns(notes: &FinishNotes) -> (Option<&str>, Option<String>) {
    let answered = notes.answered_by.as_ref().map(|a| {
        json(&AnsweredJson {
            primary: PrimaryJson::of(&a.primary),
            tool: a.tool.clone(),
            last_good_age_ms: a.last_good_age_ms,
            task_id: a.task_id.to_string(),
        })
    });
    (notes.summary.as_deref(), answered)
}

impl CallRow {
    /// The call options and finish notes this row stores.
    pub fn decode(self) -> Result<(CallOptions, FinishNotes), BadRow> {
        let mut call = CallOptions {
            result_budget: u64::try_from(self.result_budget.unwrap_or(0)).unwrap_or(0),
            args_hash: ArgsHash::from_hex(self.args_hash.as_deref().unwrap_or_default())
                .map_err(BadRow)?,
            joinable: self.joinable == Some(1),
            fallback: None,
            fallback_for: None,
        };
        if let Some(text) = self.fallback {
            let f: FallbackJson = serde_json::from_str(&text)
                .map_err(|e| BadRow(format!("bad fallback column: {e}")))?;
            call.fallback = match (f.tool, f.last_good_max_age_ms) {
                (Some(tool), _) => Some(Fallback::Tool(tool.into())),
                (None, Some(max_age_ms)) => Some(Fallback::LastGood { max_age_ms }),
                (None, None) => None,
            };
            if let (Some(parent), Some(primary)) = (f.run_for, f.primary) {
                call.fallback_for = Some(Box::new(FallbackFor {
                    parent: uuid(&parent)?,
                    primary: primary.decode()?,
                }));
            }
        }
        let answered_by = match self.answered_by {
            None => None,
            Some(text) => {
                let a: AnsweredJson = serde_json::from_str(&text)
                    .map_err(|e| BadRow(format!("bad answered_by column: {e}")))?;
                Some(Box::new(Answered {
                    primary: a.primary.decode()?,
                    tool: a.tool,
                    last_good_age_ms: a.last_good_age_ms,
                    task_id: uuid(&a.task_id)?,
                }))
            }
        };
        let notes = FinishNotes {
            summary: self.summary,
            answered_by,
            drop_run: None,
        };
        Ok((call, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskState;

    /// The partial index's condition, run by SQLite on what `insert_columns`
    /// writes: true for a success whose call asked for a last-good fallback,
    /// false for every other fallback, none, or an unfinished task.
    #[test]
    fn the_last_good_condition_matches_exactly_the_calls_that_ask_for_one() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (state INTEGER, fallback TEXT)")
            .unwrap();
        let link = FallbackFor {
            parent: Uuid::new_v4(),
            primary: Primary {
                state: TaskState::Failed,
                // A message that quotes the key must not count.
                code: "x".into(),
                message: r#"{"last_good_max_age_ms":1}"#.into(),
                attempts: 1,
            },
        };
        let cases = [
            (Some(Fallback::LastGood { max_age_ms: 0 }), None, 2, true),
            (Some(Fallback::LastGood { max_age_ms: 9 }), None, 1, false),
            (
                Some(Fallback::Tool("t\u{1f}last_good_max_age_ms".into())),
                None,
                2,
                false,
            ),
            (None, Some(Box::new(link)), 2, false),
            (None, None, 2, false),
        ];
        for (fallback, fallback_for, state, want) in cases {
            let call = CallOptions {
                fallback,
                fallback_for,
                ..CallOptions::default()
            };
            let (_, _, _, column) = insert_columns(&call);
            let sql = concat!("SELECT count(*) FROM t WHERE ", last_good_candidate!());
            conn.execute("DELETE FROM t", []).unwrap();
            conn.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                rusqlite::params![state, column],
            )
            .unwrap();
            let n: i64 = conn.query_row(sql, [], |r| r.get(0)).unwrap();
            assert_eq!(n == 1, want, "{column:?} in state {state}");
            // The memory store's twin of the condition agrees.
            assert_eq!(state == 2 && call.asks_last_good(), want);
        }
    }

    #[test]
    fn call_options_and_notes_round_trip() {
        let primary = Primary {
            state: TaskState::TimedOut,
            code: "timeout".into(),
            message: "too slow".into(),
            attempts: 2,
        };
        let call = CallOptions {
            result_budget: 16384,
            args_hash: ArgsHash::of("{\"a\":1}"),
            joinable: true,
            fallback: Some(Fallback::Tool("t\u{1f}backup".into())),
            fallback_for: Some(Box::new(FallbackFor {
                parent: Uuid::new_v4(),
                primary: primary.clone(),
            })),
        };
        let notes = FinishNotes {
            summary: Some("short".into()),
            answered_by: Some(Box::new(Answered {
                primary,
                tool: String::new(),
                last_good_age_ms: 42,
                task_id: Uuid::new_v4(),
            })),
            drop_run: None,
        };
        let (budget, hash, joinable, fallback) = insert_columns(&call);
        let (summary, answered_by) = finish_columns(&notes);
        let row = CallRow {
            result_budget: Some(budget),
            args_hash: Some(hash),
            joinable: Some(joinable),
            fallback,
            summary: summary.map(Into::into),
            answered_by,
        };
        assert_eq!(row.decode().unwrap(), (call, notes));
        let last_good = CallOptions {
            fallback: Some(Fallback::LastGood { max_age_ms: 5 }),
            ..Default::default()
        };
        let (_, _, _, fallback) = insert_columns(&last_good);
        let row = CallRow {
            fallback,
            ..Default::default()
        };
        assert_eq!(row.decode().unwrap().0.fallback, last_good.fallback);
        assert_eq!(
            CallRow::default().decode().unwrap(),
            Default::default(),
            "older rows read as defaults"
        );
    }
}
