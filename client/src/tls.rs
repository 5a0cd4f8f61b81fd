//! TLS settings checked before connecting (a CA file that holds no
//! certificate, a key that is not the certificate's), the system's trust
//! store for a client given no CA, and what a failed handshake means, so
//! that errors say which setting to fix.
use std::sync::Arc;

use rustls::{
    CertificateError, ClientConfig, Error as Rustls, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, pem::PemObject},
};

/// What a TLS client trusts to have signed the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The CA given ([`crate::TlsOptions::ca_pem`]), and no other.
    Ca,
    /// The system's trust store, as every gRPC client without a CA: the
    /// platform's CA certificates, or those of the files `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` name, which replace them (see [`system_roots`]).
    System,
}

/// The variables that, when set, replace the platform's CA certificates as
/// the system's trust store (rustls-native-certs reads them, as OpenSSL
/// does).
const STORE_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// "the system's trust store", with the variables that replace it when
/// set: `the system's trust store (SSL_CERT_FILE=/etc/ca.pem)`.
pub fn system_store() -> String {
    let set: Vec<String> = STORE_VARIABLES
        .iter()
        .filter_map(|v| {
            let value = std::env::var_os(v).filter(|value| !value.is_empty())?;
            Some(format!("{v}={}", value.to_string_lossy()))
        })
        .collect();
    if set.is_empty() {
        "the system's trust store".to_string()
    } else {
        format!("the system's trust store ({})", set.join(", "))
    }
}

/// The CA certificates of the system's trust store, read with
/// rustls-native-certs (the library tonic's `tls-native-roots` and the
/// server's PostgreSQL `sslrootcert=system` use): the platform's bundle, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set. When it holds none, why, and
/// what to do, in words that follow "TLS: ".
pub fn system_roots() -> Result<Vec<TrustAnchor<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        // Unreadable files beside readable ones: the readable ones serve.
        tracing::debug!(%error, "reading the system's trust store");
    }
    roots_or_why(found.certs, found.errors.first().map(ToString::to_string))
}

/// `certs` as trust anchors, or, when none can be one, why (with
/// `first_error`, the first file of the store that could not be read).
fn roots_or_why(
    certs: Vec<CertificateDer<'static>>,
    first_error: Option<String>,
) -> Result<Vec<TrustAnchor<'static>>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if !roots.is_empty() {
        return Ok(roots.roots);
    }
    Err(format!(
        "no CA was given, and {} holds no CA certificate to trust instead{}: give \
         the CA that signed the server's certificate (the CLI's --tls-ca or ERRAND_TLS_CA), or \
         install the system's CA certificates (the ca-certificates package) or point \
         SSL_CERT_FILE at a file of them",
        system_store(),
        first_error.map(|e| format!(" ({e})")).unwrap_or_default()
    ))
}

/// Which file of a client identity a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityPart {
    /// The certificate (chain).
    Cert,
    /// The private key.
    Key,
    /// The two together: the key is not the certificate's.
    Pair,
}

/// Why `pem` cannot be the CA a client trusts, in words that follow the
/// file's name ("holds no certificate ..."); `None` when it can.
pub fn ca_problem(pem: &[u8]) -> Option<String> {
    let certs = certificates(pem);
    if certs.is_empty() {
        return Some(
            "holds no certificate (no PEM \"BEGIN CERTIFICATE\" block; a private key or an empty \
             file is not a CA): give the certificate of the CA that signed the server's"
                .to_string(),
        );
    }
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    (added == 0).then(|| "holds no certificate that can be parsed".to_string())
}

/// Why an encrypted key cannot be used, and how to decrypt it.
const ENCRYPTED_KEY: &str = "is encrypted (a passphrase protects it), which errand does not \
read: write a decrypted copy with `openssl pkey -in KEY -out KEY.plain` and give that, kept \
readable by its owner only";

