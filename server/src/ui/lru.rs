//! A bounded map whose entries belong to tenants, for what the dashboard
//! remembers (tool statistics, sessions, task attempts): at most
//! `per_tenant` entries of one tenant and `total` of all tenants. A new
//! entry past its tenant's bound evicts that tenant's least recently used
//! one; past the total, the least recently used entry of the tenant holding
//! the most (so a tenant never loses entries to another while it holds no
//! more than its share of `total`). New entries are never refused: the
//! dashboard shows what was used most recently.
use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

struct Entry<V> {
    tenant: Box<str>,
    used: u64,
    value: V,
}

pub struct TenantLru<K, V> {
    per_tenant: usize,
    total: usize,
    /// Advances at every use: the order of use.
    tick: u64,
    entries: HashMap<K, Entry<V>>,
    /// Per tenant, its keys by last use (oldest first).
    tenants: HashMap<Box<str>, BTreeMap<u64, K>>,
}

impl<K: Hash + Eq + Clone, V> TenantLru<K, V> {
    /// A map of at most `per_tenant` entries per tenant and `total` in all
    /// (each at least 1).
    pub fn new(per_tenant: usize, total: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            total: total.max(1),
            tick: 0,
            entries: HashMap::new(),
            tenants: HashMap::new(),
        }
    }

    /// The entry of `key` (of `tenant`), made by `make` when new (after
    /// evicting as the module says), now the most recently used.
    pub fn touch(&mut self, tenant: &str, key: &K, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            let order = self.tenants.entry(e.tenant.clone()).or_default();
            order.remove(&e.used);
            order.insert(tick, key.clone());
            e.used = tick;
        } else {
            self.make_room(tenant);
            self.tenants
                .entry(tenant.into())
                .or_default()
                .insert(tick, key.clone());
            self.entries.insert(
                key.clone(),
                Entry {
                    tenant: tenant.into(),
                    used: tick,
                    value: make(),
                },
            );
        }
        &mut self
            .entries
            .get_mut(key)
            .expect("inserted or found above")
            .value
    }

    /// Evicts what a new entry of `tenant` needs.
    fn make_room(&mut self, tenant: &str) {
        let own = self.tenants.get(tenant).map_or(0, BTreeMap::len);
        let victim = if own >= self.per_tenant {
            Some(tenant.into())
        } else if self.entries.len() >= self.total {
            // The tenant holding the most; of equals, the one whose least
            // recently used entry is oldest.
            self.tenants
                .iter()
                .max_by_key(|(_, order)| {
                    let oldest = order.keys().next().copied().unwrap_or(u64::MAX);
                    (order.len(), std::cmp::Reverse(oldest))
                })
                .map(|(t, _)| t.clone())
        } else {
            None
        };
        if let Some(victim) = victim {
            self.evict_oldest(&victim);
        }
    }

    fn evict_oldest(&mut self, tenant: &str) {
        let Some(order) = self.tenants.get_mut(tenant) else {
            return;
        };
        if let Some((_, key)) = order.pop_first() {
            self.entries.remove(&key);
        }
        if order.is_empty() {
            self.tenants.remove(tenant);
        }
    }

    /// The value of `key`, not marking it used.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|e| &e.value)
    }

    /// The value of `key` to change, not marking it used.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|e| &e.value)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries of `tenant`.
    #[cfg(test)]
    pub fn tenant_len(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_evicts_its_own_least_recently_used_first() {
        let mut m: TenantLru<u32, ()> = TenantLru::new(3, 6);
        for k in 0..3 {
            m.touch("a", &k, || ());
        }
        m.touch("a", &0, || ());
        m.touch("a", &3, || ());
        assert!(m.get(&1).is_none(), "1 was the least recently used");
        assert!(m.get(&0).is_some() && m.get(&2).is_some());
        assert_eq!(m.tenant_len("a"), 3);
        // Another tenant churns: it loses its own, never a's.
        for k in 100..110 {
            m.touch("b", &k, || ());
        }
        assert_eq!(m.tenant_len("a"), 3);
        assert_eq!(m.tenant_len("b"), 3);
        assert!(m.get(&109).is_some() && m.get(&100).is_none());
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn past_the_total_the_tenant_holding_most_gives_way() {
        let mut m: TenantLru<u32, ()> = TenantLru::new(4, 6);
        for k in 0..4 {
            m.touch("a", &k, || ());
        }
        for k in 10..12 {
            m.touch("b", &k, || ());
        }
        m.touch("c", &20, || ());
        assert_eq!(
            (m.tenant_len("a"), m.tenant_len("b"), m.tenant_len("c")),
            (3, 2, 1)
        );
        assert!(m.get(&0).is_none(), "a's least recently used went");
    }
}
