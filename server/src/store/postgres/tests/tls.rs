//! TLS to PostgreSQL (`tls.rs`): the URL's `ssl*` parameters, and
//! connections to a cluster of its own with `ssl = on` and a certificate
//! for `db.example`, made with `rcgen` for these tests only (reached with
//! `hostaddr=127.0.0.1`, so the name checked is the URL's host).
use std::{path::Path, sync::OnceLock};

use super::super::tls::tls_settings;
use super::*;
use crate::test_pg::{Cluster, bin_dir};

#[test]
fn the_urls_tls_parameters_are_read_in_both_forms() {
    let (rest, mode, _) =
        tls_settings("postgres://u@h/d?sslmode=require&application_name=x&sslrootcert=").unwrap();
    assert_eq!(rest, "postgres://u@h/d?application_name=x");
    assert_eq!(mode, tokio_postgres::config::SslMode::Require);
    let (rest, mode, _) = tls_settings("postgres://u@h/d").unwrap();
    assert_eq!(
        (rest.as_str(), mode),
        ("postgres://u@h/d", tokio_postgres::config::SslMode::Prefer)
    );
    let (rest, mode, _) =
        tls_settings(r"host=db sslmode = 'disable' password='it\'s a \\ pass' dbname=d").unwrap();
    assert_eq!(mode, tokio_postgres::config::SslMode::Disable);
    let config: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(config.get_password(), Some(&br"it's a \ pass"[..]));
    assert_eq!(config.get_dbname(), Some("d"));
}

/// The cases where reading the TLS parameters apart from the driver could
/// have weakened the mode: each reads as the driver would.
#[test]
fn the_mode_is_never_weakened_unseen() {
    use tokio_postgres::config::SslMode;
    let mode = |url: &str| tls_settings(url).map(|(_, mode, _)| mode);
    // A `?` in the password: the query starts after the user info.
    let (rest, m, _) = tls_settings("postgres://u:p?w@h/d?sslmode=require").unwrap();
    assert_eq!(
        (rest.as_str(), m),
        ("postgres://u:p?w@h/d", SslMode::Require)
    );
    // A percent-encoded key, and a value holding an encoded `&`.
    assert_eq!(
        mode("postgres://u@h/d?ssl%6Dode=require"),
        Ok(SslMode::Require)
    );
    let (rest, _, _) =
        tls_settings("postgres://u@h/d?application_name=a%26b&sslmode=disable").unwrap();
    assert_eq!(rest, "postgres://u@h/d?application_name=a%26b");
    // sslrootcert=system implies verify-full and refuses anything weaker.
    match mode("postgres://u@h/d?sslrootcert=system") {
        Ok(m) => assert_eq!(m, SslMode::Require),
        Err(e) => assert!(e.contains("trust store"), "{e}"),
    }
    for weaker in ["prefer", "disable", "require", "verify-ca"] {
        let err = mode(&format!(
            "postgres://u@h/d?sslrootcert=system&sslmode={weaker}"
        ));
        assert!(
            err.unwrap_err().contains("needs sslmode=verify-full"),
            "{weaker}"
        );
    }
    // As libpq: no TLS over a Unix-domain socket, whatever sslmode says.
    let (config, _) = parse_url("host=/var/run/postgresql sslmode=require dbname=d").unwrap();
    assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    let (config, _) = parse_url("postgres://u@h/d?sslmode=require").unwrap();
    assert_eq!(config.get_ssl_mode(), SslMode::Require);
    let Err(err) = parse_url("postgres://u@h/d?sslnegotiation=direct&sslmode=require") else {
        panic!("sslnegotiation=direct accepted");
    };
    assert!(err.contains("sslnegotiation=direct"), "{err}");
}

