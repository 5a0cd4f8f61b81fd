package errand_test

// An address without a port means errand's port, 7466, as for the CLI and
// the Rust and Python clients: Dial("host") and ERRAND_SERVER=host dialled
// host:443 (grpc-go's default for its dns resolver), in plaintext.

import (
	"context"
	"errors"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
)

func TestAddressWithoutAPortMeans7466(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1", "127.0.0.1:7466"},
		{"localhost", "localhost:7466"},
		{"errand.internal", "errand.internal:7466"},
		{"127.0.0.1:9000", "127.0.0.1:9000"},
		{"[::1]", "[::1]:7466"},
		{"[::1]:9000", "[::1]:9000"},
		{"http://localhost", "localhost:7466"},
		{"http://localhost/", "localhost:7466"},
		{"HTTP://localhost:9000/", "localhost:9000"},
		{"http://[::1]", "[::1]:7466"},
		{"https://errand.example.com", "errand.example.com:7466"},
		{"https://errand.example.com:8443", "errand.example.com:8443"},
		// gRPC target URIs pass as they are.
		{"dns:///errand.internal:9000", "dns:///errand.internal:9000"},
		{"unix:///tmp/errand.sock", "unix:///tmp/errand.sock"},
		{"passthrough:///127.0.0.1:9000", "passthrough:///127.0.0.1:9000"},
	} {
		c, err := errand.Dial(context.Background(), tc.addr, errand.WithLazyConnect())
		if err != nil {
			t.Errorf("Dial(%q): %v", tc.addr, err)
			continue
		}
		if got := c.Conn().Target(); got != tc.want {
			t.Errorf("Dial(%q) dials %q, want %q", tc.addr, got, tc.want)
		}
		c.Close()
	}

	t.Setenv("ERRAND_SERVER", "127.0.0.1")
	for _, opts := range [][]errand.Option{{errand.WithLazyConnect()}, {errand.WithLazyConnect(), errand.WithEnv()}} {
		c, err := errand.Dial(context.Background(), "", opts...)
		if err != nil {
			t.Fatalf("Dial(\"\") with ERRAND_SERVER=127.0.0.1: %v", err)
		}
		if got := c.Conn().Target(); got != "127.0.0.1:7466" {
			t.Errorf("Dial(\"\") with ERRAND_SERVER=127.0.0.1 dials %q, want 127.0.0.1:7466", got)
		}
		c.Close()
	}
}

// What the CLI refuses, Dial refuses, saying what to write instead.
func TestAddressRefused(t *testing.T) {
	for _, tc := range []struct{ addr, says string }{
		{"::1", "[::1]:7466"},
		{"fe80::1:9000", "brackets"},
		{"ftp://errand.example.com", "http:// or https://"},
	} {
		c, err := errand.Dial(context.Background(), tc.addr, errand.WithLazyConnect())
		if err == nil {
			t.Errorf("Dial(%q) dials %q, want an error", tc.addr, c.Conn().Target())
			c.Close()
			continue
		}
		if !errors.Is(err, errand.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Dial(%q): %v, want ErrInvalidArgument saying %q", tc.addr, err, tc.says)
		}
	}
}
