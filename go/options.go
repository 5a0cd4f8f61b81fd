package errand

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/errand-dev/errand/go/internal/rpcerr"
	"github.com/errand-dev/errand/go/internal/utf8field"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
)

// Option configures Dial.
type Option func(*options) error

type options struct {
	creds        credentials.TransportCredentials // WithTransportCredentials
	tlsConfig    *tls.Config                      // WithTLS, WithTLSFiles, WithEnv
	serverName   string
	env          bool
	perRPC       credentials.PerRPCCredentials
	dialOpts     []grpc.DialOption
	lazy         bool
	minBackoff   time.Duration
	maxBackoff   time.Duration
	logger       *slog.Logger
	maxRecvBytes int
}

func defaultOptions() options {
	return options{
		minBackoff:   100 * time.Millisecond,
		maxBackoff:   5 * time.Second,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		maxRecvBytes: 1 << 30,
	}
}

// WithTLS connects over TLS with the given configuration (nil: the system
// roots and the host name from addr). Without it (or WithTLSFiles, or WithEnv
// finding a CA) the connection is plaintext, which is what a server on
// loopback expects.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tlsConfig, o.creds = cfg.Clone(), nil
		return nil
	}
}

// WithTLSFiles connects over TLS, trusting the CA certificate in caFile
// (PEM; "" trusts the system's roots) and, for servers that require mutual
// TLS, presenting the client certificate chain in certFile with its private
// key in keyFile (both PEM; both "" for none). The files are read by Dial.
// These are the CLI's --tls-ca, --tls-cert and --tls-key.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) error {
		cfg, err := TLSConfigFromFiles(caFile, certFile, keyFile)
		if err != nil {
			return err
		}
		o.tlsConfig, o.creds = cfg, nil
		return nil
	}
}

// WithServerName checks the server's certificate for name instead of the
// host of Dial's address (the CLI's --tls-domain), for a server reached
// through an IP address or a tunnel. It applies to WithTLS, WithTLSFiles and
// WithEnv's TLS, not to WithTransportCredentials.
func WithServerName(name string) Option {
	return func(o *options) error { o.serverName = name; return nil }
}

// WithEnv takes the settings the errand CLI reads from the environment, for
// whatever the other options leave unset (explicit options win, whatever
// their order): ERRAND_TOKEN (as WithBearerToken), ERRAND_TLS_CA,
// ERRAND_TLS_CERT and ERRAND_TLS_KEY (as WithTLSFiles, used when the CA or
// the certificate is set) and ERRAND_TLS_DOMAIN (as WithServerName). An
// empty Dial address means $ERRAND_SERVER with or without it.
func WithEnv() Option {
	return func(o *options) error { o.env = true; return nil }
}

// TLSConfigFromFiles builds the TLS configuration of WithTLSFiles: the CA in
// caFile ("" for the system's roots), and the client certificate and key of
// certFile and keyFile ("" and "" for none). All files are PEM. Its errors
// (a file it cannot read or use) match ErrInvalidArgument.
func TLSConfigFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg, err := tlsConfigFromFiles(caFile, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", err, ErrInvalidArgument)
	}
	return cfg, nil
}

func tlsConfigFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and its key, or neither")
	}
	if certFile != "" {
		if err := checkClientCert(certFile); err != nil {
			return nil, err
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// WithTransportCredentials sets the gRPC transport credentials directly, for
// setups WithTLS and WithTLSFiles do not cover (ALTS, a custom verifier, ...).
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("WithTransportCredentials: nil credentials")
		}
		o.creds, o.tlsConfig = c, nil
		return nil
	}
}

// WithPerRPCCredentials attaches credentials to every call (a token source, say).
func WithPerRPCCredentials(c credentials.PerRPCCredentials) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("WithPerRPCCredentials: nil credentials")
		}
		o.perRPC = c
		return nil
	}
}

