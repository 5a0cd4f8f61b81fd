package errand

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Option configures Dial.
type Option func(*options) error

type options struct {
	creds        credentials.TransportCredentials
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
		creds:        insecure.NewCredentials(),
		minBackoff:   100 * time.Millisecond,
		maxBackoff:   5 * time.Second,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		maxRecvBytes: 16 << 20,
	}
}

// WithTLS connects over TLS with the given configuration (nil: the system
// roots and the host name from addr). Without it the connection is plaintext,
// which is what a server on loopback expects.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.creds = credentials.NewTLS(cfg)
		return nil
	}
}

// WithTransportCredentials sets the gRPC transport credentials directly, for
// setups WithTLS does not cover (mTLS from files, ALTS, ...).
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("WithTransportCredentials: nil credentials")
		}
		o.creds = c
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

// WithBearerToken sends "authorization: Bearer TOKEN" with every call. The
// token is sent even over plaintext, so use it with WithTLS off loopback.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		if token == "" {
			return errors.New("WithBearerToken: empty token")
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
// connection: the first call (or stream) connects. By default Dial waits until
// the server is reachable or ctx is done.
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

// WithMaxRecvBytes sets the largest message the client accepts (default 16 MiB).
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
	}
	if o.perRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(o.perRPC))
	}
	return append(opts, o.dialOpts...)
}
