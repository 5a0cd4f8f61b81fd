// Package testpki makes throwaway certificates for the TLS tests at test time
// (no private key is ever committed): a CA, a server certificate for
// 127.0.0.1 and localhost, a client certificate signed by the CA, and a
// client certificate signed by another CA the server does not trust.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI holds the paths of the PEM files Generate wrote.
type PKI struct {
	CA                    string // the CA the server and clients trust
	ServerCert, ServerKey string // for 127.0.0.1 and localhost
	ClientCert, ClientKey string // signed by CA: accepted for mTLS
	RogueCert, RogueKey   string // signed by another CA: refused for mTLS
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func serial() (*big.Int, error) { return rand.Int(rand.Reader, big.NewInt(1<<62)) }

func newCA(name string) (*issuer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &issuer{cert, key}, der, nil
}

func (ca *issuer) leaf(name string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	return certDER, keyDER, err
}

func write(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// Generate writes a fresh PKI into dir.
func Generate(dir string) (*PKI, error) {
	p := &PKI{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client.key"),
		RogueCert: filepath.Join(dir, "rogue.pem"), RogueKey: filepath.Join(dir, "rogue.key"),
	}
	ca, caDER, err := newCA("errand test CA")
	if err != nil {
		return nil, err
	}
	rogueCA, _, err := newCA("rogue CA")
	if err != nil {
		return nil, err
	}
	if err := write(p.CA, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaves := []struct {
		by        *issuer
		name      string
		usage     x509.ExtKeyUsage
		dns       []string
		ips       []net.IP
		cert, key string
	}{
		{ca, "errand server", x509.ExtKeyUsageServerAuth, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, p.ServerCert, p.ServerKey},
		{ca, "agent@errand.test", x509.ExtKeyUsageClientAuth, nil, nil, p.ClientCert, p.ClientKey},
		{rogueCA, "rogue@errand.test", x509.ExtKeyUsageClientAuth, nil, nil, p.RogueCert, p.RogueKey},
	}
	for _, l := range leaves {
		certDER, keyDER, err := l.by.leaf(l.name, l.usage, l.dns, l.ips)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.name, err)
		}
		if err := write(l.cert, "CERTIFICATE", certDER); err != nil {
			return nil, err
		}
		if err := write(l.key, "PRIVATE KEY", keyDER); err != nil {
			return nil, err
		}
	}
	return p, nil
}
