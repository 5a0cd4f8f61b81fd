//! Test fixtures for progress: a [`ProgressSource`] over a map, as the
//! scheduler keeps the running tasks' latest reports, and a report.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use uuid::Uuid;

use super::ProgressSource;
use crate::model::ProgressRecord;

/// The running tasks' latest reports, by task.
#[derive(Default)]
pub struct Running(pub Mutex<HashMap<Uuid, Arc<ProgressRecord>>>);

impl ProgressSource for Running {
    fn session_progress(&self, session: &str) -> Vec<Arc<ProgressRecord>> {
        let map = self.0.lock().unwrap();
        map.values()
            .filter(|p| &*p.session == session)
            .cloned()
            .collect()
    }
    fn progress_of(&self, task: Uuid) -> Option<Arc<ProgressRecord>> {
        self.0.lock().unwrap().get(&task).cloned()
    }
}

/// Report `index` of `task` in session "s", tool "t": `index` of 10, "step
/// `index`", `index` ms in.
pub fn report(task: Uuid, index: u64) -> Arc<ProgressRecord> {
    Arc::new(ProgressRecord {
        task_id: task,
        session: "s".into(),
        tool: "t".into(),
        index,
        progress: index as f64,
        total: 10.0,
        message: format!("step {index}"),
        detail_json: "".into(),
        elapsed: Duration::from_millis(index),
    })
}
