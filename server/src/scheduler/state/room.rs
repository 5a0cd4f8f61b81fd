//! Shared mode: free slots held on this server's workers for tasks on their
//! way here while the store answers: a submit being stored as claimed by
//! this server, or a claim from the store's queue in flight. A held slot
//! counts as taken, so no other submit or claim counts it too and the
//! server never takes more tasks than its workers have room for.
use std::{collections::HashSet, sync::Arc, time::SystemTime};

use super::{Io, State, WorkerId};

/// Slots held on workers, one entry per slot. Give it back with
/// [`State::release_room`] once its tasks are queued here (or did not come).
#[derive(Debug, Default)]
#[must_use = "held slots stay taken until released"]
pub struct Reservation {
    slots: Vec<WorkerId>,
    /// Held for a claim (not a submit).
    claim: bool,
}

impl Reservation {
    /// How many slots it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl<I: Io> State<I> {
    /// Holds one slot for a task of `tool` about to be stored as claimed by
    /// this server; `None` while draining, when a task of the tool waits
    /// here, or when no worker serving it has a slot neither running nor
    /// held.
    pub fn reserve_room(&mut self, tool: &str) -> Option<Reservation> {
        if self.draining || !self.has_room_for(tool) {
            return None;
        }
        let worker = self.tools[tool]
            .workers
            .iter()
            .filter_map(|id| self.workers.get(id).map(|w| (*id, w.free())))
            .max_by_key(|(_, free)| *free)
            .map(|(id, _)| id)?;
        self.workers.get_mut(&worker)?.reserved += 1;
        Some(Reservation {
            slots: vec![worker],
            claim: false,
        })
    }

    /// Whether a submit of `tool` finds no room only because a claim in
    /// flight holds it: that room may be free again once the claim settles.
    pub fn claims_hold_room_for(&self, tool: &str) -> bool {
        !self.draining
            && self.tools.get(tool).is_some_and(|entry| {
                entry.queue.is_empty()
                    && entry
                        .workers
                        .iter()
                        .filter_map(|id| self.workers.get(id))
                        .any(|w| {
                            !w.closed
                                && w.running.len() + w.reserved - w.claim_held < w.max_concurrency
                        })
            })
    }

    /// Holds the room for one round of claims from the store's queue: per
    /// tool served here (but those in `skip`), the free slots of its
    /// workers not covered by its tasks waiting here. A worker serving
    /// several tools gives each slot to one tool only: the first in this
    /// round's order, which starts one tool further every round so none
    /// starves. Empty while draining (it dispatches nothing).
    pub fn reserve_claims(&mut self, skip: &HashSet<Arc<str>>) -> Vec<(Arc<str>, Reservation)> {
        if self.draining {
            return Vec::new();
        }
        let mut names: Vec<Arc<str>> = self
            .tools
            .iter()
            .filter(|(name, t)| !t.workers.is_empty() && !skip.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        names.sort_unstable();
        let first = self.claim_turn % names.len();
        names.rotate_left(first);
        self.claim_turn = self.claim_turn.wrapping_add(1);
        let Self { tools, workers, .. } = self;
        let mut out = Vec::new();
        for name in names {
            let entry = &tools[&name];
            let mut covered = entry.queue.len();
            let mut slots = Vec::new();
            for id in &entry.workers {
                let Some(w) = workers.get_mut(id) else {
                    continue;
                };
                let free = w.free();
                let skipped = covered.min(free);
                covered -= skipped;
                let take = free - skipped;
                w.reserved += take;
                w.claim_held += take;
                slots.extend(std::iter::repeat_n(*id, take));
            }
            if !slots.is_empty() {
                out.push((name, Reservation { slots, claim: true }));
            }
        }
        out
    }

    /// Gives held slots back (a worker gone since holds nothing). Tasks
    /// waiting here for a slot it held are dispatched; the claimer is not
    /// woken, so a claim that came back short does not start another.
    pub fn release_room(&mut self, room: Reservation, now: SystemTime) {
        let mut tools: Vec<Arc<str>> = Vec::new();
        for id in room.slots {
            if let Some(w) = self.workers.get_mut(&id) {
                w.reserved -= 1;
                if room.claim {
                    w.claim_held -= 1;
                }
                for tool in &w.tools {
                    if !tools.contains(tool) {
                        tools.push(tool.clone());
                    }
                }
            }
        }
        for tool in &tools {
            self.dispatch_tool(tool, now);
        }
    }
}
