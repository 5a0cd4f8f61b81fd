//! What a submit resolves beyond the run itself (issue 17), stored with the
//! task: its result budget, whether identical calls join it, what answers
//! it if it fails; and what a finish records beside the outcome: the
//! worker's summary and the fallback that answered.
use std::{sync::Arc, time::SystemTime};

use uuid::Uuid;

use super::TaskState;

/// A task's resolved call options. `Default` is what rows stored before
/// issue 17 read back as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Most bytes of `result_json` delivered inline; 0 (older rows): the
    /// server's `--result-budget-bytes` applies at delivery.
    pub result_budget: u64,
    /// SHA-256 of the arguments in RFC 8785 canonical form, keyed by
    /// nothing else. Joins and last-good answers match on session, tool and
    /// this; none for a call that neither joins nor asks for a last-good
    /// fallback (nothing matches on it), and in older rows.
    pub args_hash: ArgsHash,
    /// `DEDUP_POLICY_JOIN_IN_FLIGHT`: an identical submit joins this task
    /// while it is unfinished (the stores keep one such task per call).
    pub joinable: bool,
    /// What answers the call if it ends FAILED or TIMED_OUT.
    pub fallback: Option<Fallback>,
    /// Set on a fallback run: the call it runs for. Its ending finishes
    /// that call instead of taking a completion of its own. Boxed: rarely
    /// set, and every queued task carries the field (72 bytes inline).
    pub fallback_for: Option<Box<FallbackFor>>,
}

impl CallOptions {
    /// Whether the call asked for a last-good fallback; only such calls'
    /// successes answer one later (see `Store::last_good`), and an
    /// acknowledgement keeps them until retention. The memory store's twin
    /// of the SQL stores' `last_good_candidate!`.
    pub fn asks_last_good(&self) -> bool {
        matches!(self.fallback, Some(Fallback::LastGood { .. }))
    }

    /// Whether a FAILED or TIMED_OUT ending of the task falls back: it has
    /// a fallback and is not itself a fallback run (one hop only).
    pub fn falls_back(&self) -> bool {
        self.fallback.is_some() && self.fallback_for.is_none()
    }
}

/// What answers a call that failed or timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Run this tool (a key, same tenant) with the same arguments.
    Tool(Arc<str>),
    /// The session's last SUCCEEDED result of the same call, if it is at
    /// most this many milliseconds old.
    LastGood { max_age_ms: u64 },
}

/// A fallback run's link to the call it answers, with how that call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackFor {
    pub parent: Uuid,
    pub primary: Primary,
}

/// How a call with a fallback ended by itself (FAILED or TIMED_OUT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub state: TaskState,
    pub code: String,
    pub message: String,
    /// Its attempts, so its final write is not mistaken for a stale one.
    pub attempts: u32,
}

/// What a finish records beside the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishNotes {
    /// The worker's summary of its result (TaskResult.summary), cut to the
    /// task's budget; the preview of a truncated result.
    pub summary: Option<String>,
    /// Set when a fallback answered the call. Boxed: rarely set, and every
    /// task carries the field (120 bytes inline).
    pub answered_by: Option<Box<Answered>>,
    /// A fallback run whose row goes with this finish (it never takes a
    /// completion of its own).
    pub drop_run: Option<Uuid>,
}

/// The fallback that answered a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub primary: Primary,
    /// The fallback tool's key; empty when a last-good result answered.
    pub tool: String,
    /// Age of the last-good result (its finish to this one), ms; 0 for a
    /// fallback tool.
    pub last_good_age_ms: u64,
    /// The fallback run, or the earlier task whose result was reused.
    pub task_id: Uuid,
}

/// A fallback run's ending (`finish`, of `run`, linked by `link`) as the
/// ending of its call: the run's outcome and summary, [`Answered`] naming
/// the run, and the run's row dropped with the call's finish. Every path
/// that ends a run (its result, a timeout, a lost worker, a reaper) goes
/// through it, so a run never takes a completion of its own.
pub fn run_ending_as_call(
    run: &super::TaskRecord,
    link: FallbackFor,
    finish: super::Finish,
) -> super::Finish {
    super::Finish {
        task_id: link.parent,
        state: finish.state,
        outcome: finish.outcome,
        attempts: link.primary.attempts,
        finished_at: finish.finished_at,
        notes: FinishNotes {
            summary: finish.notes.summary,
            answered_by: Some(Box::new(Answered {
                primary: link.primary,
                tool: run.tool.to_string(),
                last_good_age_ms: 0,
                task_id: run.id,
            })),
            drop_run: Some(run.id),
        },
    }
}

/// The SHA-256 of a call's arguments (JSON text) in RFC 8785 canonical
/// form, so `{"a":1,"b":2}` and `{"b":2, "a":1}` are one call. Held as its
/// 32 bytes: every live task carries one, and a 64-character string would
/// cost 96 bytes of heap per task beside the pointer. The stores keep it as
/// lowercase hex; rows stored before hashes have none (empty text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ArgsHash(Option<[u8; 32]>);

impl ArgsHash {
    /// The hash of `arguments`. Arguments that do not parse (never, after
    /// admission) hash as written.
    pub fn of(arguments: &str) -> Self {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| serde_json_canonicalizer::to_string(&v).ok())
            .unwrap_or_else(|| arguments.to_string());
        Self(Some(Sha256::digest(canonical.as_bytes()).into()))
    }

    /// Reads the stores' text: 64 hex digits, or empty for none.
    ///
    /// # Errors
    /// Any other text, described.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self(None));
        }
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "args_hash is not 64 hex digits ({} bytes)",
                text.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            *byte = digit(pair[0]) << 4 | digit(pair[1]);
        }
        Ok(Self(Some(bytes)))
    }

    /// Lowercase hex, as the stores keep it; empty for none.
    pub fn hex(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for ArgsHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.iter().flatten() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Milliseconds from `earlier` to `later` (0 when it is not earlier).
pub fn age_ms(earlier: SystemTime, later: SystemTime) -> u64 {
    super::millis(later.duration_since(earlier).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_spacing_do_not_change_the_call() {
        let a = ArgsHash::of(r#"{"q":"tides","opts":{"n":1,"lang":"en"}}"#);
        let b = ArgsHash::of(r#"{ "opts" : {"lang":"en","n":1.0}, "q":"tides" }"#);
        assert_eq!(a, b);
        assert_ne!(
            a,
            ArgsHash::of(r#"{"q":"tide","opts":{"n":1,"lang":"en"}}"#)
        );
    }

    #[test]
    fn the_stores_hex_round_trips_and_anything_else_is_refused() {
        let a = ArgsHash::of("{}");
        assert_eq!(a.hex().len(), 64);
        assert_eq!(a.hex(), a.hex().to_lowercase());
        assert_eq!(ArgsHash::from_hex(&a.hex()), Ok(a));
        assert_eq!(ArgsHash::from_hex(&a.hex().to_uppercase()), Ok(a));
        assert_eq!(ArgsHash::from_hex(""), Ok(ArgsHash::default()));
        assert_eq!(ArgsHash::default().hex(), "");
        for bad in ["ab", &"g".repeat(64), &format!("+{}", &a.hex()[1..])] {
            let e = ArgsHash::from_hex(bad).unwrap_err();
            assert!(e.contains("64 hex digits"), "{e}");
        }
    }
}
