//! The tool registry and its persisted copy: registrations (with their
//! conflicting-definition rule), what the store keeps of each tool
//! ([`StoredTool`]), loading it at start (and, on a shared store, learning
//! what other servers stored), and the one place that forgets a tool, here
//! and in the store.
//!
//! A tool known from the store and served by no worker is listed (with
//! `workers = 0`) and takes calls, which wait in the queue until a worker
//! registers it or their queue timeout passes. Writes of the registry are
//! serialized (`Scheduler::registry_writes`), so the store ends with the
//! definition the live state has.
use std::{sync::Arc, time::SystemTime};

use tracing::{info, warn};

use super::{CommandTx, Scheduler, WorkerTx, admission};
use crate::{
    error::Error,
    logs,
    model::{Registration, ToolDef, ToolKey, ToolPolicy, millis},
    store::{StoreError, StoredTool},
    tools::ToolSpec,
};

/// What the store keeps of `spec`, last served at `at`.
fn to_stored(spec: &ToolSpec, at: SystemTime) -> StoredTool {
    StoredTool {
        name: spec.name.as_key().to_string(),
        description: spec.description.to_string(),
        input_schema: spec.input_schema_json.to_string(),
        timeout_ms: spec.timeout.map_or(0, millis),
        queue_timeout_ms: spec.queue_timeout.map_or(0, millis),
        policy: spec.policy.to_stored(),
        last_served_at: at,
    }
}

/// The refusal of a registration of tool `name` whose definition differs
/// (`fields`) from the one connected workers serve (`where_`: "" here).
fn differs_error(name: &str, fields: &[&str], where_: &str) -> Error {
    Error::FailedPrecondition(format!(
        "tool `{}` is served by connected workers{where_} with a different definition ({} \
         differ): register the same definition, or stop those workers first",
        name,
        fields.join(", ")
    ))
}

impl Scheduler {
    /// Adds a worker and its tools, and stores their definitions. Its
    /// commands (queued work first) arrive on `tx`, which must be new and
    /// have room for `max_concurrency`.
    ///
    /// Errors: INVALID_ARGUMENT (a bad definition), FAILED_PRECONDITION (a
    /// definition that differs from the one connected workers serve),
    /// RESOURCE_EXHAUSTED (the tenant's tool limit), UNAVAILABLE (draining).
    pub async fn register(
        self: &Arc<Self>,
        reg: Registration,
        tx: CommandTx,
    ) -> Result<super::WorkerId, Error> {
        let tx = WorkerTx {
            commands: tx,
            store: self.store.clone(),
        };
        let specs = admission::check_registration(&reg, &self.config.limits)?;
        let max_concurrency = reg.max_concurrency.max(1) as usize;
        let name = if reg.worker_name.is_empty() {
            "worker".to_string()
        } else {
            reg.worker_name
        };
        let _writes = self.registry_writes.lock().await;
        self.refuse(&self.lock(), &specs, &[])?;
        let advertised = self.register_shared(&specs).await?;
        let (id, forgotten) = {
            let mut st = self.lock();
            let forgotten = self
                .admit_tools(&mut st, &specs, &[])
                .inspect_err(|_| self.unadvertise(advertised))?;
            let id = st.add_worker(name.clone(), specs.clone(), max_concurrency, tx);
            let (tenant, tools) = logs::tools(specs.iter().map(|s| s.name.as_key()));
            info!(worker_id = id, worker = %logs::field(&name), tenant = %tenant, tools = %tools, max_concurrency, "worker registered");
            st.start_worker(id, SystemTime::now());
            self.apply(&mut st);
            (id, forgotten)
        };
        self.registered(&forgotten, &specs).await;
        Ok(id)
    }

