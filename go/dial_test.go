package errand_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// fastDial bounds how long a Dial that fails at its first connection attempt
// may take (the Python SDK and the CLI take well under a second; the margin
// is for a loaded machine). Before the fix Dial waited for ctx: forever with
// context.Background().
const fastDial = 5 * time.Second

// Without WithLazyConnect, Dial returns as soon as the first connection
// attempt fails, with an error that matches ErrUnavailable and names the
// transport's cause, well before ctx ends.
func TestDialFailsFastNamingTheCause(t *testing.T) {
	for _, tc := range []struct{ name, addr, cause string }{
		{"refused", deadAddr(t), "connection refused"},
		{"unresolvable", "nosuchhost.invalid:7466", "lookup nosuchhost.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := errand.Dial(testkit.Ctx(t), tc.addr)
			d := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatalf("Dial(%s) succeeded", tc.addr)
			}
			t.Logf("Dial(%s) after %v: %v", tc.addr, d, err)
			if d > fastDial {
				t.Errorf("Dial(%s) returned after %v, want at the first failed attempt", tc.addr, d)
			}
			if !errors.Is(err, errand.ErrUnavailable) || status.Code(err) != codes.Unavailable {
				t.Errorf("Dial(%s) = %v (code %v), want ErrUnavailable", tc.addr, err, status.Code(err))
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Dial(%s) = %v: it waited for ctx", tc.addr, err)
			}
			if !strings.Contains(err.Error(), tc.cause) || !strings.Contains(err.Error(), tc.addr) {
				t.Errorf("Dial(%s) = %q, want the address and the cause (%q)", tc.addr, err, tc.cause)
			}
		})
	}
}

// A server that accepts TCP but never answers keeps the first attempt going:
// Dial then ends with ctx, matching ErrUnavailable and ctx's error.
func TestDialEndsWithCtxWhileTheFirstAttemptHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // accepted, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := errand.Dial(ctx, ln.Addr().String())
	if err == nil {
		c.Close()
		t.Fatal("Dial to a silent server succeeded")
	}
	if !errors.Is(err, errand.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > fastDial {
		t.Errorf("Dial returned %v after a 300ms deadline", d)
	}
}

// Dialling before the server is up takes WithLazyConnect: a call fails with
// ErrUnavailable while nothing listens, and the client connects by itself
// once the server does.
func TestLazyDialBeforeTheServerIsUp(t *testing.T) {
	addr := deadAddr(t)
	c, err := errand.Dial(context.Background(), addr, errand.WithLazyConnect(),
		errand.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatalf("lazy Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := testkit.Ctx(t)
	if _, err := c.ListTools(ctx); !errors.Is(err, errand.ErrUnavailable) {
		t.Fatalf("ListTools with no server = %v, want ErrUnavailable", err)
	}
	srv, err := testserver.Start(testserver.Options{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	conn := c.Conn()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("the client did not reconnect to the server (state %v)", s)
		}
	}
	if _, err := c.ListTools(ctx); err != nil {
		t.Fatalf("ListTools once the server is up: %v", err)
	}
}

// freeAddr is a loopback address free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A client pointed at one of errand's HTTP listeners (MCP, A2A, dashboard)
// gets grpc-go's "unexpected HTTP status code received from server: 404
// (Not Found); malformed header: missing HTTP content-type" as
// UNIMPLEMENTED, which reads as an old server. The error says what the CLI
// says instead, and still matches what it matched.
func TestHTTPListenerIsNamedAsTheWrongPort(t *testing.T) {
	ports := map[string]string{"mcp": freeAddr(t), "a2a": freeAddr(t), "ui": freeAddr(t)}
	srv, err := testserver.Start(testserver.Options{Args: []string{
		"--mcp-listen", ports["mcp"], "--a2a-listen", ports["a2a"], "--ui-listen", ports["ui"],
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	for name, addr := range ports {
		t.Run(name, func(t *testing.T) {
			c := testkit.Dial(t, addr)
			ctx := testkit.Ctx(t)
			check := func(op string, err error) {
				t.Helper()
				t.Logf("%s: %v", op, err)
				if !errors.Is(err, errand.ErrUnimplemented) || status.Code(err) != codes.Unimplemented {
					t.Errorf("%s = %v, want ErrUnimplemented as before", op, err)
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				for _, want := range []string{"answered HTTP, not errand's gRPC (HTTP status 404)",
					"MCP, A2A or dashboard port", "ERRAND_SERVER", "errand serve --listen", "7466"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s = %q, want it to say %q", op, msg, want)
					}
				}
				if strings.Contains(msg, "Unimplemented") {
					t.Errorf("%s = %q: reads as an old server", op, msg)
				}
			}
			_, err := c.ListTools(ctx)
			check("ListTools", err)
			_, err = c.Submit(ctx, "s", "tool", nil)
			check("Submit", err)
			for _, err := range c.Completions(ctx, "s", 0) {
				check("Completions", err)
				break
			}
			if name == "a2a" {
				// The A2A listener also serves gRPC (A2A's own service), and
				// holds a worker's Connect stream (bidirectional, never
				// half-closed) open without an answer: a server matter.
				return
			}
			w := worker.New(c)
			w.Handle(testkit.Name("tool"), "A tool.", nil, echo)
			check("worker.Run", w.Run(ctx))
		})
	}
}
