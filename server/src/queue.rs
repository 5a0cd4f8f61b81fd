//! A queue of tasks that serves sessions in turn, so one session with 10,000
//! queued tasks does not starve another's single task.
use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    sync::Arc,
};

use uuid::Uuid;

/// Round robin over sessions, FIFO within a session.
#[derive(Debug, Default)]
pub struct FairQueue {
    by_session: HashMap<Arc<str>, VecDeque<Uuid>>,
    /// Sessions with at least one queued task, in serving order.
    turn: VecDeque<Arc<str>>,
    len: usize,
}

impl FairQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a task behind the session's others.
    pub fn push_back(&mut self, session: &Arc<str>, id: Uuid) {
        self.queue_of(session).push_back(id);
        self.len += 1;
    }

    /// Queues a task ahead of the session's others: a retry keeps its place.
    pub fn push_front(&mut self, session: &Arc<str>, id: Uuid) {
        self.queue_of(session).push_front(id);
        self.len += 1;
    }

    /// The next task: the head of the session whose turn it is.
    pub fn pop(&mut self) -> Option<(Arc<str>, Uuid)> {
        let session = self.turn.pop_front()?;
        let queue = self.by_session.get_mut(&session)?;
        let id = queue.pop_front()?;
        self.len -= 1;
        if queue.is_empty() {
            self.by_session.remove(&session);
        } else {
            self.turn.push_back(session.clone());
        }
        Some((session, id))
    }

    /// Removes a queued task; false when it is not queued here.
    pub fn remove(&mut self, session: &str, id: Uuid) -> bool {
        let Some(queue) = self.by_session.get_mut(session) else {
            return false;
        };
        let Some(pos) = queue.iter().position(|t| *t == id) else {
            return false;
        };
        queue.remove(pos);
        self.len -= 1;
        if queue.is_empty() {
            self.by_session.remove(session);
            self.turn.retain(|s| &**s != session);
        }
        true
    }

    fn queue_of(&mut self, session: &Arc<str>) -> &mut VecDeque<Uuid> {
        match self.by_session.entry(session.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.turn.push_back(session.clone());
                e.insert(VecDeque::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn sessions_take_turns() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let many = ids(1000);
        let one = Uuid::new_v4();
        let mut q = FairQueue::default();
        for id in &many {
            q.push_back(&a, *id);
        }
        q.push_back(&b, one);
        assert_eq!(q.pop().unwrap().1, many[0]);
        assert_eq!(q.pop().unwrap(), (b, one), "b's only task goes second");
        assert_eq!(q.pop().unwrap().1, many[1]);
        assert_eq!(q.len(), 998);
    }

    #[test]
    fn retry_goes_first_and_remove_keeps_order() {
        let s: Arc<str> = "s".into();
        let t = ids(3);
        let mut q = FairQueue::default();
        q.push_back(&s, t[0]);
        q.push_back(&s, t[1]);
        q.push_front(&s, t[2]);
        assert!(q.remove("s", t[0]));
        assert!(!q.remove("s", t[0]));
        assert_eq!(q.pop().unwrap().1, t[2]);
        assert_eq!(q.pop().unwrap().1, t[1]);
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn removing_a_sessions_last_task_drops_its_turn() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t = ids(2);
        let mut q = FairQueue::default();
        q.push_back(&a, t[0]);
        q.push_back(&b, t[1]);
        assert!(q.remove("a", t[0]));
        assert_eq!(q.pop().unwrap(), (b, t[1]));
        assert!(q.pop().is_none());
    }
}
