//! `errand check-store`: a full check of a data dir's store.
//!
//! A server checks the whole file at start only after an unclean stop (see
//! the server's `store/sqlite/integrity.rs`); this checks it on demand. It
//! opens the file read-only, so it may run beside a server on the same dir.
//! It refuses what `errand serve` refuses at open (a file that lost its
//! store, another program's file, a schema from a newer errand), checks
//! every page, and reads every row back, naming those that do not read
//! with the statement that removes each (`check_store`).
use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use errand_server::store::sqlite::{Checked, check_store};

#[derive(clap::Args)]
pub struct Args {
    /// The server's data dir (the one given to `errand serve`).
    #[arg(long, env = "ERRAND_DATA_DIR", default_value_os_t = crate::serve::default_data_dir())]
    pub data_dir: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = args.data_dir.clone();
    let checked = tokio::task::spawn_blocking(move || check_store(&dir))
        .await?
        .with_context(|| format!("the store in {} failed its check", args.data_dir.display()))?;
    let what = match checked {
        Checked::Sound => "ok",
        Checked::Empty => "ok, empty: no store written yet (`errand serve` creates one)",
    };
    out!(
        "{}: {what} (checked in {:.1} s)",
        args.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