/// A TLS parameter given twice is refused in either form of the URL: the
/// last one winning would let a stray `sslmode=disable` (or another
/// `sslrootcert`) after the intended one weaken the connection unseen.
#[test]
fn a_tls_parameter_given_twice_is_refused() {
    for url in [
        "postgres://u@h/d?sslmode=verify-full&sslmode=disable",
        "postgres://u@h/d?sslmode=require&ssl%6Dode=disable",
        "host=h dbname=d sslmode=verify-full sslmode=disable",
    ] {
        let err = match tls_settings(url) {
            Ok(_) => panic!("{url}: accepted"),
            Err(e) => e,
        };
        assert!(err.contains("sslmode given twice"), "{url}: {err}");
    }
    let err = match tls_settings("postgres://u@h/d?sslrootcert=/a.pem&sslrootcert=/b.pem") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(err.contains("sslrootcert given twice"), "{err}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display();
    for (url, says) in [
        (
            "postgres://u@h/d?sslmode=bogus",
            "not one of disable, prefer",
        ),
        ("postgres://u@h/d?sslmode=allow", "use prefer"),
        (
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        (
            "postgres://u@h/d?sslmode=verify-ca&sslrootcert=system",
            "needs sslmode=verify-full",
        ),
        (
            &format!("postgres://u@h/d?sslmode=verify-ca&sslrootcert={not_pem}"),
            "holds no certificate",
        ),
        (
            "postgres://u@h/d?sslcert=/a.pem",
            "sslcert and sslkey go together",
        ),
        ("host=db password='open", "no closing quote"),
        ("host=db dbname", "has no value"),
    ] {
        let err = match check_url(url) {
            Ok(()) => panic!("{url}: accepted"),
            Err(e) => e,
        };
        assert!(err.contains(says), "{url}: {err}");
        assert!(err.len() < 400, "{url}: {err}");
    }
}

/// The TLS cluster, its CA and a CA that did not sign its certificate;
/// `None` when PostgreSQL's binaries are not installed (the plain
/// cluster's check says whether that may be skipped).
struct Tls {
    cluster: Cluster,
    dir: tempfile::TempDir,
}

static TLS: OnceLock<Option<Tls>> = OnceLock::new();

fn tls_cluster() -> Option<&'static Tls> {
    TLS.get_or_init(|| {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            Issuer::new(params, key)
        };
        let issuer = ca("ca");
        ca("other-ca");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("db.pem"), dir.path().join("db.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        // A client certificate for the role `certuser`, which may log in
        // over TLS with it only (`cert` authentication: its CN is the role).
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "certuser");
        let client = client.signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
        let hba = dir.path().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\n\
             hostssl all certuser 127.0.0.1/32 cert\n\
             host all certuser 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let ca_file = dir.path().join("ca.pem");
        give_to_postgres(dir.path(), &[&cert_file, &key_file, &hba, &ca_file]);
        let cluster = Cluster::start(
            &bin,
            &[
                ("fsync", "off"),
                ("ssl", "on"),
                ("ssl_cert_file", cert_file.to_str().unwrap()),
                ("ssl_key_file", key_file.to_str().unwrap()),
                ("ssl_ca_file", ca_file.to_str().unwrap()),
                ("hba_file", hba.to_str().unwrap()),
            ],
        );
        let admin = cluster.url("postgres");
        let role = "CREATE ROLE certuser LOGIN SUPERUSER";
        // Its own thread and runtime: this runs inside a test's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(Cluster::execute(&admin, role));
        })
        .join()
        .unwrap();
        Some(Tls { cluster, dir })
    })
    .as_ref()
}

/// PostgreSQL runs as `postgres` when the tests run as root, and reads its
/// key only when that user owns it and no one else may read it.
fn give_to_postgres(dir: &Path, files: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    for file in files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // SAFETY: plain libc calls on static strings; the entry is read at once.
    let owner = unsafe {
        if libc::geteuid() != 0 {
            return;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, PostgreSQL needs the `postgres` user"
        );
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1)).unwrap();
    for file in files {
        std::os::unix::fs::chown(file, Some(owner.0), Some(owner.1)).unwrap();
    }
}

/// A URL of a fresh database on the TLS cluster as `host`, with `params`.
async fn tls_url(host: &str, params: &str) -> Option<(String, &'static Tls)> {
    // Skipped (or failed, in CI) as every PostgreSQL test is.
    url().await?;
    let tls = tls_cluster()?;
    let db = tls.cluster.create_database().await;
    let name = db.rsplit('/').next().unwrap();
    let ca = tls.dir.path().join("ca.pem");
    let url = format!(
        "postgres://errand@{host}:{}/{name}?hostaddr=127.0.0.1&{}",
        tls.cluster.port,
        params.replace("CA", &ca.display().to_string()).replace(
            "OTHER",
            &tls.dir.path().join("other-ca.pem").display().to_string()
        )
    );
    Some((url, tls))
}

/// Whether the store's connections are encrypted, as PostgreSQL sees them.
async fn encrypted(store: &PostgresStore) -> bool {
    let client = store.client().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits (up to 20 s) until the store's notification listener, which
/// connects on its own, listens, then checks that its connection is
/// encrypted. Listening shows as an event: the resync it sends once
/// connected, or the notification sent here once it already was.
async fn listener_encrypted(store: &PostgresStore) {
    let mut events = store.events();
    let client = store.client().await.unwrap();
    client.batch_execute("NOTIFY errand_tools").await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("the listener listened within 20 s")
        .unwrap();
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = current_database() AND a.query LIKE 'LISTEN %' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1, "the listener's connection is not encrypted");
}

/// Bounded, so a refusal retried by mistake fails the test instead of
/// hanging it.
fn options() -> PostgresOptions {
    PostgresOptions {
        connect_timeout: Some(Duration::from_secs(20)),
        ..PostgresOptions::default()
    }
}