    /// A later Register on connected worker `worker`'s stream: it serves
    /// `reg.tools` too (those it serves already stay). Its `worker_name` is
    /// ignored and its `max_concurrency` must be 0 or the first one's: the
    /// worker's stream was sized by the first.
    ///
    /// Errors: [`Self::register`]'s; INVALID_ARGUMENT when the tools it
    /// serves in all would be more than `--max-tools-per-worker`, or for
    /// another `max_concurrency`; UNAVAILABLE when the worker is gone.
    pub async fn register_more(
        self: &Arc<Self>,
        worker: super::WorkerId,
        reg: Registration,
    ) -> Result<(), Error> {
        let specs = admission::check_registration(&reg, &self.config.limits)?;
        let _writes = self.registry_writes.lock().await;
        {
            let st = self.lock();
            let served = self.check_more(&st, worker, &reg, &specs)?;
            self.refuse(&st, &specs, &served)?;
        }
        let advertised = self.register_shared(&specs).await?;
        let forgotten = (|| {
            let mut st = self.lock();
            let served = self.check_more(&st, worker, &reg, &specs)?;
            let forgotten = self.admit_tools(&mut st, &specs, &served)?;
            if !st.add_tools(worker, specs.clone()) {
                return Err(Error::Unavailable(
                    "the worker's stream is closing: connect again".into(),
                ));
            }
            let (tenant, tools) = logs::tools(specs.iter().map(|s| s.name.as_key()));
            info!(worker_id = worker, tenant = %tenant, tools = %tools, "worker registered more tools");
            self.apply(&mut st);
            Ok(forgotten)
        })()
        .inspect_err(|_| self.unadvertise(advertised))?;
        self.registered(&forgotten, &specs).await;
        Ok(())
    }

    /// The checks of a later Register `reg` (of `specs`) on worker
    /// `worker`'s stream, beside [`Self::refuse`]'s; returns the tools the
    /// worker serves already.
    fn check_more(
        &self,
        st: &super::State<super::Tokio>,
        worker: super::WorkerId,
        reg: &Registration,
        specs: &[ToolSpec],
    ) -> Result<Vec<Arc<str>>, Error> {
        let Some((served, max_concurrency)) =
            (st.worker_tools(worker)).map(|(tools, max)| (tools.to_vec(), max))
        else {
            return Err(Error::Unavailable(
                "the worker's stream is closing: connect again".into(),
            ));
        };
        if reg.max_concurrency != 0 && reg.max_concurrency as usize != max_concurrency {
            return Err(Error::invalid(format!(
                "a later Register has max_concurrency {}, the worker registered {}: send \
                 0 or the same value (connect again to change it)",
                reg.max_concurrency, max_concurrency
            )));
        }
        let new = (specs.iter())
            .filter(|s| !served.iter().any(|t| **t == *s.name.as_key()))
            .count();
        let max = self.config.limits.max_tools_per_worker;
        if served.len() + new > max {
            return Err(Error::invalid(format!(
                "the worker would serve {} tools, the limit is {max}: serve the others \
                 from another worker",
                served.len() + new
            )));
        }
        Ok(served)
    }

    /// Shared mode: the registration of `specs` decided for every server
    /// at once by the store (`SharedQueue::register_tools`): refused
    /// (FAILED_PRECONDITION) when a tool's stored definition differs and
    /// another server's workers serve it; accepted, the definitions are
    /// stored and advertised as served here. True when they were; false on
    /// a single server, where [`Self::refuse`] decides alone.
    ///
    /// Errors: UNAVAILABLE when the store cannot tell (the registration
    /// cannot be checked against the other servers').
    async fn register_shared(&self, specs: &[ToolSpec]) -> Result<bool, Error> {
        let Some(shared) = self.store.shared() else {
            return Ok(false);
        };
        let tools: Vec<StoredTool> = specs
            .iter()
            .map(|s| to_stored(s, SystemTime::now()))
            .collect();
        let refused = shared.register_tools(&tools).await.map_err(|e| {
            Error::Unavailable(format!(
                "the tool definitions could not be checked against the other servers' \
                 ({e}): connect again once the database answers"
            ))
        })?;
        let Some(stored) = refused.first() else {
            return Ok(true);
        };
        let new = specs.iter().find(|s| *s.name.as_key() == *stored.name);
        let mut fields = match (new, self.spec_of(stored.clone())) {
            (Some(new), Ok(old)) => super::state::differing_fields(&old, new),
            _ => Vec::new(),
        };
        if fields.is_empty() {
            fields.push("definition");
        }
        Err(differs_error(
            crate::tenant::strip(&stored.name),
            &fields,
            " on another server (one that stopped without saying so counts until three \
             --lease-ms have passed)",
        ))
    }

    /// After [`Self::register_shared`] advertised a registration that was
    /// then refused here: the publisher writes this server's true list.
    fn unadvertise(&self, advertised: bool) {
        if advertised {
            self.backlog.tools_changed();
        }
    }