/// Whether `pem` holds an encrypted private key (PKCS#8's `BEGIN ENCRYPTED
/// PRIVATE KEY`, or a legacy one with `Proc-Type: 4,ENCRYPTED`).
fn encrypted(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// Why `cert` and `key` cannot be a client's identity, and in which of
/// them; `None` when they can.
pub fn identity_problem(cert: &[u8], key: &[u8]) -> Option<(IdentityPart, String)> {
    let certs = certificates(cert);
    if certs.is_empty() {
        return Some((
            IdentityPart::Cert,
            "holds no certificate (no PEM \"BEGIN CERTIFICATE\" block)".to_string(),
        ));
    }
    if encrypted(key) {
        return Some((IdentityPart::Key, ENCRYPTED_KEY.to_string()));
    }
    let Ok(key) = PrivateKeyDer::from_pem_slice(key) else {
        return Some((
            IdentityPart::Key,
            "holds no private key (no PEM \"BEGIN ... PRIVATE KEY\" block)".to_string(),
        ));
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(RootCertStore::empty());
    match builder.with_client_auth_cert(certs, key) {
        Ok(_) => None,
        Err(Rustls::InconsistentKeys(_)) => Some((
            IdentityPart::Pair,
            "the private key is not the certificate's".to_string(),
        )),
        Err(Rustls::InvalidCertificate(why)) => Some((
            IdentityPart::Cert,
            format!(
                "cannot be used as a client certificate ({}): it must be an X.509 v3 \
                 certificate; `openssl x509 -req` makes a v1 one unless given extensions, for \
                 example -extfile <(printf \"extendedKeyUsage=clientAuth\")",
                match &why {
                    // "UnsupportedCertVersion", not "Other(OtherError(...))".
                    CertificateError::Other(other) => other.to_string(),
                    why => why.to_string(),
                }
            ),
        )),
        Err(other) => Some((IdentityPart::Pair, other.to_string())),
    }
}

/// The certificates in `pem` (none when it holds none, or only other
/// blocks such as a private key).
fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// What went wrong in a TLS handshake, as far as it tells which setting to
/// fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The server's certificate is not signed by the CA the client trusts
    /// (see [`Trust`]).
    UntrustedCertificate,
    /// The server's certificate does not carry the name connected to.
    WrongName,
    /// The server's certificate was refused for another reason (expired,
    /// ...).
    BadCertificate,
    /// What answered does not speak TLS (a server without TLS).
    NotTls,
    /// The server refused the handshake with an alert (for example: a client
    /// certificate is required, or it does not accept the one sent).
    Refused,
    /// Another TLS error.
    Other,
}

/// The TLS failure in `err`'s chain of causes, if any.
pub fn handshake_failure(err: &(dyn std::error::Error + 'static)) -> Option<HandshakeFailure> {
    let mut next = Some(err);
    while let Some(e) = next {
        let tls = e.downcast_ref::<Rustls>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Rustls>())
        });
        if let Some(tls) = tls {
            return Some(classify(tls));
        }
        next = e.source();
    }
    None
}

fn classify(e: &Rustls) -> HandshakeFailure {
    match e {
        Rustls::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => HandshakeFailure::UntrustedCertificate,
        Rustls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => HandshakeFailure::WrongName,
        Rustls::InvalidCertificate(_) => HandshakeFailure::BadCertificate,
        Rustls::InvalidMessage(_) => HandshakeFailure::NotTls,
        Rustls::AlertReceived(_) => HandshakeFailure::Refused,
        _ => HandshakeFailure::Other,
    }
}

