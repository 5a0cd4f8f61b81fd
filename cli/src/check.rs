//! `errand check-store`: a full integrity check of a data dir's store.
//!
//! A server checks the whole file at start only after an unclean stop (see
//! the server's `store/sqlite/integrity.rs`); this checks it on demand. It
//! opens the file read-only, so it may run beside a server on the same dir.
use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use errand_server::store::sqlite::check_store;

#[derive(clap::Args)]
pub struct Args {
    /// The server's data dir (the one given to `errand serve`).
    #[arg(long, env = "ERRAND_DATA_DIR", default_value_os_t = crate::serve::default_data_dir())]
    pub data_dir: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = args.data_dir.clone();
    tokio::task::spawn_blocking(move || check_store(&dir))
        .await?
        .with_context(|| format!("the store in {} failed its check", args.data_dir.display()))?;
    println!(
        "{}: ok (checked in {:.1} s)",
        args.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
