//! The pending counts: unfinished (queued plus running) tasks per session
//! key and per tenant, and the bytes of arguments each tenant's hold, which
//! `--max-pending-per-session`, `--max-pending-per-tenant` and
//! `--max-pending-bytes-per-tenant` bound (`admission::check_room`).
use std::sync::Arc;

use super::{Io, State};
use crate::{model::TaskRecord, tenant};

/// What one tenant's unfinished tasks hold.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TenantPending {
    pub(super) tasks: usize,
    pub(super) bytes: usize,
}

/// One unfinished task's place in the pending counts ([`State::reserve`]):
/// its session key and the bytes of arguments counted for it. It goes with
/// the task into the live state ([`State::enqueue`]) and comes back to
/// [`State::release`], which takes off exactly what was counted; neither
/// `Clone` nor `Copy`, so no task is counted off twice.
#[must_use = "a reservation not given to enqueue or release stays counted"]
#[derive(Debug)]
pub struct Held {
    pub(super) session: Arc<str>,
    pub(super) bytes: usize,
}

impl<I: Io> State<I> {
    /// Queued plus running tasks of a session key.
    pub fn pending(&self, session: &str) -> usize {
        self.pending.get(session).copied().unwrap_or(0)
    }

    /// Queued plus running tasks of a tenant.
    pub fn tenant_pending(&self, tenant: &str) -> usize {
        self.tenant_pending.get(tenant).map_or(0, |t| t.tasks)
    }

    /// Bytes of arguments the queued plus running tasks of a tenant hold.
    pub fn tenant_pending_bytes(&self, tenant: &str) -> usize {
        self.tenant_pending.get(tenant).map_or(0, |t| t.bytes)
    }

    /// Counts `task` as pending: one more task of its session and tenant,
    /// and its arguments' bytes (the payload the scheduler holds for it)
    /// for its tenant. Sets `task.session` to the key every pending task of
    /// the session shares. The reservation goes to [`Self::enqueue`] with
    /// the task, or back to [`Self::release`].
    pub fn reserve(&mut self, task: &mut TaskRecord) -> Held {
        let bytes = task.arguments.len();
        let tenant = tenant::of(&task.session);
        match self.tenant_pending.get_mut(tenant) {
            Some(t) => {
                t.tasks += 1;
                t.bytes += bytes;
            }
            None => {
                let t = TenantPending { tasks: 1, bytes };
                self.tenant_pending.insert(tenant.into(), t);
            }
        }
        if let Some((name, count)) = self.pending.get_key_value(&*task.session) {
            let name = name.clone();
            let count = *count;
            self.pending.insert(name.clone(), count + 1);
            task.session = name;
        } else {
            self.pending.insert(task.session.clone(), 1);
        }
        Held {
            session: task.session.clone(),
            bytes,
        }
    }

    /// Counts a pending task off: exactly what its reservation counted.
    pub fn release(&mut self, held: Held) {
        let Held { session, bytes } = held;
        let tenant = tenant::of(&session);
        if let Some(t) = self.tenant_pending.get_mut(tenant) {
            t.tasks -= 1;
            t.bytes -= bytes;
            if t.tasks == 0 {
                self.tenant_pending.remove(tenant);
            }
        }
        if let Some(count) = self.pending.get_mut(&*session) {
            *count -= 1;
            if *count == 0 {
                self.pending.remove(&*session);
            }
        }
    }
}
