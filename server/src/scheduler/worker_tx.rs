//! A worker's command channel: what the scheduler's state sends a worker
//! through, and the dispatch record each Assignment waits for.
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::{state::Io, timers::AttemptTimer};
use crate::{
    error::Error,
    model::{Assignment, Command},
    store::{Durable, SharedStore},
};

/// One command for a worker, to be sent once `after` resolves.
#[derive(Debug)]
pub struct Outgoing {
    pub command: Command,
    /// The dispatch record that explains an Assignment: the worker's stream
    /// sends the Assignment only once the record is durable; when it cannot
    /// be written the Assignment is not sent and the scheduler takes the
    /// attempt back (`unrecorded.rs`), the worker kept. Commands behind it
    /// wait, so the order holds.
    pub after: Option<Durable>,
}

/// Commands to one worker, in order. An `Err` ends its stream with that
/// error (a protocol violation the handler found).
pub type CommandTx = mpsc::Sender<Result<Outgoing, Error>>;

/// A worker's command channel, and the store its dispatches are recorded in.
pub struct WorkerTx {
    pub(super) commands: CommandTx,
    pub(super) store: SharedStore,
}

/// The channel ends the state reaches the world through.
pub(super) struct Tokio;

impl Io for Tokio {
    type Tx = WorkerTx;
    type Timer = AttemptTimer;
    fn send(tx: &WorkerTx, command: Command) -> bool {
        let out = Outgoing {
            command,
            after: None,
        };
        tx.commands.try_send(Ok(out)).is_ok()
    }
    fn assign(tx: &WorkerTx, assignment: Assignment, at: SystemTime) -> bool {
        // Recorded even when the send fails: the attempt is spent either way.
        let after = tx
            .store
            .record_dispatch(assignment.task_id, assignment.attempt, at);
        let out = Outgoing {
            command: Command::Assign(assignment),
            after: Some(after),
        };
        tx.commands.try_send(Ok(out)).is_ok()
    }
    fn stop(timer: AttemptTimer) {
        timer.stop();
    }
}
