//! TLS to PostgreSQL, set in the database URL as libpq's clients set it:
//! `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`;
//! `prefer` when absent), `sslrootcert` (a PEM file of CA certificates, or
//! `system`: the operating system's trust store) and `sslcert`/`sslkey` (a
//! client certificate and its key, PEM), in either form of the URL
//! (`postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`, or
//! `host=db sslmode=verify-full sslrootcert=/etc/ca.pem`).
//!
//! What each mode checks, as libpq: `prefer` and `require` encrypt without
//! checking the server's certificate (`prefer` goes on without TLS when the
//! server has none, or at start when its handshake fails: `connection.rs`;
//! `require` refuses a server without TLS; given `sslrootcert`, it checks
//! the chain as `verify-ca` does); `verify-ca` checks that a CA of
//! `sslrootcert` signed it; `verify-full` also that it names the host
//! connected to. `verify-ca` and `verify-full` without `sslrootcert` read
//! `~/.postgresql/root.crt` (`require` does not: only a named `sslrootcert`
//! makes it check); `sslrootcert=system` implies `verify-full` and refuses
//! a weaker mode; a Unix socket gets no TLS (`parse_url`), as in libpq.
//! Files are read once, at start.
use std::{path::PathBuf, sync::Arc};

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// The URL parameters this module reads; tokio-postgres is given the rest.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode`, all of it but `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters taken out of a database URL, values decoded.
#[derive(Debug, Default)]
struct Params {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    /// The keys set so far.
    given: Vec<String>,
}

impl Params {
    /// An empty value is an absent one, as in libpq. Errors: `key` was
    /// given already (libpq takes the last; a stray `sslmode=disable` after
    /// the intended mode must not weaken it unseen).
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        if self.given.contains(&key.to_string()) {
            return Err(format!("the database URL has {key} given twice: keep one"));
        }
        self.given.push(key.to_string());
        let value = Some(value).filter(|v| !v.is_empty());
        match key {
            "sslmode" => self.mode = value,
            "sslrootcert" => self.root_cert = value,
            "sslcert" => self.cert = value,
            _ => self.key = value,
        }
        Ok(())
    }
}

/// `url` without its TLS parameters (for tokio-postgres, which knows only
/// `disable`, `prefer` and `require`, and no certificate files), and those
/// parameters.
fn split_params(url: &str) -> Result<(String, Params), String> {
    let mut params = Params::default();
    if let Some(scheme) = ["postgres://", "postgresql://"]
        .iter()
        .find(|s| url.starts_with(*s))
    {
        // The query starts after the user info, which ends at the first
        // `@`, as the driver reads it.
        let from = url[scheme.len()..]
            .find('@')
            .map_or(scheme.len(), |at| scheme.len() + at + 1);
        let Some(q) = url[from..].find('?').map(|q| from + q) else {
            return Ok((url.to_string(), params));
        };
        let (base, query) = (&url[..q], &url[q + 1..]);
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            if TLS_KEYS.contains(&&*key) {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| format!("the database URL's {key} is not UTF-8"))?;
                params.set(&key, value.into_owned())?;
            } else {
                kept.push(pair);
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((url, params));
    }
    let mut kept = String::new();
    for (key, value) in key_values(url)? {
        if TLS_KEYS.contains(&key.as_str()) {
            params.set(&key, value)?;
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((kept.trim_end().to_string(), params))
}

/// The pairs of a `key=value` connection string, libpq's syntax: spaces
/// around `=` allowed, a value single-quoted or ending at a space, a
/// backslash escaping the next character.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "the database URL is not valid: \"{key}\" has no value (key=value)"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if_eq(&'\'').is_some();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(c) => value.push(c),
                None if quoted => {
                    return Err(format!(
                        "the database URL is not valid: the value of {key} has no closing quote"
                    ));
                }
                None => break,
            }
        }
        pairs.push((key, value));
    }
}

