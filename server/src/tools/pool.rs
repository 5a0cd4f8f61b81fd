//! Where argument validation runs: never on the async executor's threads.
//!
//! Checking arguments against a schema is CPU work that grows with the
//! arguments (up to `--max-arguments-bytes`) and the schema (up to
//! `--max-schema-bytes`, its expansion bounded by `cost.rs`); run inline it
//! would stall every other request on that executor thread. Checks that may
//! cost more than a few microseconds run on the pool's own threads, one per
//! core, at most `per_tenant` of one tenant at once, so one tenant's heavy
//! schema holds at most its own share of the cores and never another
//! tenant's submit. The threads run at the lowest CPU priority (nice 19 on
//! Linux): when the cores are busy, the executor's short requests (and
//! everything else on the machine) go first.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, mpsc},
};

use tokio::sync::{Semaphore, oneshot};

use super::ToolSpec;
use crate::{config::Limits, error::Error};

/// Checks whose cost bound ([`ToolSpec::check_cost`]: schema expansion
/// times argument bytes) is at most this run inline, at the executor's
/// priority: they take microseconds, and a small argument must not wait
/// behind the low-priority threads on a busy machine.
const INLINE_COST: u64 = 4 * 1024;

/// Tenants whose idle semaphores are kept before the map is swept.
const SWEEP_AT: usize = 1024;

/// A check to run on a pool thread.
type Job = Box<dyn FnOnce() + Send>;

/// Bounded, per-tenant-fair argument validation.
pub struct ValidationPool {
    global: Arc<Semaphore>,
    threads: usize,
    per_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    /// To the pool's threads; they end when it is dropped.
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Default for ValidationPool {
    /// As many threads as cores, half of them (at least one) per tenant.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, (cores / 2).max(1))
    }
}

impl ValidationPool {
    /// `threads` checks at once in all, `per_tenant` of one tenant (both ≥ 1).
    pub fn new(threads: usize, per_tenant: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("errand-validate-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the pool is gone
                        }
                    }
                })
                .expect("starting a validation thread");
        }
        Self {
            global: Arc::new(Semaphore::new(threads)),
            threads,
            per_tenant: per_tenant.clamp(1, threads),
            tenants: Mutex::new(HashMap::new()),
            jobs: Mutex::new(tx),
        }
    }

    /// Checks that may run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn tenant(&self, tenant: &str) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if tenants.len() >= SWEEP_AT {
            let full = self.per_tenant;
            tenants.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
        }
        if let Some(s) = tenants.get(tenant) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.per_tenant));
        tenants.insert(tenant.into(), s.clone());
        s
    }

    /// [`ToolSpec::check_arguments`] for `tenant`, off the executor unless
    /// trivially cheap. Errors: those of `check_arguments`.
    pub async fn check(
        &self,
        spec: &ToolSpec,
        tenant: &str,
        arguments_json: String,
        limits: &Limits,
    ) -> Result<Arc<str>, Error> {
        if spec.check_cost(arguments_json.len()) <= INLINE_COST {
            return spec.check_arguments(&arguments_json, limits);
        }
        // Over the size limit: refused without parsing, so no need to queue.
        if arguments_json.len() > limits.max_arguments_bytes {
            return spec.check_arguments(&arguments_json, limits);
        }
        let closed = || Error::Unavailable("the server is shutting down".into());
        let mine = self.tenant(tenant);
        let _mine = mine.acquire().await.map_err(|_| closed())?;
        let _slot = self
            .global
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let (spec, limits) = (spec.clone(), limits.clone());
        let name = spec.name.name().to_string();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                spec.check_arguments(&arguments_json, &limits)
            }));
            let _ = tx.send(checked.ok());
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
        if sent.is_err() {
            return Err(closed());
        }
        match rx.await {
            Ok(Some(checked)) => checked,
            _ => {
                tracing::error!(tool = %name, "argument validation panicked");
                Err(Error::invalid(format!(
                    "arguments_json could not be checked against the input schema of tool `{name}`"
                )))
            }
        }
    }
}

/// Lowers the calling thread's CPU priority (Linux: its own nice value).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; a failure leaves the
    // priority as it was, which is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{ToolDef, ToolKey};

    fn spec(schema: &str) -> ToolSpec {
        let def = ToolDef {
            name: ToolKey::from_key("t"),
            input_schema_json: schema.into(),
            ..Default::default()
        };
        ToolSpec::new(&def, &Limits::default()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_give_the_same_answers_off_the_executor() {
        let pool = ValidationPool::new(2, 1);
        let limits = Limits::default();
        let s = spec(r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#);
        let ok = pool.check(&s, "a", r#"{"n":1}"#.into(), &limits).await;
        assert_eq!(&*ok.unwrap(), r#"{"n":1}"#);
        let bad = pool.check(&s, "a", r#"{"n":"x"}"#.into(), &limits).await;
        assert!(matches!(bad, Err(Error::InvalidArgument(m)) if m.contains("/n")));
        let plain = spec("");
        assert_eq!(
            &*pool
                .check(&plain, "a", String::new(), &limits)
                .await
                .unwrap(),
            "{}"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_threads_run_at_the_lowest_priority() {
        let pool = ValidationPool::new(1, 1);
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // SAFETY: reads the calling thread's own nice value.
            let nice = unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, tid)
            };
            let _ = tx.send(nice);
        });
        pool.jobs.lock().unwrap().send(job).unwrap();
        assert_eq!(rx.await.unwrap(), 19);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_holding_its_share_does_not_hold_another() {
        let pool = Arc::new(ValidationPool::new(2, 1));
        // Tenant a's one permit is taken: its next check waits, b's does not.
        let held = pool.tenant("a").acquire_owned().await.unwrap();
        let s = spec(r#"{"type":"object"}"#);
        let limits = Limits::default();
        // Over the inline budget: these go to the pool.
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(INLINE_COST as usize));
        let waiting = {
            let (pool, s, limits, big) = (pool.clone(), s.clone(), limits.clone(), big.clone());
            tokio::spawn(async move { pool.check(&s, "a", big, &limits).await })
        };
        let b = tokio::time::timeout(Duration::from_secs(30), pool.check(&s, "b", big, &limits))
            .await
            .expect("b is not held up by a");
        assert!(b.is_ok());
        assert!(!waiting.is_finished());
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
    }
}
