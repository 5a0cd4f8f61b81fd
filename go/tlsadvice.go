package errand

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// dialAdvice is what to check after a first connection failed with cause,
// by the TLS settings of o, in the words the errand CLI and the Python SDK
// use: a TLS server breaks the connection of a client without its CA (so a
// plaintext client is told that the server may serve TLS), one that
// requires client certificates that of a client without one; a certificate
// signed by another CA, a name the certificate does not carry and TLS to a
// server without it are named. "" when there is nothing to add.
func dialAdvice(o options, cause error) string {
	why := cause.Error()
	tlsOn := o.creds != nil && o.creds.Info().SecurityProtocol == "tls"
	switch {
	case strings.Contains(why, "connection refused"), strings.Contains(why, "no such host"),
		strings.Contains(why, "produced zero addresses"):
		return ": is errand serve running there?"
	case !tlsOn:
		return ": check that errand serve is running there and reachable; if it serves TLS " +
			"(errand serve --tls-cert), give the CA that signed its certificate with " +
			"WithTLSFiles (or WithEnv and ERRAND_TLS_CA)"
	case strings.Contains(why, "signed by unknown authority"):
		return ": the CA given (WithTLSFiles, WithTLS or ERRAND_TLS_CA) did not sign the " +
			"server's certificate: give the CA that signed errand serve's --tls-cert"
	case strings.Contains(why, "certificate is valid for"), strings.Contains(why, "certificate is not valid for"):
		return ": connect by a name the server's certificate carries, or give that name " +
			"with WithServerName (or ERRAND_TLS_DOMAIN)"
	case strings.Contains(why, "does not look like a TLS handshake"):
		return ": the server does not speak TLS: connect to it without TLS (no WithTLSFiles, " +
			"WithTLS or ERRAND_TLS_CA), or start errand serve with --tls-cert and --tls-key"
	case o.tlsConfig != nil && len(o.tlsConfig.Certificates) > 0:
		return ": check that errand serve is running there and reachable; if it requires " +
			"client certificates, check that yours is signed by the CA of its --tls-client-ca"
	default:
		return ": check that errand serve is running there and reachable; if it requires " +
			"client certificates (errand serve --tls-client-ca), give one with WithTLSFiles " +
			"(or WithEnv and ERRAND_TLS_CERT, ERRAND_TLS_KEY)"
	}
}

// checkClientCert refuses an X.509 v1 client certificate, which errand
// serve (rustls) refuses at the handshake with no reason the client sees.
func checkClientCert(certFile string) error {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("TLS client certificate: %w", err)
	}
	block, rest := pem.Decode(data)
	for block != nil && block.Type != "CERTIFICATE" {
		block, rest = pem.Decode(rest)
	}
	if block == nil {
		return fmt.Errorf("TLS client certificate: no PEM certificate in %s", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("TLS client certificate %s: %w", certFile, err)
	}
	if cert.Version == 1 {
		return fmt.Errorf("TLS client certificate %s cannot be used (X.509 version 1; errand "+
			"serve refuses it): it must be an X.509 v3 certificate; `openssl x509 -req` makes a "+
			"v1 one unless given extensions, for example "+
			"-extfile <(printf \"extendedKeyUsage=clientAuth\")", certFile)
	}
	return nil
}
