//! The stop signals a waiting command ends on (SIGINT, SIGTERM), caught
//! so that it can say what it leaves behind before it exits.
use std::process::ExitCode;

use anyhow::{Context, Result};

/// A stop signal a waiting command ends on: SIGINT or SIGTERM.
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as a shell reports a command it ended.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        })
    }
}

/// SIGINT and SIGTERM, caught from [`Stop::new`] on.
pub struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    pub fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    /// The next stop signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
        }
    }
}