/// Reads `url`'s TLS settings: the tokio-postgres URL without them, the
/// `sslmode` to set on its config, and the connector every connection
/// uses (the pool's and the listener's).
///
/// # Errors
/// In words for the operator: an unknown `sslmode`, a file that cannot
/// be read or holds no PEM certificate or key, `sslcert` without `sslkey`,
/// a verifying mode with no CA certificates to verify with.
pub(super) fn tls_settings(url: &str) -> Result<(String, SslMode, MakeRustlsConnect), String> {
    let (url, params) = split_params(url)?;
    let system = params.root_cert.as_deref() == Some("system");
    let mode = match params.mode.as_deref() {
        // As libpq: the system's CAs vouch for names, so they imply verify-full.
        None if system => Mode::VerifyFull,
        None | Some("prefer") => Mode::Prefer,
        Some("disable") => Mode::Disable,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some("allow") => {
            return Err(
                "sslmode=allow is not supported: use prefer (TLS when the server \
                        offers it), disable or require"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let ssl_mode = match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots(mode, params.root_cert.as_deref())?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (roots, mode) {
        (Some(roots), Mode::VerifyFull) => builder.with_root_certificates(roots),
        (Some(roots), _) => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain: Some(inner),
                    provider,
                }))
        }
        (None, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                chain: None,
                provider,
            })),
    };
    let config = match (params.cert, params.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert={cert}: not a readable PEM certificate ({e})"))?;
            if chain.is_empty() {
                return Err(format!("sslcert={cert} holds no certificate"));
            }
            let key_der = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("sslkey={key}: not a readable PEM private key ({e})"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert and sslkey: {e}"))?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("sslcert and sslkey go together: give both, or neither".into());
        }
    };
    Ok((url, ssl_mode, MakeRustlsConnect::new(config)))
}

/// The CA certificates `mode` verifies the server's chain with; `None`
/// when it does not verify.
fn roots(mode: Mode, root_cert: Option<&str>) -> Result<Option<RootCertStore>, String> {
    let file = match (mode, root_cert) {
        (_, Some("system")) if mode != Mode::VerifyFull => {
            return Err(
                "sslrootcert=system needs sslmode=verify-full (as in libpq): the system's \
                 CAs vouch for names, not for one database"
                    .into(),
            );
        }
        (Mode::Disable | Mode::Prefer, _) | (Mode::Require, None) => return Ok(None),
        (_, Some("system")) => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert=system: no CA certificates found in the system's trust store{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
            return Ok(Some(roots));
        }
        (_, Some(file)) => PathBuf::from(file),
        (_, None) => {
            let default = std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
                .filter(|p| p.is_file());
            default.ok_or_else(|| {
                "sslmode=verify-ca and verify-full check the server's certificate: give the CA \
                 certificates with sslrootcert=FILE (PEM) or sslrootcert=system (the system's \
                 trust store)"
                    .to_string()
            })?
        }
    };
    let shown = file.display();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("sslrootcert={shown}: cannot read it ({e})"))?
    {
        let cert = cert.map_err(|e| format!("sslrootcert={shown}: not PEM ({e})"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert={shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert={shown} holds no certificate"));
    }
    Ok(Some(roots))
}

/// The modes that check less than rustls does: `verify-ca` (`chain`: the
/// chain is checked, the name is not) and `prefer`/`require` without
/// `sslrootcert` (no `chain`: the certificate is not checked). Either way
/// the handshake's signatures are, so the peer holds the key of the
/// certificate it shows.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a failed connection failed in TLS, if it did.
pub(super) enum TlsFailure {
    /// A certificate refused either way, or no TLS where it is required:
    /// retrying cannot fix it; the operator must.
    Refused(String),
    /// Any other failed handshake (a connection cut mid-handshake, a peer
    /// that does not speak TLS after offering it).
    Failed(String),
}

/// Whether, and how, `e` (a failed connection) failed in TLS.
pub(super) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut handshake = false;
    while let Some(c) = cause {
        let text = c.to_string();
        handshake |= text.starts_with("error performing TLS handshake");
        let tls = c.downcast_ref::<TlsError>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<TlsError>())
        });
        match tls {
            Some(
                e @ (TlsError::InvalidCertificate(_)
                | TlsError::NoCertificatesPresented
                | TlsError::PeerIncompatible(_)
                | TlsError::AlertReceived(_)),
            ) => {
                return Some(TlsFailure::Refused(format!(
                    "the TLS handshake with PostgreSQL failed: {e}"
                )));
            }
            Some(e) => {
                return Some(TlsFailure::Failed(format!(
                    "the TLS handshake with PostgreSQL failed: {e}"
                )));
            }
            None => {}
        }
        if text == "server does not support TLS" {
            return Some(TlsFailure::Refused(
                "PostgreSQL does not offer TLS, and the database URL requires it (sslmode): \
                 turn ssl on in postgresql.conf, or use sslmode=prefer or disable"
                    .into(),
            ));
        }
        cause = c.source();
    }
    handshake.then(|| TlsFailure::Failed(super::errors::chain(e)))
}