/// The sentence of a failed connection to `addr` whose handshake failed,
/// trusting `trust`.
pub(crate) fn handshake_line(
    failure: &HandshakeFailure,
    addr: &str,
    trust: Trust,
    reason: &str,
) -> String {
    match failure {
        HandshakeFailure::UntrustedCertificate => match trust {
            Trust::Ca => format!(
                "the server at {addr} presented a certificate that the trusted CA did not sign \
                 ({reason})"
            ),
            Trust::System => format!(
                "the server at {addr} presented a certificate that no CA of {} signed, and no CA \
                 was given ({reason})",
                system_store()
            ),
        },
        HandshakeFailure::WrongName => format!(
            "the certificate of the server at {addr} is not valid for the name connected to \
             ({reason})"
        ),
        HandshakeFailure::BadCertificate => {
            format!("the certificate of the server at {addr} was refused ({reason})")
        }
        HandshakeFailure::NotTls => format!("the server at {addr} does not speak TLS ({reason})"),
        HandshakeFailure::Refused => {
            format!("the server at {addr} refused the TLS handshake ({reason})")
        }
        HandshakeFailure::Other => {
            format!("the TLS handshake with the server at {addr} failed ({reason})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    fn cert_and_key() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let (cert, key) = cert_and_key();
        assert_eq!(ca_problem(cert.as_bytes()), None);
        for not_a_ca in [key.as_bytes(), b"", b"garbage\n"] {
            let why = ca_problem(not_a_ca).expect("refused");
            assert!(why.starts_with("holds no certificate"), "{why}");
        }
    }

    #[test]
    fn a_client_identity_names_the_file_at_fault() {
        let (cert, key) = cert_and_key();
        assert_eq!(identity_problem(cert.as_bytes(), key.as_bytes()), None);
        let (part, why) = identity_problem(cert.as_bytes(), key_pem().as_bytes()).unwrap();
        assert_eq!(part, IdentityPart::Pair, "{why}");
        assert!(why.contains("not the certificate's"), "{why}");
        let (part, _) = identity_problem(key.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(part, IdentityPart::Cert);
        let (part, _) = identity_problem(cert.as_bytes(), cert.as_bytes()).unwrap();
        assert_eq!(part, IdentityPart::Key);
        // An encrypted key is named as such, not as "no private key".
        let pkcs8 =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        for key in [pkcs8, legacy] {
            let (part, why) = identity_problem(cert.as_bytes(), key.as_bytes()).unwrap();
            assert_eq!(part, IdentityPart::Key);
            assert!(
                why.contains("encrypted") && why.contains("openssl pkey"),
                "{why}"
            );
        }
    }

    /// `openssl x509 -req` without -extfile makes X.509 v1 certificates,
    /// which rustls refuses: the error says so and how to make a v3 one.
    #[test]
    fn a_version_1_client_certificate_says_how_to_make_a_v3_one() {
        let (part, why) = identity_problem(V1_CERT.as_bytes(), key_pem().as_bytes()).unwrap();
        assert_eq!(part, IdentityPart::Cert, "{why}");
        assert!(why.contains("(UnsupportedCertVersion)"), "{why}");
        assert!(why.contains("extendedKeyUsage=clientAuth"), "{why}");
    }

    /// A store without a certificate that can be a trust anchor is said to
    /// be empty, with the first file it could not read and the fix.
    #[test]
    fn a_system_store_without_certificates_says_what_to_do() {
        let (cert, _) = cert_and_key();
        let der = certificates(cert.as_bytes());
        assert_eq!(roots_or_why(der, None).unwrap().len(), 1);
        let why = roots_or_why(Vec::new(), None).unwrap_err();
        for words in [
            "the system's trust store",
            "holds no CA certificate",
            "--tls-ca",
            "ERRAND_TLS_CA",
        ] {
            assert!(why.contains(words), "{words:?} not in {why}");
        }
        let unreadable = "failed to read PEM from file: No such file or directory at '/x.pem'";
        let why = roots_or_why(Vec::new(), Some(unreadable.to_string())).unwrap_err();
        assert!(why.contains(&format!("({unreadable})")), "{why}");
    }

    /// A certificate no CA signed is told by what was trusted: the CA
    /// given, or the system's trust store when none was.
    #[test]
    fn an_untrusted_certificate_names_what_was_trusted() {
        let failure = HandshakeFailure::UntrustedCertificate;
        let line = handshake_line(&failure, "h:1", Trust::Ca, "UnknownIssuer");
        assert!(line.contains("the trusted CA did not sign"), "{line}");
        let line = handshake_line(&failure, "h:1", Trust::System, "UnknownIssuer");
        assert!(
            line.contains("no CA of the system's trust store") && line.contains("no CA was given"),
            "{line}"
        );
    }

    /// A certificate only (its key was thrown away): made with
    /// `openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key`.
    const V1_CERT: &str = include_str!("../testdata/v1-client.pem");
}