    /// The checks a registration of `specs` passes, by a worker that
    /// serves `served` already, before it changes anything (here or, in
    /// shared mode, in the store): not draining; each definition the same
    /// as the one workers here serve (an unserved known one is replaced);
    /// room in the tenant's tool limit, once unneeded tools are forgotten.
    fn refuse(
        &self,
        st: &super::State<super::Tokio>,
        specs: &[ToolSpec],
        served: &[Arc<str>],
    ) -> Result<(), Error> {
        if st.is_draining() {
            return Err(Error::Unavailable(
                "the server is shutting down: connect again once it is back".into(),
            ));
        }
        for spec in specs {
            match st.differs(spec) {
                Some((fields, true)) => return Err(differs_error(spec.name.name(), &fields, "")),
                Some((fields, false)) => info!(
                    tool = %logs::field(spec.name.name()),
                    differ = ?fields,
                    "no connected worker serves the tool: the new definition replaces the known one"
                ),
                None => {}
            }
        }
        let (tenant, tools) = Self::registering(specs, served);
        (st.room_for(tenant, &tools, self.config.limits.max_tools_per_tenant))
            .map(|_| ())
            .map_err(|kept| self.tool_limit(kept))
    }

    /// The tenant of a registration of `specs` by a worker that serves
    /// `served` already, and every tool it will serve.
    fn registering<'a>(specs: &'a [ToolSpec], served: &[Arc<str>]) -> (&'a str, Vec<Arc<str>>) {
        let mut tools: Vec<Arc<str>> = specs.iter().map(|s| s.name.as_arc().clone()).collect();
        tools.extend(served.iter().cloned());
        (specs[0].name.tenant(), tools)
    }

    /// RESOURCE_EXHAUSTED: the tenant keeps `kept` tools and a registration
    /// would add more than the limit allows.
    fn tool_limit(&self, kept: usize) -> Error {
        let max = self.config.limits.max_tools_per_tenant;
        Error::ResourceExhausted(format!(
            "your tenant has {kept} tools that workers serve or queued tasks need, and \
             this registration adds more than the limit of {max} allows: stop the \
             workers of tools you no longer need (unserved tools are forgotten) or ask \
             the operator to raise --max-tools-per-tenant"
        ))
    }

    /// [`Self::refuse`]'s checks, then the room made in the tenant's tool
    /// limit by forgetting unneeded tools, which it returns.
    fn admit_tools(
        &self,
        st: &mut super::State<super::Tokio>,
        specs: &[ToolSpec],
        served: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, Error> {
        self.refuse(st, specs, served)?;
        let (tenant, tools) = Self::registering(specs, served);
        let forgotten = st
            .make_room(tenant, &tools, self.config.limits.max_tools_per_tenant)
            .map_err(|kept| self.tool_limit(kept))?;
        // Under the state lock: the new tools' series find room.
        self.metrics.forget_tools(&forgotten);
        Ok(forgotten)
    }

    /// After a registration: the tools' change told, the forgotten ones
    /// deleted from the store, the registered ones stored.
    async fn registered(&self, forgotten: &[Arc<str>], specs: &[ToolSpec]) {
        self.backlog.tools_changed();
        self.forget_stored(forgotten, "to make room for a registration")
            .await;
        self.store_tools(specs, SystemTime::now()).await;
    }

    /// Loads the stored tool definitions at start: each is known (listed,
    /// its calls queued) before a worker registers it again. Unserved for
    /// longer than `--tool-retention-secs` since `last_served_at`, it is
    /// forgotten at the next purge. Returns how many are known.
    pub async fn load_tools(&self) -> Result<usize, StoreError> {
        let stored = self.store.tools().await?;
        let count = self.learn(stored);
        if count > 0 {
            info!(tools = count, "loaded known tools from the store");
        }
        Ok(count)
    }

    /// Shared mode: learns the definitions other servers stored, so a tool
    /// registered on any server is known on this one too.
    pub async fn learn_stored_tools(&self) {
        // A registration meanwhile must not be undone by an older read.
        let _writes = self.registry_writes.lock().await;
        match self.store.tools().await {
            Ok(stored) => {
                self.learn(stored);
            }
            Err(e) => warn!(error = %e, "reading the stored tool registry failed"),
        }
    }

    /// Takes stored definitions into the live state (see
    /// `State::learn_tools`); returns how many it holds now.
    fn learn(&self, mut stored: Vec<StoredTool>) -> usize {
        // Only what is new here is checked (its schema compiled): in shared
        // mode this runs at every upkeep, over every stored tool.
        {
            let st = self.lock();
            stored.retain(|t| {
                !st.serves(&t.name)
                    && st
                        .local_spec(&t.name)
                        .is_none_or(|known| to_stored(&known, t.last_served_at) != *t)
            });
        }
        let specs: Vec<(ToolSpec, SystemTime)> = stored
            .into_iter()
            .filter_map(|t| {
                let at = t.last_served_at;
                let name = t.name.clone();
                match self.spec_of(t) {
                    Ok(spec) => Some((spec, at)),
                    Err(e) => {
                        warn!(tool = %logs::field(crate::tenant::strip(&name)), error = %e, "a stored tool definition is not usable under this server's limits: left out");
                        None
                    }
                }
            })
            .collect();
        let max = self.config.limits.max_tools_per_tenant;
        self.lock().learn_tools(specs, max)
    }

    /// The spec of a stored definition, checked as a registration's is.
    fn spec_of(&self, t: StoredTool) -> Result<ToolSpec, Error> {
        let def = ToolDef {
            name: ToolKey::from_key(t.name),
            description: t.description,
            input_schema_json: t.input_schema,
            timeout_ms: t.timeout_ms,
            queue_timeout_ms: t.queue_timeout_ms,
            policy: ToolPolicy::from_stored(&t.policy),
        };
        ToolSpec::new(&def, &self.config.limits)
    }

    /// Stores the definitions of `specs`, served at `at`. A failure is
    /// logged: the live registry is what this process serves from; the
    /// stored copy is what a restart (or another server) starts from, and
    /// the next registration or purge writes it again.
    async fn store_tools(&self, specs: &[ToolSpec], at: SystemTime) {
        if specs.is_empty() {
            return;
        }
        let tools: Vec<StoredTool> = specs.iter().map(|s| to_stored(s, at)).collect();
        if let Err(e) = self.store.put_tools(&tools).await {
            warn!(tools = tools.len(), error = %e, "storing tool definitions failed");
        }
    }

    /// The tools `tools` that no worker here serves any more (their last
    /// worker left): stored as last served now.
    pub(super) async fn unserved_now(&self, tools: &[Arc<str>]) {
        // Read under the writes' lock: a registration meanwhile may have
        // replaced a definition, and its write must not be undone.
        let _writes = self.registry_writes.lock().await;
        let specs: Vec<ToolSpec> = {
            let st = self.lock();
            tools
                .iter()
                .filter(|t| !st.serves(t))
                .filter_map(|t| st.local_spec(t))
                .collect()
        };
        self.store_tools(&specs, SystemTime::now()).await;
    }

    /// Tools the registry forgot (see `state/forget.rs`): logged, and their
    /// stored definitions deleted. Every forgetting ends here.
    async fn forget_stored(&self, keys: &[Arc<str>], why: &str) {
        if keys.is_empty() {
            return;
        }
        let (tenant, first) = crate::tenant::split(&keys[0]);
        info!(
            tools = keys.len(),
            tenant, first, "forgot tools no worker serves {why}"
        );
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        if let Err(e) = self.store.forget_tools(&names).await {
            // Loaded again at the next start, and forgotten again then.
            warn!(tools = names.len(), error = %e, "deleting forgotten tool definitions failed");
        }
    }

    /// Every purge interval: forgets tools unserved for
    /// `config.tool_retention`, and stores the served ones as served now, so
    /// a crash leaves `last_served_at` at most one interval old.
    pub(super) async fn registry_upkeep(&self) {
        let _writes = self.registry_writes.lock().await;
        let (forgotten, served) = {
            let mut st = self.lock();
            let forgotten = st.forget_unserved(self.config.tool_retention, SystemTime::now());
            // Also the series of tools forgotten without a definition, or
            // counted after their tool was forgotten.
            self.metrics.retain_tools(|key| st.knows_tool(key));
            let served: Vec<ToolSpec> = st.local_tools().into_iter().map(|(s, _)| s).collect();
            (forgotten, served)
        };
        self.forget_stored(&forgotten, "past --tool-retention-secs")
            .await;
        self.store_tools(&served, SystemTime::now()).await;
    }
}
