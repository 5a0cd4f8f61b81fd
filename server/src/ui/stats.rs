//! What the overview, the sessions page and a task's attempts show beyond
//! the live state, kept in memory from the hub's [`Activity`] (this is its
//! [`ActivitySink`]; nothing is read from the store): per tool, finishes per minute over the last hour
//! and the latest run times; queue depth sampled every
//! [`DEPTH_EVERY`] for 15 minutes; the most recently active sessions; the
//! attempts of recent tasks. Every collection is bounded per tenant and in
//! all (a [`TenantLru`]: one tenant's churn evicts its own least recently
//! used entries, not another tenant's); what this server saw since it
//! started is all it knows.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lru::TenantLru;
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
/// Tools with statistics, per tenant and in all; a new tool evicts the
/// least recently finished one.
const TOOLS_PER_TENANT: usize = 512;
const TOOLS_KEPT: usize = 1024;
/// Sessions remembered (the most recently active), per tenant and in all.
const SESSIONS_PER_TENANT: usize = 500;
const SESSIONS_KEPT: usize = 5000;
/// Tasks whose attempts are remembered (the most recently started), per
/// tenant and in all, and attempts per task.
const TASKS_PER_TENANT: usize = 1000;
const TASKS_KEPT: usize = 5000;
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

struct Inner {
    tools: TenantLru<Arc<str>, ToolStats>,
    samples: VecDeque<Sample>,
    sessions: TenantLru<Arc<str>, SessionInfo>,
    attempts: TenantLru<Uuid, Vec<Attempt>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            tools: TenantLru::new(TOOLS_PER_TENANT, TOOLS_KEPT),
            samples: VecDeque::new(),
            sessions: TenantLru::new(SESSIONS_PER_TENANT, SESSIONS_KEPT),
            attempts: TenantLru::new(TASKS_PER_TENANT, TASKS_KEPT),
        }
    }
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
                let tenant = tenant::of(&a.session);
                inner.started(tenant, a.task_id, *attempt, *worker_id, worker_name, a.at);
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
        let s = self
            .sessions
            .touch(tenant::of(session), session, || SessionInfo {
                session: session.clone(),
                last_seq: 0,
                acked_seq: 0,
                last_at: at,
            });
        s.last_at = s.last_at.max(at);
        s
    }

    fn started(
        &mut self,
        tenant: &str,
        id: Uuid,
        attempt: u32,
        worker_id: u64,
        name: &str,
        at: SystemTime,
    ) {
        let list = self.attempts.touch(tenant, &id, Vec::new);
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
        let t = self.tools.touch(tenant::of(tool), tool, ToolStats::default);
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
#[path = "stats_tests.rs"]
mod tests;
