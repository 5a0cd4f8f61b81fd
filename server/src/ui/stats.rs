//! What the overview, the sessions page and a task's attempts show beyond
//! the live state, kept in memory from the hub's [`Activity`] (this is its
//! [`ActivitySink`]; nothing is read from the store): per tool, finishes per minute over the last hour
//! and the latest run times; queue depth sampled every
//! [`DEPTH_EVERY`] for 15 minutes; the most recently active sessions; the
//! attempts of recent tasks. Every collection is bounded; what this server
//! saw since it started is all it knows.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    model::TaskState,
    scheduler::Scheduler,
    sessions::{Activity, ActivityKind, ActivitySink},
    tenant,
};

/// How often queue depth is sampled.
pub const DEPTH_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes.
const DEPTH_SAMPLES: usize = 90;
/// Run times kept per tool for its percentiles.
const RUNS_KEPT: usize = 512;
/// Tools with statistics; finishes of further tools are not counted.
const MAX_TOOLS: usize = 1024;
/// Sessions remembered, most recently active first.
const SESSIONS_KEPT: usize = 500;
/// Tasks whose attempts are remembered, and attempts per task.
const TASKS_KEPT: usize = 1000;
const ATTEMPTS_KEPT: usize = 16;

/// One tool's last hour.
#[derive(Debug)]
struct ToolStats {
    /// (minute since the epoch, succeeded, failed), indexed by minute % 60.
    minutes: [(u64, u32, u32); 60],
    /// (finished at, run time) of the latest runs.
    runs: VecDeque<(SystemTime, Duration)>,
}

impl Default for ToolStats {
    fn default() -> Self {
        Self {
            minutes: [(0, 0, 0); 60],
            runs: VecDeque::new(),
        }
    }
}

/// A tool's finishes in the last hour and its run-time percentiles (over
/// its latest 512 runs within that hour). Failed counts FAILED and
/// TIMED_OUT; cancelled tasks count in neither.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ToolSummary {
    pub succeeded: u64,
    pub failed: u64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
}

/// A session as the sessions page shows it. `session` is a key.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session: Arc<str>,
    /// Seq of its latest completion seen here; 0: none yet.
    pub last_seq: u64,
    /// Highest seq acknowledged here; 0: none.
    pub acked_seq: u64,
    pub last_at: SystemTime,
}

/// One attempt of a task, as this server dispatched it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt: u32,
    pub worker_id: u64,
    pub worker_name: String,
    pub started_at: SystemTime,
    /// `None` while it runs (or when another attempt replaced it).
    pub finished_at: Option<SystemTime>,
    pub state: Option<TaskState>,
}

/// One queue-depth sample: per tenant, queued and running here.
#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    tenants: Vec<(Box<str>, usize, usize)>,
}

#[derive(Default)]
struct Inner {
    tools: HashMap<Arc<str>, ToolStats>,
    samples: VecDeque<Sample>,
    sessions: HashMap<Arc<str>, SessionInfo>,
    attempts: HashMap<Uuid, Vec<Attempt>>,
    attempt_order: VecDeque<Uuid>,
}

/// The dashboard's memory of recent activity.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

fn minute(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl ActivitySink for Stats {
    fn observe(&self, a: &Activity) {
        Stats::observe(self, a);
    }
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one event in.
    pub fn observe(&self, a: &Activity) {
        let mut inner = self.lock();
        match &a.kind {
            ActivityKind::Submitted => {
                inner.touch_session(&a.session, a.at);
            }
            ActivityKind::Started {
                attempt,
                worker_id,
                worker_name,
            } => {
                inner.touch_session(&a.session, a.at);
                inner.started(a.task_id, *attempt, *worker_id, worker_name, a.at);
            }
            ActivityKind::Finished { state, seq, run } => {
                let s = inner.touch_session(&a.session, a.at);
                s.last_seq = s.last_seq.max(*seq);
                if let Some(list) = inner.attempts.get_mut(&a.task_id)
                    && let Some(last) = list.last_mut()
                    && last.finished_at.is_none()
                {
                    last.finished_at = Some(a.at);
                    last.state = Some(*state);
                }
                inner.finished(&a.tool, *state, *run, a.at);
            }
            ActivityKind::Acked { up_to_seq } => {
                let s = inner.touch_session(&a.session, a.at);
                s.acked_seq = s.acked_seq.max(*up_to_seq);
            }
        }
    }

    /// Records queue depth per tool key (the scheduler's `depth_all`).
    pub fn sample(&self, depth: &HashMap<Arc<str>, (usize, usize)>, at: SystemTime) {
        let mut per: HashMap<&str, (usize, usize)> = HashMap::new();
        for (key, (q, r)) in depth {
            let e = per.entry(tenant::of(key)).or_default();
            e.0 += q;
            e.1 += r;
        }
        let tenants = per
            .into_iter()
            .filter(|(_, (q, r))| q + r > 0)
            .map(|(t, (q, r))| (Box::from(t), q, r))
            .collect();
        let mut inner = self.lock();
        if inner.samples.len() == DEPTH_SAMPLES {
            inner.samples.pop_front();
        }
        inner.samples.push_back(Sample { at, tenants });
    }

    /// The last hour of the tool key `tool` at `now`.
    pub fn tool(&self, tool: &str, now: SystemTime) -> ToolSummary {
        let inner = self.lock();
        let Some(t) = inner.tools.get(tool) else {
            return ToolSummary::default();
        };
        let this = minute(now);
        let mut out = ToolSummary::default();
        for (m, ok, failed) in t.minutes {
            if m + 60 > this && m <= this {
                out.succeeded += u64::from(ok);
                out.failed += u64::from(failed);
            }
        }
        let hour_ago = now.checked_sub(Duration::from_secs(3600));
        let mut runs: Vec<Duration> = t
            .runs
            .iter()
            .filter(|(at, _)| hour_ago.is_none_or(|h| *at >= h))
            .map(|(_, d)| *d)
            .collect();
        runs.sort();
        out.p50 = percentile(&runs, 50);
        out.p99 = percentile(&runs, 99);
        out
    }

    /// Queue depth samples, oldest first: (at, queued, running) of `tenant`
    /// (every tenant summed when `None`).
    pub fn depth(&self, tenant: Option<&str>) -> Vec<(SystemTime, usize, usize)> {
        self.lock()
            .samples
            .iter()
            .map(|s| {
                let (q, r) = s
                    .tenants
                    .iter()
                    .filter(|(t, _, _)| tenant.is_none_or(|want| &**t == want))
                    .fold((0, 0), |(q, r), (_, tq, tr)| (q + tq, r + tr));
                (s.at, q, r)
            })
            .collect()
    }

    /// Up to `limit` sessions of `tenant` (all when `None`), most recently
    /// active first.
    pub fn sessions(&self, tenant: Option<&str>, limit: usize) -> Vec<SessionInfo> {
        let inner = self.lock();
        let mut out: Vec<SessionInfo> = inner
            .sessions
            .values()
            .filter(|s| tenant.is_none_or(|t| tenant::of(&s.session) == t))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.last_at.cmp(&a.last_at).then(a.session.cmp(&b.session)));
        out.truncate(limit);
        out
    }

    /// The attempts of task `id` this server dispatched, oldest first.
    pub fn attempts(&self, id: Uuid) -> Vec<Attempt> {
        self.lock().attempts.get(&id).cloned().unwrap_or_default()
    }
}