// WithBearerToken sends "authorization: Bearer TOKEN" with every call and
// stream: the Completions streams and their reconnects, and the Connect
// stream of a worker built on the client. The token is sent even over
// plaintext (a server on loopback may want tokens without TLS), so use it
// with TLS off loopback.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		token = strings.TrimSpace(token)
		if token == "" {
			return errors.New("WithBearerToken: empty token")
		}
		for _, r := range token {
			if r <= ' ' || r > '~' {
				return errors.New("WithBearerToken: the token must be printable ASCII without spaces")
			}
		}
		o.perRPC = bearer(token)
		return nil
	}
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// WithLazyConnect makes Dial return at once without waiting for the
// connection: the first call (or stream) connects, and the client retries
// with backoff while the server cannot be reached (a call made meanwhile fails
// with ErrUnavailable; a worker's Run keeps reconnecting). Use it to dial a
// server that may not be up yet. By default Dial makes the first connection
// attempt and fails as soon as it fails (see Dial).
func WithLazyConnect() Option {
	return func(o *options) error { o.lazy = true; return nil }
}

// WithReconnectBackoff bounds the delays between reconnect attempts of the
// Completions stream, of a worker's stream and of the underlying connection.
// Defaults: 100ms to 5s, doubling, jittered.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) error {
		if min <= 0 || max < min {
			return fmt.Errorf("WithReconnectBackoff: need 0 < min <= max, got %v, %v", min, max)
		}
		o.minBackoff, o.maxBackoff = min, max
		return nil
	}
}

// WithLogger receives reconnect events (at Warn) and connection details (at
// Debug). By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithMaxRecvBytes sets the largest message the client accepts (default
// 1 GiB, the largest --max-message-bytes a server accepts, so the server's
// own limit is the one that applies). A call or stream answered with a larger
// message fails with ErrResourceExhausted naming both sizes; Completions,
// SessionEvents and an Inbox end with it rather than reconnect, since the
// server would send the same message again.
//
// A worker (package worker) built on the client takes every message the
// server sends on its stream (they are within the server's
// --max-message-bytes) and applies this limit to each task itself: a task
// whose Assignment is larger fails at once with error code
// "assignment_too_large", whose message names the sizes and this option,
// and the worker goes on serving.
func WithMaxRecvBytes(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("WithMaxRecvBytes: need n > 0, got %d", n)
		}
		o.maxRecvBytes = n
		return nil
	}
}

// WithDialOptions passes raw grpc.DialOptions through, after errand's own
// (so they win: e.g. grpc.WithKeepaliveParams replaces the default 30s pings).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error { o.dialOpts = append(o.dialOpts, opts...); return nil }
}

// DefaultAddr is the server address when Dial gets "" and $ERRAND_SERVER is unset.
const DefaultAddr = "127.0.0.1:7466"

// DefaultPort is the port of an address that names none, errand's.
const DefaultPort = "7466"

// parseAddr reads an address as the errand CLI and the Rust and Python
// clients do: "host:port", "host" (port DefaultPort), "[v6]" or "[v6]:port",
// each optionally as an http:// or https:// URL (https: TLS) with a trailing
// "/". A gRPC target URI whose scheme grpc-go resolves ("dns:///host:port",
// "unix:///path", "passthrough:///...") passes as it is. An IPv6 address
// without brackets, or a URL of another scheme, is refused (matching
// ErrInvalidArgument), saying what to write instead.
func parseAddr(addr string) (target string, https bool, err error) {
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		switch strings.ToLower(scheme) {
		case "https":
			https = true
		case "http":
		default:
			if resolver.Get(scheme) != nil {
				return addr, false, nil
			}
			return "", false, fmt.Errorf("address %q: give host:port, or a URL with http:// or https:// (%w)",
				addr, ErrInvalidArgument)
		}
		addr = rest
	} else if scheme, rest, ok := strings.Cut(addr, ":"); ok && strings.Trim(rest, "0123456789") != "" &&
		!strings.Contains(rest, ":") && resolver.Get(scheme) != nil {
		return addr, false, nil // "unix:relative/path" and the like
	}
	addr = strings.TrimSuffix(addr, "/")
	if strings.HasPrefix(addr, "[") {
		end := strings.Index(addr, "]")
		switch {
		case end < 0:
			return "", false, fmt.Errorf("address %q: no closing ] (%w)", addr, ErrInvalidArgument)
		case end == len(addr)-1:
			return addr + ":" + DefaultPort, https, nil
		}
		return addr, https, nil
	}
	switch strings.Count(addr, ":") {
	case 0:
		return addr + ":" + DefaultPort, https, nil
	case 1:
		if strings.HasSuffix(addr, ":") {
			return addr + DefaultPort, https, nil
		}
		return addr, https, nil
	}
	hint := "[" + addr + "]:" + DefaultPort
	if ip := net.ParseIP(addr); ip == nil {
		hint = "[ADDRESS]:PORT"
	}
	return "", false, fmt.Errorf("address %q: an IPv6 address goes in brackets, as %s (%w)",
		addr, hint, ErrInvalidArgument)
}

