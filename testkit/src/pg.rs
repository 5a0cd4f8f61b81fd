//! A throwaway PostgreSQL for tests and benchmarks: Debian's `postgresql`
//! binaries, `initdb` into a temp dir and `postgres` on a free loopback port,
//! run as the `postgres` user when the tests run as root (PostgreSQL refuses
//! root). One cluster per test process ([`cluster`]); each server gets a fresh
//! database ([`Cluster::create_database`]).
//!
//! The cluster stops when the process exits: an `atexit` hook kills it and
//! removes its directory, and the postmaster also gets SIGKILL through
//! `PR_SET_PDEATHSIG` if the test process dies without exiting cleanly.
//!
//! Used by the server's store tests, the end-to-end suite and `bench/pg`.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::Duration,
};

/// A running PostgreSQL cluster.
pub struct Cluster {
    pub port: u16,
    /// Holds the data dir, the socket and `postgres.log`.
    pub dir: PathBuf,
    bin: PathBuf,
    settings: Vec<(String, String)>,
    owner: Option<(u32, u32)>,
    pid: Arc<AtomicU32>,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
/// Clusters to stop at exit: (postmaster pid, dir).
static CLEANUP: Mutex<Vec<(Arc<AtomicU32>, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The process's cluster, started on first use with settings for tests
/// (`fsync=off`: the tests kill errand, never PostgreSQL). `None` when the
/// PostgreSQL binaries are not installed.
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER
        .get_or_init(|| {
            let bin = bin_dir()?;
            Some(Cluster::start(
                &bin,
                &[
                    ("fsync", "off"),
                    ("synchronous_commit", "off"),
                    ("full_page_writes", "off"),
                ],
            ))
        })
        .as_ref()
}

/// Where `initdb` and `postgres` are: Debian's versioned dir (newest first),
/// else `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
    })
}

/// uid and gid of the `postgres` user when running as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls on static strings; the passwd entry is read at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, PostgreSQL needs the `postgres` user: install Debian's postgresql package"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

extern "C" fn stop_at_exit() {
    if let Ok(mut clusters) = CLEANUP.lock() {
        for (pid, dir) in clusters.drain(..) {
            // SAFETY: kill(2) on a postmaster this process started.
            unsafe {
                libc::kill(pid.load(Ordering::Relaxed) as i32, libc::SIGKILL);
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Cluster {
    /// `initdb` and start a cluster with `settings` (`-c name=value`).
    pub fn start(bin: &Path, settings: &[(&str, &str)]) -> Cluster {
        let owner = run_as();
        let dir = tempfile::Builder::new()
            .prefix("errand-pg-")
            .tempdir()
            .expect("creating the cluster's temp dir")
            .keep();
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "errand",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid).env("HOME", &dir);
        }
        let out = initdb.output().expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            port: free_port(),
            dir: dir.clone(),
            bin: bin.to_path_buf(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owner,
            pid: Arc::new(AtomicU32::new(0)),
        };
        cluster.launch();
        CLEANUP.lock().unwrap().push((cluster.pid.clone(), dir));
        // SAFETY: registers a plain extern "C" fn (once is enough; it
        // stops every cluster listed).
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| unsafe {
            libc::atexit(stop_at_exit);
        });
        cluster
    }

    /// Starts the postmaster and waits until it accepts connections.
    fn launch(&self) {
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=500",
                "-c",
                "shared_buffers=128MB",
            ]);
        for (name, value) in &self.settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        postgres
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = self.owner {
            postgres.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        // SAFETY: prctl in the child before exec: it dies with this process.
        unsafe {
            postgres.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // The postmaster's parent is a thread that lives as long as the
        // process (PDEATHSIG follows the spawning thread).
        let (started, child) = mpsc::channel();
        std::thread::Builder::new()
            .name("errand-test-postgres".into())
            .spawn(move || {
                let spawned = postgres.spawn();
                let keep = spawned.is_ok();
                let _ = started.send(spawned);
                if keep {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .unwrap();
        let mut child = child
            .recv()
            .unwrap()
            .expect("starting postgres (is Debian's postgresql package installed?)");
        self.pid.store(child.id(), Ordering::Relaxed);
        // Ready when the postmaster says so; its log goes on to a file.
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready) = mpsc::channel();
        let log_path = self.dir.join("postgres.log");
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .ok();
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                if line.contains("ready to accept connections")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(Ok(()));
                }
                // A client turned away while the postmaster starts (the
                // servers of a test reconnect during a restart) is not a
                // failure to start.
                let refused_client = line.contains("the database system is starting up");
                if (line.contains("FATAL") || line.contains("PANIC"))
                    && !refused_client
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(Err(line));
                }
            }
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(Err("postgres exited before it was ready".into()));
            }
        });
        match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(line)) => panic!("postgres failed to start: {line}"),
            Err(_) => panic!("postgres was not ready within 60 s"),
        }
        // Reaped by `stop`, or killed at exit.
        std::mem::forget(child);
    }

    /// Stops the postmaster (fast shutdown: clients are disconnected) and
    /// waits until it has exited.
    pub fn stop(&self) {
        let pid = self.pid.load(Ordering::Relaxed) as i32;
        // SAFETY: signals and reaps the postmaster this process started.
        unsafe {
            libc::kill(pid, libc::SIGINT);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }

    /// Starts the stopped cluster again, on the same port and data.
    pub fn restart(&self) {
        self.launch();
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://errand@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "errand_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connecting to the test cluster");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        drop(client);
        let _ = driver.await;
        self.url(&name)
    }

    /// Takes `ACCESS EXCLUSIVE` on `table` of database `url` and holds it
    /// until the returned sender is dropped: every statement that reads the
    /// table waits meanwhile (until its `statement_timeout`), while the
    /// database answers all others.
    pub async fn lock_table(url: &str, table: &str) -> tokio::sync::oneshot::Sender<()> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test database");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .expect("locking a table");
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = released.await;
            let _ = client.batch_execute("COMMIT").await;
        });
        release
    }

    /// Runs one SQL batch on database `url` (tests that steer the database).
    pub async fn execute(url: &str, sql: &str) {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test database");
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.expect("running test SQL");
        drop(client);
        let _ = driver.await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

/// A TCP proxy to `url`'s database that can freeze: while frozen it keeps
/// its connections open and forwards nothing either way, as a network
/// that drops one server's packets, or a frozen (SIGSTOPped) database,
/// does. Returns the proxied URL and the switch.
pub async fn freezable(url: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (rest, db) = url.rsplit_once('/').unwrap();
    let upstream: std::net::SocketAddr = rest.rsplit_once('@').unwrap().1.parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxied = format!("postgres://errand@{}/{db}", listener.local_addr().unwrap());
    let (freeze, frozen) = tokio::sync::watch::channel(false);
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while *frozen.borrow_and_update() {
                if frozen.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, frozen.clone()));
            tokio::spawn(pump(sr, cw, frozen.clone()));
        }
    });
    (proxied, freeze)
}