impl Inner {
    fn touch_session(&mut self, session: &Arc<str>, at: SystemTime) -> &mut SessionInfo {
        if !self.sessions.contains_key(session) && self.sessions.len() >= SESSIONS_KEPT {
            let oldest = self
                .sessions
                .values()
                .min_by_key(|s| s.last_at)
                .map(|s| s.session.clone());
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let s = self
            .sessions
            .entry(session.clone())
            .or_insert_with(|| SessionInfo {
                session: session.clone(),
                last_seq: 0,
                acked_seq: 0,
                last_at: at,
            });
        s.last_at = s.last_at.max(at);
        s
    }

    fn started(&mut self, id: Uuid, attempt: u32, worker_id: u64, name: &str, at: SystemTime) {
        if !self.attempts.contains_key(&id) {
            if self.attempt_order.len() >= TASKS_KEPT
                && let Some(old) = self.attempt_order.pop_front()
            {
                self.attempts.remove(&old);
            }
            self.attempt_order.push_back(id);
        }
        let list = self.attempts.entry(id).or_default();
        if list.len() >= ATTEMPTS_KEPT {
            list.remove(0);
        }
        list.push(Attempt {
            attempt,
            worker_id,
            worker_name: name.to_string(),
            started_at: at,
            finished_at: None,
            state: None,
        });
    }

    fn finished(
        &mut self,
        tool: &Arc<str>,
        state: TaskState,
        run: Option<Duration>,
        at: SystemTime,
    ) {
        if !self.tools.contains_key(tool) && self.tools.len() >= MAX_TOOLS {
            return;
        }
        let t = self.tools.entry(tool.clone()).or_default();
        let m = minute(at);
        let slot = &mut t.minutes[(m % 60) as usize];
        if slot.0 != m {
            *slot = (m, 0, 0);
        }
        match state {
            TaskState::Succeeded => slot.1 += 1,
            TaskState::Failed | TaskState::TimedOut => slot.2 += 1,
            _ => {}
        }
        if let Some(run) = run
            && matches!(state, TaskState::Succeeded | TaskState::Failed)
        {
            if t.runs.len() == RUNS_KEPT {
                t.runs.pop_front();
            }
            t.runs.push_back((at, run));
        }
    }
}

/// The `p`th percentile (nearest rank) of sorted `values`.
fn percentile(values: &[Duration], p: usize) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * p).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// Queued and running tasks per tool key of every tenant: this server's
/// queue and workers, plus (several servers on one database) the tasks
/// waiting in the shared queue, which any server may claim. A failed store
/// read leaves those out, logged.
pub async fn depth(sched: &Scheduler) -> HashMap<Arc<str>, (usize, usize)> {
    let mut depth = sched.depth_all();
    match sched.shared_queued().await {
        Ok(shared) => {
            for (tool, n) in shared {
                depth.entry(tool).or_default().0 += n;
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the shared queue's depth failed"),
    }
    depth
}

/// Samples queue depth into `stats` every [`DEPTH_EVERY`], until
/// `shutdown`. (Activity reaches `stats` as the hub's sink.)
pub fn spawn(stats: Arc<Stats>, sched: Arc<Scheduler>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DEPTH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => stats.sample(&depth(&sched).await, SystemTime::now()),
            }
        }
    });
}

#[cfg(test)]
mod tests {
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
        assert_eq!(s.sessions(None, usize::MAX).len(), SESSIONS_KEPT);

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
}