// resolve applies WithEnv and the address's scheme, and settles the transport
// credentials; it returns the address to dial.
func (o *options) resolve(addr string) (string, error) {
	if addr == "" {
		addr = os.Getenv("ERRAND_SERVER")
	}
	if addr == "" {
		addr = DefaultAddr
	}
	addr, https, err := parseAddr(addr)
	if err != nil {
		return "", err
	}
	if o.env {
		if o.perRPC == nil {
			if tok := os.Getenv("ERRAND_TOKEN"); tok != "" {
				if err := WithBearerToken(tok)(o); err != nil {
					return "", fmt.Errorf("ERRAND_TOKEN: %w", err)
				}
			}
		}
		if o.creds == nil && o.tlsConfig == nil {
			ca, cert, key := os.Getenv("ERRAND_TLS_CA"), os.Getenv("ERRAND_TLS_CERT"), os.Getenv("ERRAND_TLS_KEY")
			if ca != "" || cert != "" || key != "" {
				cfg, err := TLSConfigFromFiles(ca, cert, key)
				if err != nil {
					return "", fmt.Errorf("ERRAND_TLS_CA/CERT/KEY: %w", err)
				}
				o.tlsConfig = cfg
			}
		}
		if o.serverName == "" {
			o.serverName = os.Getenv("ERRAND_TLS_DOMAIN")
		}
	}
	if https && o.creds == nil && o.tlsConfig == nil {
		o.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch {
	case o.creds != nil:
	case o.tlsConfig != nil:
		cfg := o.tlsConfig.Clone()
		if o.serverName != "" {
			cfg.ServerName = o.serverName
		}
		o.creds = credentials.NewTLS(cfg)
	default:
		o.creds = insecure.NewCredentials()
	}
	return addr, nil
}

func (o *options) grpcOptions() []grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.BaseDelay = o.minBackoff
	bc.MaxDelay = o.maxBackoff
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxRecvBytes)),
		// Pings on open streams notice a dead server or network that sends no
		// RST (a Completions or worker stream may be quiet for long).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// A string field that is not UTF-8 is refused before sending, with
		// INVALID_ARGUMENT naming it, rather than by grpc-go's marshalling
		// (INTERNAL, no field named, and the end of a worker's stream).
		grpc.WithChainUnaryInterceptor(utf8field.UnaryInterceptor),
		grpc.WithChainStreamInterceptor(utf8field.StreamInterceptor),
		// A failure keeps the trailer the server sent with it: a rate
		// limit's retry-after-ms, which *Error.RetryAfter gives and the
		// streams and workers wait out before reconnecting.
		grpc.WithChainUnaryInterceptor(rpcerr.UnaryInterceptor),
		grpc.WithChainStreamInterceptor(rpcerr.StreamInterceptor),
	}
	if o.perRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(o.perRPC))
	}
	return append(opts, o.dialOpts...)
}
