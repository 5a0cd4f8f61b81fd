//! File modes of the data dir: every tenant's tasks and results are in it, so
//! only the server's own user may read it. The dir is created 0700 and the
//! database 0600; SQLite gives its `-wal` and `-shm` files the database's
//! mode, so they follow. An existing dir that others can read is the
//! operator's choice, told at start rather than changed.
use std::{
    fs::{DirBuilder, OpenOptions, Permissions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use tracing::{info, warn};

use super::{StoreError, errors::io_error};

/// Mode of a data dir errand creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the database, its `-wal`/`-shm` files and the lock file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) 0700; warns when it exists and is
/// readable or searchable by group or others.
pub(super) fn prepare_data_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_error(format!("cannot create the data dir {}", dir.display()), e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| io_error(format!("cannot read the data dir {}", dir.display()), e))?
        .permissions()
        .mode();
    if let Some(loose) = open_to_others(mode) {
        warn!(
            data_dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data dir is readable by {loose}: they can read every tenant's tasks and results; \
             run `chmod 700` on it"
        );
    }
    Ok(())
}

/// Who besides the owner may read `mode`'s file or dir ("group", "others",
/// "group and others"), or `None`.
pub fn open_to_others(mode: u32) -> Option<&'static str> {
    match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (false, false) => None,
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (true, true) => Some("group and others"),
    }
}

/// Creates `path` 0600 when missing, and narrows an existing errand file
/// (written by an older errand, 0644) to 0600.
pub(super) fn own_file(path: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_error(format!("cannot open {}", path.display()), e))?;
    let mode = file
        .metadata()
        .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?
        .permissions()
        .mode();
    if mode & 0o777 != FILE_MODE {
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(|e| io_error(format!("cannot chmod 600 {}", path.display()), e))?;
        info!(file = %path.display(), was = format!("{:o}", mode & 0o777), "narrowed to mode 600");
    }
    Ok(())
}

/// Narrows the database's `-wal` and `-shm` files, when present, to 0600
/// (SQLite keeps the mode they had when an older errand made them).
pub(super) fn own_sidecars(db: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.exists() {
            own_file(path)?;
        }
    }
    Ok(())
}
