//! What a worker tells the scheduler, and what the scheduler tells a worker.
use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{Delivery, Fallback, Outcome, ToolKey};

/// A tool as a worker declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolDef {
    pub name: ToolKey,
    pub description: String,
    /// JSON Schema of the arguments; empty: any object.
    pub input_schema_json: String,
    /// The tool's default timeout in milliseconds; 0: none.
    pub timeout_ms: u64,
    /// The tool's default queue timeout in milliseconds (counted from
    /// submit); 0: none.
    pub queue_timeout_ms: u64,
    /// What it declares about its calls' delivery (issue 17).
    pub policy: ToolPolicy,
}

/// What a tool declares about how its calls reach the model; each unset
/// field means the server's default. A submit's own values win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    /// `None`: `--default-delivery`.
    pub delivery: Option<Delivery>,
    /// `Some(true)`: identical calls in flight are joined; `None`: off.
    pub join_in_flight: Option<bool>,
    /// Most bytes of a result delivered inline; 0: `--result-budget-bytes`.
    pub result_budget_bytes: u64,
    /// What answers a failed or timed-out call; `None`: nothing.
    pub fallback: Option<Fallback>,
    /// Whether a model may cancel its calls itself (the SDKs' tool refuses
    /// otherwise); never limits CancelTask.
    pub cancellable_by_model: bool,
}

impl ToolPolicy {
    /// The policy as the stores keep it beside a tool's definition: a small
    /// JSON object of the fields that are set; empty when none is.
    pub fn to_stored(&self) -> String {
        if *self == ToolPolicy::default() {
            return String::new();
        }
        let mut o = serde_json::Map::new();
        if let Some(d) = self.delivery {
            o.insert("delivery".into(), d.code().into());
        }
        if let Some(j) = self.join_in_flight {
            o.insert("join_in_flight".into(), j.into());
        }
        if self.result_budget_bytes > 0 {
            o.insert(
                "result_budget_bytes".into(),
                self.result_budget_bytes.into(),
            );
        }
        match &self.fallback {
            Some(Fallback::Tool(t)) => {
                o.insert("fallback_tool".into(), t.to_string().into());
            }
            Some(Fallback::LastGood { max_age_ms }) => {
                o.insert("fallback_last_good_max_age_ms".into(), (*max_age_ms).into());
            }
            None => {}
        }
        if self.cancellable_by_model {
            o.insert("cancellable_by_model".into(), true.into());
        }
        serde_json::Value::Object(o).to_string()
    }

    /// Reads what [`Self::to_stored`] wrote; unknown or malformed members
    /// read as unset (the server's defaults), never as an error.
    pub fn from_stored(text: &str) -> Self {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_str(text) else {
            return ToolPolicy::default();
        };
        let u64_of = |k: &str| o.get(k).and_then(serde_json::Value::as_u64);
        ToolPolicy {
            delivery: u64_of("delivery")
                .and_then(|c| i16::try_from(c).ok())
                .and_then(Delivery::from_code),
            join_in_flight: o.get("join_in_flight").and_then(serde_json::Value::as_bool),
            result_budget_bytes: u64_of("result_budget_bytes").unwrap_or(0),
            fallback: match (
                o.get("fallback_tool").and_then(serde_json::Value::as_str),
                u64_of("fallback_last_good_max_age_ms"),
            ) {
                (Some(t), _) => Some(Fallback::Tool(t.into())),
                (None, Some(max_age_ms)) => Some(Fallback::LastGood { max_age_ms }),
                (None, None) => None,
            },
            cancellable_by_model: o
                .get("cancellable_by_model")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn a_stored_policy_reads_back_the_same() {
        let policies = [
            ToolPolicy::default(),
            ToolPolicy {
                delivery: Some(Delivery::Interrupt),
                join_in_flight: Some(true),
                result_budget_bytes: 4096,
                fallback: Some(Fallback::Tool("t:search".into())),
                cancellable_by_model: true,
            },
            ToolPolicy {
                delivery: Some(Delivery::Silent),
                join_in_flight: Some(false),
                fallback: Some(Fallback::LastGood { max_age_ms: 60_000 }),
                ..Default::default()
            },
        ];
        for p in policies {
            assert_eq!(ToolPolicy::from_stored(&p.to_stored()), p);
        }
        assert_eq!(ToolPolicy::default().to_stored(), "");
        assert_eq!(ToolPolicy::from_stored("not json"), ToolPolicy::default());
    }
}

/// A worker's first message: what it serves and how much at once.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Shown in logs; empty: "worker".
    pub worker_name: String,
    pub tools: Vec<ToolDef>,
    /// Tasks at once; 0 counts as 1.
    pub max_concurrency: u32,
}

/// A worker's result for one attempt of a task.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task_id: Uuid,
    /// The attempt it answers; 0: whichever attempt the worker holds.
    pub attempt: u32,
    /// `None`: the worker sent neither a result nor an error.
    pub outcome: Option<Outcome>,
    /// The worker's summary of a result for the model; empty: none.
    pub summary: String,
}

/// What the scheduler tells one worker, in order, on its command channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run this task.
    Assign(Assignment),
    /// Stop running a task: `reason` is one of [`super::codes`], or
    /// "cancelled: " and the client's reason.
    Cancel { task_id: Uuid, reason: Arc<str> },
    /// Answers a later Register on the worker's stream: its tools are
    /// added (the first Registered is sent by the stream itself).
    Registered {
        worker_id: u64,
        /// The server's message limit (`Registered.max_message_bytes`).
        max_message_bytes: usize,
    },
    /// Answers a later Register that was refused: none of its tools were
    /// added; the worker serves on with those it had.
    RegisterRefused {
        kind: crate::error::Kind,
        message: Arc<str>,
    },
}

/// One attempt of a task, handed to a worker. `session` and `tool` are keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub task_id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    /// 1 for the first dispatch.
    pub attempt: u32,
    pub timeout: Duration,
    /// The last `detail_json` an earlier attempt reported; `None` on a
    /// first attempt or when none was reported.
    pub resume_detail: Option<Arc<str>>,
}
