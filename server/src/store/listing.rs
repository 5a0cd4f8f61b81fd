//! What [`super::Store::list_tasks`] is asked: a filter over stored tasks and
//! a keyset cursor on (created_at, id), so a page never repeats or skips a
//! task that was there before, however many are inserted meanwhile.
use std::time::SystemTime;

use uuid::Uuid;

use crate::model::{TaskRecord, TaskState};

/// One page's worth of a task listing.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    /// Only keys that start with this (a tenant and its separator); `None`:
    /// every task.
    pub key_prefix: Option<String>,
    /// Only this session key.
    pub session: Option<String>,
    /// Only this tool key.
    pub tool: Option<String>,
    /// Only these states; empty: any.
    pub states: Vec<TaskState>,
    /// Only tasks after this one in the listing's order.
    pub after: Option<Cursor>,
    /// Descending (created_at, id) instead of ascending.
    pub newest_first: bool,
    /// Most tasks returned.
    pub limit: usize,
    /// Also fallback runs (`call.fallback_for` set). Hidden otherwise: a
    /// run answers its call (parked, still listed) and never takes a
    /// completion of its own, so listing it would show one call twice,
    /// under an ID that never completes.
    pub fallback_runs: bool,
}

/// A position in a listing: the last task of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: SystemTime,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(task: &TaskRecord) -> Self {
        Self {
            created_at: task.created_at,
            id: task.id,
        }
    }
}

/// What a listing's filter and cursor look at in a task (the memory store
/// keeps its tasks in a form of its own).
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    pub id: Uuid,
    pub created_at: SystemTime,
    pub session: &'a str,
    pub tool: &'a str,
    pub state: TaskState,
    /// A fallback run (`call.fallback_for` set).
    pub run: bool,
}

impl TaskQuery {
    /// Whether `task` passes the filter and comes after the cursor (the
    /// memory store's test; the SQL stores say the same in SQL).
    pub fn matches(&self, task: &Listed<'_>) -> bool {
        let after_ok = self.after.is_none_or(|c| {
            let key = (task.created_at, task.id);
            if self.newest_first {
                key < (c.created_at, c.id)
            } else {
                key > (c.created_at, c.id)
            }
        });
        after_ok && self.passes_filter(task)
    }

    /// Whether `task` passes the filter, wherever it is in the listing (what
    /// [`super::Store::count_tasks`] counts).
    pub fn passes_filter(&self, task: &Listed<'_>) -> bool {
        self.key_prefix
            .as_deref()
            .is_none_or(|p| task.session.starts_with(p))
            && self.session.as_deref().is_none_or(|s| task.session == s)
            && self.tool.as_deref().is_none_or(|t| task.tool == t)
            && (self.states.is_empty() || self.states.contains(&task.state))
            && (self.fallback_runs || !task.run)
    }

    /// Sorts tasks in the listing's order.
    pub fn sort(&self, tasks: &mut [TaskRecord]) {
        tasks.sort_by_key(|t| (t.created_at, t.id));
        if self.newest_first {
            tasks.reverse();
        }
    }
}
