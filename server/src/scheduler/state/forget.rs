//! The tool registry's bounds: at most `max_tools_per_tenant` tools per
//! tenant, and tools that no worker serves and no queued task needs are
//! forgotten, after `tool_retention`, or sooner when a registration needs
//! their place. A forgotten tool is NOT_FOUND until a worker registers it
//! again.
//!
//! The seam with a persisted registry: every forgetting goes through
//! [`State::forget`], whose returned keys the owner removes from the store
//! as well.
use std::{sync::Arc, time::SystemTime};

use super::{Io, State, ToolEntry};
use crate::tenant;

impl ToolEntry {
    /// No worker serves it and no task of it is queued or running here.
    fn forgettable(&self) -> bool {
        self.workers.is_empty() && self.queue.is_empty()
    }
}

impl<I: Io> State<I> {
    /// Makes room for a registration by `tenant` of the tools `names`
    /// (keys): forgets the tenant's forgettable tools, longest unserved
    /// first, as many as the new ones exceed `max`. Returns the keys
    /// forgotten, or, when even that is not enough, the number of tools the
    /// tenant keeps.
    pub fn make_room(
        &mut self,
        tenant: &str,
        names: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, usize> {
        let mine = |key: &str| tenant::of(key) == tenant;
        let known = self
            .tools
            .iter()
            .filter(|(k, t)| t.spec.is_some() && mine(k))
            .count();
        let new = names
            .iter()
            .filter(|n| self.tools.get(*n).is_none_or(|t| t.spec.is_none()))
            .count();
        let over = (known + new).saturating_sub(max);
        if over == 0 {
            return Ok(Vec::new());
        }
        let mut candidates: Vec<(Option<SystemTime>, Arc<str>)> = self
            .tools
            .iter()
            .filter(|(k, t)| mine(k) && t.spec.is_some() && t.forgettable())
            .filter(|(k, _)| !names.contains(k))
            .map(|(k, t)| (t.unserved_since, k.clone()))
            .collect();
        if candidates.len() < over {
            return Err(known);
        }
        // Longest unserved first; not yet stamped (`None`) counts as now.
        candidates.sort_by_key(|(since, _)| (since.is_none(), *since));
        let keys: Vec<Arc<str>> = candidates.into_iter().take(over).map(|(_, k)| k).collect();
        Ok(self.forget(keys))
    }

    /// Forgets every tool unserved for `retention` at `now` (and entries
    /// left by recovered tasks once their queue is empty). Stamps newly
    /// unserved ones. Returns the keys of forgotten tools that had a spec.
    pub fn forget_unserved(
        &mut self,
        retention: std::time::Duration,
        now: SystemTime,
    ) -> Vec<Arc<str>> {
        let mut old = Vec::new();
        for (key, entry) in &mut self.tools {
            if !entry.forgettable() {
                entry.unserved_since = None;
                continue;
            }
            match entry.unserved_since {
                _ if entry.spec.is_none() => old.push(key.clone()),
                None => entry.unserved_since = Some(now),
                Some(since) if now.duration_since(since).unwrap_or_default() >= retention => {
                    old.push(key.clone());
                }
                Some(_) => {}
            }
        }
        self.forget(old)
    }

    /// Removes forgettable tools `keys`; returns those removed that had a spec.
    pub fn forget(&mut self, keys: Vec<Arc<str>>) -> Vec<Arc<str>> {
        keys.into_iter()
            .filter(|k| {
                self.tools.get(k).is_some_and(ToolEntry::forgettable)
                    && self.tools.remove(k).is_some_and(|t| t.spec.is_some())
            })
            .collect()
    }

    /// Registered tools, every tenant together.
    #[cfg(test)]
    pub fn tool_count(&self) -> usize {
        self.tools.values().filter(|t| t.spec.is_some()).count()
    }
}