#[tokio::test]
async fn each_sslmode_connects_as_libpq_does() {
    for (host, params) in [
        ("db.example", "sslmode=verify-full&sslrootcert=CA"),
        // verify-ca checks the chain, not the name.
        ("other.example", "sslmode=verify-ca&sslrootcert=CA"),
        ("other.example", "sslmode=require"),
        // prefer (the default) encrypts when the server offers TLS.
        ("other.example", "application_name=errand"),
    ] {
        let Some((url, _)) = tls_url(host, params).await else {
            return;
        };
        let store = PostgresStore::connect(&url, options()).await.unwrap();
        assert!(encrypted(&store).await, "{url}");
        listener_encrypted(&store).await;
    }
    let Some((url, _)) = tls_url("db.example", "sslmode=disable").await else {
        return;
    };
    let store = PostgresStore::connect(&url, options()).await.unwrap();
    assert!(!encrypted(&store).await, "{url}");
}

/// `sslcert`/`sslkey`: a role that may log in only with a certificate
/// does so with one, and is refused without.
#[tokio::test]
async fn a_client_certificate_logs_in_where_one_is_required() {
    let Some((url, tls)) = tls_url("db.example", "sslmode=verify-full&sslrootcert=CA").await else {
        return;
    };
    let url = url.replacen("postgres://errand@", "postgres://certuser@", 1);
    let file = |name: &str| tls.dir.path().join(name).display().to_string();
    let with = format!(
        "{url}&sslcert={}&sslkey={}",
        file("client.pem"),
        file("client.key")
    );
    let store = PostgresStore::connect(&with, options()).await.unwrap();
    assert!(encrypted(&store).await);
    let without = PostgresStore::connect(
        &url,
        PostgresOptions {
            connect_timeout: Some(Duration::from_millis(500)),
            ..PostgresOptions::default()
        },
    )
    .await;
    let err = without
        .err()
        .expect("certuser logged in without a certificate");
    assert!(err.to_string().contains("client certificate"), "{err}");
}

#[tokio::test]
async fn a_certificate_refused_fails_the_start_at_once_saying_why() {
    for (host, params, says) in [
        (
            "other.example",
            "sslmode=verify-full&sslrootcert=CA",
            "not valid for name",
        ),
        (
            "db.example",
            "sslmode=verify-full&sslrootcert=OTHER",
            "UnknownIssuer",
        ),
        (
            "db.example",
            "sslmode=require&sslrootcert=OTHER",
            "UnknownIssuer",
        ),
    ] {
        let Some((url, _)) = tls_url(host, params).await else {
            return;
        };
        let err = match PostgresStore::connect(&url, options()).await {
            Ok(_) => panic!("{url}: connected"),
            Err(e) => e,
        };
        assert!(matches!(err, StoreError::Internal(_)), "{url}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("TLS handshake") && text.contains(says),
            "{url}: {text}"
        );
    }
    // A server without TLS where TLS is required.
    let Some(plain) = url().await else { return };
    let err = match PostgresStore::connect(&format!("{plain}?sslmode=require"), options()).await {
        Ok(_) => panic!("sslmode=require connected to a server without TLS"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("does not offer TLS"), "{err}");
}

/// libpq's `prefer`: a server that offers TLS and then fails the handshake
/// is connected to again without TLS. The server here is a proxy to the
/// plain test cluster that answers each SSLRequest with "S" and then
/// bytes that are not TLS, and forwards any other connection.
#[tokio::test]
async fn prefer_goes_on_without_tls_when_the_handshake_fails() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(plain) = url().await else { return };
    let (rest, db) = plain.rsplit_once('/').unwrap();
    let upstream = rest.rsplit_once('@').unwrap().1.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                client.read_exact(&mut first).await?;
                // SSLRequest: length 8, code 80877103.
                if first == [0, 0, 0, 8, 4, 210, 22, 47] {
                    client.write_all(b"Snot a TLS server hello").await?;
                    return client.shutdown().await;
                }
                let mut server = tokio::net::TcpStream::connect(upstream).await?;
                server.write_all(&first).await?;
                tokio::io::copy_bidirectional(&mut client, &mut server)
                    .await
                    .map(drop)
            });
        }
    });
    let url = format!("postgres://errand@127.0.0.1:{port}/{db}");
    let store = PostgresStore::connect(&url, options()).await.unwrap();
    assert!(!encrypted(&store).await);
    // sslmode=require takes no such fallback: the start fails, retried as
    // an unreachable database until the connect timeout.
    let err = match PostgresStore::connect(
        &format!("{url}?sslmode=require"),
        PostgresOptions {
            connect_timeout: Some(Duration::from_millis(500)),
            ..PostgresOptions::default()
        },
    )
    .await
    {
        Ok(_) => panic!("sslmode=require connected without TLS"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    proxy.abort();
}
