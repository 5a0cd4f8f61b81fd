//! `errand backup`: a consistent copy of a data dir's SQLite store, also
//! while a server runs on it (`backup_store` in the server's
//! `store/sqlite/backup.rs` says how). A PostgreSQL store is backed up with
//! PostgreSQL's own tools; a memory store has nothing on disk.
use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result, bail};
use errand_server::store::sqlite::backup_store;

use crate::serve::StoreKind;

#[derive(clap::Args)]
pub struct Args {
    /// The file to write: a copy of the store (one SQLite file), made under
    /// a temporary name beside it and renamed once whole, fsynced and
    /// checked. Restore it as errand.db in a data dir (see the README).
    pub output: PathBuf,
    /// The server's data dir (the one given to `errand serve`).
    #[arg(long, env = "ERRAND_DATA_DIR", default_value_os_t = crate::serve::default_data_dir())]
    pub data_dir: PathBuf,
    /// The server's store (as `errand serve --store`): only sqlite has a
    /// file to copy; postgres is backed up with pg_dump.
    #[arg(long, env = "ERRAND_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// Replace OUTPUT if it exists (only once the new copy is whole and
    /// checked).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.store {
        StoreKind::Sqlite => {}
        StoreKind::Postgres => bail!(
            "errand backup copies the SQLite store of a data dir; a PostgreSQL store (--store \
             postgres) is backed up with PostgreSQL's tools: pg_dump --format=custom \
             --file=FILE \"$ERRAND_DATABASE_URL\" takes a consistent snapshot while servers run \
             (pg_restore restores it)"
        ),
        StoreKind::Memory => bail!(
            "--store memory keeps nothing on disk: nothing to back up (errand backup copies \
             the SQLite store of --data-dir)"
        ),
    }
    let started = Instant::now();
    let (dir, output, force) = (args.data_dir.clone(), args.output.clone(), args.force);
    let copied = tokio::task::spawn_blocking(move || backup_store(&dir, &output, force))
        .await?
        .with_context(|| {
            format!(
                "no backup of {} was written",
                args.data_dir.join("errand.db").display()
            )
        })?;
    if let Some(rows) = &copied.unreadable {
        eprintln!(
            "errand: warning: the copy holds rows that do not read, as the store does \
             (errand check-store names them): {rows}"
        );
    }
    let checked = if copied.unreadable.is_some() {
        "pages sound, unreadable rows kept (see above)"
    } else {
        "ok"
    };
    out!(
        "{}: {} ({} unfinished), {}, {}, {} bytes ({:.1} MiB); checked: {checked} (in {:.1} s)",
        args.output.display(),
        plural(copied.tasks, "task"),
        copied.unfinished,
        plural(copied.sessions, "session"),
        plural(copied.tools, "tool"),
        copied.bytes,
        copied.bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
