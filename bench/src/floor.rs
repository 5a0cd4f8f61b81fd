//! The disk's floor: how long one `fdatasync` of a small append takes here,
//! measured in the same run and on the same file system as the durable store.
use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::stats::summarize;

/// `count` appends of 128 bytes to a file in `dir`, each followed by
/// `fdatasync` (at most 30 s in all).
pub fn fsync(dir: &Path, count: usize) -> anyhow::Result<Value> {
    let path = dir.join("errand-bench-fsync.tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ns = Vec::with_capacity(count);
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let t = Instant::now();
        file.write_all(&[b'x'; 128])?;
        file.sync_data()?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(json!({ "workload": "fsync", "fdatasync": summarize(ns, None)? }))
}
