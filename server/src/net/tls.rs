//! TLS for every listener (the gRPC port, MCP, A2A, the dashboard,
//! metrics) from one certificate, key and client CA (`--tls-cert`,
//! `--tls-key`, `--tls-client-ca`): with a client CA, a client without a
//! certificate it signed is refused in the handshake.
use std::sync::Arc;

use tokio_rustls::rustls::{
    self, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

/// A TLS server configuration: `h2` and `http/1.1` by ALPN (gRPC and
/// HTTP/1 clients on one port).
///
/// # Errors
/// What is wrong with which file: no certificate in `cert_pem`, no key in
/// `key_pem`, a key that does not match, a client CA that is not PEM.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert is not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err("--tls-cert holds no certificate".into());
    }
    let text = String::from_utf8_lossy(key_pem);
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "--tls-key is encrypted (a passphrase protects it), which errand does not \
read: write a decrypted copy with `openssl pkey -in KEY -out KEY.plain`, readable by errand's \
user only, and give that"
                .into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("--tls-key holds no PEM private key: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("--tls-client-ca is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-client-ca: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_named() {
        let e = server_config(b"nope", b"nope", None).unwrap_err();
        assert!(e.contains("--tls-cert"), "{e}");
    }

    #[test]
    fn an_encrypted_key_says_how_to_decrypt_it() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["s.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = server_config(cert.pem().as_bytes(), encrypted.as_bytes(), None).unwrap_err();
        assert!(e.contains("encrypted") && e.contains("openssl pkey"), "{e}");
    }
}
