package errand_test

// Tokens, tenants, TLS and mutual TLS against the real server. Certificates
// are made at test time (internal/testpki), tokens with `errand token new
// --append`; each server listens on 127.0.0.1:0 with --tokens-file and
// --tls-cert/--tls-key (and --tls-client-ca for mTLS).

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testpki"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type secure struct {
	pki                                       *testpki.PKI
	tokensFile                                string
	agentA, workerA, agentB, workerB, expired string
}

// newSecure makes certificates and tokens (tenants "acme" and "globex").
func newSecure(t *testing.T) *secure {
	t.Helper()
	dir := t.TempDir()
	pki, err := testpki.Generate(dir)
	if err != nil {
		t.Fatalf("certificates: %v", err)
	}
	s := &secure{pki: pki, tokensFile: filepath.Join(dir, "tokens")}
	for _, tok := range []struct {
		dst          *string
		role, tenant string
		extra        []string
	}{
		{&s.agentA, "agent", "acme", nil},
		{&s.workerA, "worker", "acme", nil},
		{&s.agentB, "agent", "globex", nil},
		{&s.workerB, "worker", "globex", nil},
		{&s.expired, "agent", "acme", []string{"--expires", "2000-01-01T00:00:00Z"}},
	} {
		if *tok.dst, err = testserver.NewToken(s.tokensFile, tok.role, tok.tenant, tok.extra...); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

type serveMode int

const (
	plainTokens serveMode = iota // loopback plaintext, tokens required
	tlsTokens                    // TLS, tokens required
	mtlsTokens                   // TLS with client certificates, tokens required
)

func (s *secure) serve(t *testing.T, mode serveMode) string {
	t.Helper()
	args := []string{"--tokens-file", s.tokensFile}
	if mode != plainTokens {
		args = append(args, "--tls-cert", s.pki.ServerCert, "--tls-key", s.pki.ServerKey)
	}
	if mode == mtlsTokens {
		args = append(args, "--tls-client-ca", s.pki.CA)
	}
	srv, err := testserver.Start(testserver.Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server stderr:\n%s", srv.Stderr())
		}
		srv.Kill()
	})
	return srv.Addr
}

// tlsCA trusts the test CA, with no client certificate.
func (s *secure) tlsCA() errand.Option { return errand.WithTLSFiles(s.pki.CA, "", "") }

// mtls trusts the test CA and presents the accepted client certificate.
func (s *secure) mtls() errand.Option {
	return errand.WithTLSFiles(s.pki.CA, s.pki.ClientCert, s.pki.ClientKey)
}

// lazy dials without waiting for the connection, for clients the server is
// expected to refuse.
func lazy(t *testing.T, addr string, opts ...errand.Option) *errand.Client {
	t.Helper()
	c, err := errand.Dial(context.Background(), addr, append(opts, errand.WithLazyConnect())...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refusedWith checks that c's first call fails with the sentinel want.
func refusedWith(t *testing.T, c *errand.Client, want error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.ListTools(ctx)
	t.Logf("refused: %v", err)
	if !errors.Is(err, want) {
		t.Fatalf("ListTools = %v, want %v", err, want)
	}
}

func echoTool(t *testing.T, c *errand.Client) string {
	return serveEcho(t, c)
}

// roundtrip submits to tool and waits for its completion on the session.
func roundtrip(t *testing.T, c *errand.Client, tool string) {
	t.Helper()
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, map[string]string{"text": "hello"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	done := stream.Next(t)
	if done.TaskID != ack.TaskID || done.Status != errand.StatusSucceeded || string(done.Result) != `{"text":"hello"}` {
		t.Fatalf("completion = %+v, want task %s succeeded with the arguments", done, ack.TaskID)
	}
}

func TestTLSWithTokensEndToEnd(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, tlsTokens)
	tool := echoTool(t, testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.workerA)))
	agent := testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.agentA))
	tools, err := agent.ListTools(testkit.Ctx(t))
	if err != nil || len(tools) != 1 || tools[0].Name != tool {
		t.Fatalf("ListTools = %v, %v; want only %s", tools, err, tool)
	}
	roundtrip(t, agent, tool)
}

func TestSettingsFromTheEnvironment(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, mtlsTokens)
	t.Setenv("ERRAND_SERVER", addr)
	t.Setenv("ERRAND_TLS_CA", s.pki.CA)
	t.Setenv("ERRAND_TLS_CERT", s.pki.ClientCert)
	t.Setenv("ERRAND_TLS_KEY", s.pki.ClientKey)
	t.Setenv("ERRAND_TLS_DOMAIN", "localhost")
	t.Setenv("ERRAND_TOKEN", s.workerA)
	tool := echoTool(t, testkit.Dial(t, "", errand.WithEnv()))
	t.Setenv("ERRAND_TOKEN", s.agentA)
	roundtrip(t, testkit.Dial(t, "", errand.WithEnv()), tool)

	// An explicit option wins over the environment, whatever the order.
	refusedWith(t, lazy(t, "", errand.WithBearerToken("ert_wrong"), errand.WithEnv()), errand.ErrUnauthenticated)
	// Without WithEnv nothing but the address is read: plaintext to a TLS server.
	refusedWith(t, lazy(t, ""), errand.ErrUnavailable)
}

func TestServerNameOverride(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, tlsTokens)
	c := testkit.Dial(t, addr, s.tlsCA(), errand.WithServerName("localhost"), errand.WithBearerToken(s.agentA))
	if _, err := c.ListTools(testkit.Ctx(t)); err != nil {
		t.Fatalf("ListTools with server name localhost: %v", err)
	}
	// The certificate does not name elsewhere.test.
	refusedWith(t, lazy(t, addr, s.tlsCA(), errand.WithServerName("elsewhere.test"), errand.WithBearerToken(s.agentA)), errand.ErrUnavailable)
	// A CA that did not sign the server's certificate.
	refusedWith(t, lazy(t, addr, errand.WithTLSFiles(s.pki.RogueCert, "", ""), errand.WithBearerToken(s.agentA)), errand.ErrUnavailable)
	// Plaintext to a TLS server.
	refusedWith(t, lazy(t, addr, errand.WithBearerToken(s.agentA)), errand.ErrUnavailable)
}

func TestMissingWrongOrExpiredTokenIsUnauthenticated(t *testing.T) {
	s := newSecure(t)
	servers := []struct {
		name string
		addr string
		opts []errand.Option
	}{
		{"tls", s.serve(t, tlsTokens), []errand.Option{s.tlsCA()}},
		{"plaintext", s.serve(t, plainTokens), nil},
	}
	for _, srv := range servers {
		for _, tok := range []struct{ name, token string }{{"none", ""}, {"wrong", "ert_" + strings.Repeat("0", 64)}, {"expired", s.expired}} {
			t.Run(srv.name+"/"+tok.name, func(t *testing.T) {
				opts := append([]errand.Option(nil), srv.opts...)
				if tok.token != "" {
					opts = append(opts, errand.WithBearerToken(tok.token))
				}
				c := testkit.Dial(t, srv.addr, opts...)
				ctx := testkit.Ctx(t)
				check := func(op string, err error) {
					t.Helper()
					if !errors.Is(err, errand.ErrUnauthenticated) || status.Code(err) != codes.Unauthenticated {
						t.Errorf("%s = %v, want ErrUnauthenticated", op, err)
					}
				}
				_, err := c.ListTools(ctx)
				check("ListTools", err)
				_, err = c.Submit(ctx, "s", "tool", nil)
				check("Submit", err)
				_, err = c.GetTask(ctx, "t-1")
				check("GetTask", err)
				for _, err := range c.Completions(ctx, "s", 0) {
					check("Completions", err) // the one final error: not retried
					break
				}
				w := worker.New(c)
				w.Handle(testkit.Name("tool"), "A tool.", nil, echo)
				check("worker.Run", w.Run(ctx))
			})
		}
	}
}

func TestTokenOverPlaintextLoopback(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, plainTokens)
	tool := echoTool(t, testkit.Dial(t, addr, errand.WithBearerToken(s.workerA)))
	roundtrip(t, testkit.Dial(t, addr, errand.WithBearerToken(s.agentA)), tool)
}

func TestRolesAreEnforced(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, tlsTokens)
	refusedWith(t, testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.workerA)), errand.ErrPermissionDenied)
	w := worker.New(testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.agentA)))
	w.Handle(testkit.Name("tool"), "A tool.", nil, echo)
	if err := w.Run(testkit.Ctx(t)); !errors.Is(err, errand.ErrPermissionDenied) {
		t.Fatalf("worker with an agent token: Run = %v, want ErrPermissionDenied", err)
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, tlsTokens)
	toolA := echoTool(t, testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.workerA)))
	toolB := echoTool(t, testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.workerB)))
	a := testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.agentA))
	b := testkit.Dial(t, addr, s.tlsCA(), errand.WithBearerToken(s.agentB))
	ctx := testkit.Ctx(t)
	session := testkit.Name("shared_session_name")

	// B follows a session of the same name before A's task exists.
	streamB := testkit.Follow(t, b, session, 0)
	streamA := testkit.Follow(t, a, session, 0)
	ackA, err := a.Submit(ctx, session, toolA, map[string]string{"text": "acme"})
	if err != nil {
		t.Fatalf("A Submit: %v", err)
	}
	if done := streamA.Next(t); done.TaskID != ackA.TaskID {
		t.Fatalf("A's completion is %s, want %s", done.TaskID, ackA.TaskID)
	}

	// A's task does not exist for B; A still sees it.
	if _, err := b.GetTask(ctx, ackA.TaskID); !errors.Is(err, errand.ErrNotFound) {
		t.Errorf("B GetTask(A's task) = %v, want ErrNotFound", err)
	}
	if _, err := b.Cancel(ctx, ackA.TaskID); !errors.Is(err, errand.ErrNotFound) {
		t.Errorf("B Cancel(A's task) = %v, want ErrNotFound", err)
	}
	if task, err := a.GetTask(ctx, ackA.TaskID); err != nil || task.Status != errand.StatusSucceeded {
		t.Errorf("A GetTask = %+v, %v; want succeeded", task, err)
	}

	// Each tenant sees its own tools only, and cannot call the other's.
	for _, c := range []struct {
		client      *errand.Client
		own, others string
	}{{a, toolA, toolB}, {b, toolB, toolA}} {
		tools, err := c.client.ListTools(ctx)
		if err != nil || len(tools) != 1 || tools[0].Name != c.own {
			t.Errorf("ListTools = %v, %v; want only %s", tools, err, c.own)
		}
		if _, err := c.client.Submit(ctx, session, c.others, nil); !errors.Is(err, errand.ErrNotFound) {
			t.Errorf("Submit(the other tenant's %s) = %v, want ErrNotFound", c.others, err)
		}
	}

	// B's stream of the same session name got nothing of A's: its first
	// completion is B's own task.
	ackB, err := b.Submit(ctx, session, toolB, map[string]string{"text": "globex"})
	if err != nil {
		t.Fatalf("B Submit: %v", err)
	}
	if first := streamB.Next(t); first.TaskID != ackB.TaskID || string(first.Result) != `{"text":"globex"}` {
		t.Fatalf("B's first completion = %+v, want its own task %s", first, ackB.TaskID)
	}
	if _, err := a.GetTask(ctx, ackB.TaskID); !errors.Is(err, errand.ErrNotFound) {
		t.Errorf("A GetTask(B's task) = %v, want ErrNotFound", err)
	}
}

func TestMutualTLS(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, mtlsTokens)
	tool := echoTool(t, testkit.Dial(t, addr, s.mtls(), errand.WithBearerToken(s.workerA)))
	roundtrip(t, testkit.Dial(t, addr, s.mtls(), errand.WithBearerToken(s.agentA)), tool)

	// No client certificate, or one signed by a CA the server does not trust.
	refusedWith(t, lazy(t, addr, s.tlsCA(), errand.WithBearerToken(s.agentA)), errand.ErrUnavailable)
	rogue := errand.WithTLSFiles(s.pki.CA, s.pki.RogueCert, s.pki.RogueKey)
	refusedWith(t, lazy(t, addr, rogue, errand.WithBearerToken(s.agentA)), errand.ErrUnavailable)
	// A good certificate is no token.
	refusedWith(t, testkit.Dial(t, addr, s.mtls()), errand.ErrUnauthenticated)
}

// Without WithLazyConnect, a TLS handshake that fails makes Dial fail at
// once (ErrUnavailable, naming the cause) instead of waiting for its ctx.
func TestDialFailsFastOnATLSFailure(t *testing.T) {
	s := newSecure(t)
	tlsAddr, mtlsAddr := s.serve(t, tlsTokens), s.serve(t, mtlsTokens)
	for _, tc := range []struct {
		name, addr, cause string
		opts              []errand.Option
	}{
		{"unknown CA", tlsAddr, "certificate", []errand.Option{errand.WithTLSFiles(s.pki.RogueCert, "", "")}},
		{"wrong server name", tlsAddr, "elsewhere.test", []errand.Option{s.tlsCA(), errand.WithServerName("elsewhere.test")}},
		{"plaintext to TLS", tlsAddr, "", nil},
		{"no client certificate", mtlsAddr, "", []errand.Option{s.tlsCA()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := errand.Dial(testkit.Ctx(t), tc.addr, append(tc.opts, errand.WithBearerToken(s.agentA))...)
			d := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded")
			}
			t.Logf("Dial after %v: %v", d, err)
			if d > fastDial || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Dial returned after %v (%v), want at the failed handshake", d, err)
			}
			if !errors.Is(err, errand.ErrUnavailable) || status.Code(err) != codes.Unavailable {
				t.Errorf("Dial = %v, want ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), tc.cause) {
				t.Errorf("Dial = %q, want the cause (%q)", err, tc.cause)
			}
		})
	}
}

// TLS mistakes say what to fix, as the CLI and the Python SDK do: no CA
// for a TLS server (it may serve TLS: the option that gives its CA), a CA
// that did not sign the server's certificate, no client certificate for a
// server that requires one, TLS to a server without it; an X.509 v1 client
// certificate and a key that is not the certificate's are refused naming
// the files.
func TestTLSMistakesSayWhatToFix(t *testing.T) {
	s := newSecure(t)
	tlsAddr, mtlsAddr := s.serve(t, tlsTokens), s.serve(t, mtlsTokens)
	plainAddr := s.serve(t, plainTokens)
	for _, tc := range []struct {
		name, addr string
		opts       []errand.Option
		want       []string
	}{
		{"plaintext to TLS", tlsAddr, nil, []string{"running", "serves TLS", "WithTLSFiles", "ERRAND_TLS_CA"}},
		{"unknown CA", tlsAddr, []errand.Option{errand.WithTLSFiles(s.pki.RogueCert, "", "")}, []string{"did not sign", "WithTLSFiles"}},
		{"no client certificate", mtlsAddr, []errand.Option{s.tlsCA()}, []string{"client certificate", "ERRAND_TLS_CERT"}},
		{"TLS to plaintext", plainAddr, []errand.Option{s.tlsCA()}, []string{"does not speak TLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := errand.Dial(testkit.Ctx(t), tc.addr, append(tc.opts, errand.WithBearerToken(s.agentA))...)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded")
			}
			for _, words := range tc.want {
				if !strings.Contains(err.Error(), words) {
					t.Errorf("Dial = %q, want %q in it", err, words)
				}
			}
		})
	}
	v1 := filepath.Join("..", "client", "testdata", "v1-client.pem")
	_, err := errand.TLSConfigFromFiles(s.pki.CA, v1, s.pki.ClientKey)
	if err == nil || !strings.Contains(err.Error(), v1) || !strings.Contains(err.Error(), "extendedKeyUsage=clientAuth") {
		t.Errorf("a v1 certificate: %v, want its file and how to make a v3 one", err)
	}
	_, err = errand.TLSConfigFromFiles(s.pki.CA, s.pki.ClientCert, s.pki.RogueKey)
	if err == nil || !strings.Contains(err.Error(), s.pki.ClientCert) || !strings.Contains(err.Error(), s.pki.RogueKey) {
		t.Errorf("a key of another certificate: %v, want both files", err)
	}
}

func TestTLSFilesErrors(t *testing.T) {
	s := newSecure(t)
	ctx := testkit.Ctx(t)
	for name, opt := range map[string]errand.Option{
		"missing CA":        errand.WithTLSFiles(filepath.Join(t.TempDir(), "nope.pem"), "", ""),
		"key is not a CA":   errand.WithTLSFiles(s.pki.ClientKey, "", ""),
		"cert without key":  errand.WithTLSFiles(s.pki.CA, s.pki.ClientCert, ""),
		"key of other cert": errand.WithTLSFiles(s.pki.CA, s.pki.ClientCert, s.pki.RogueKey),
		"token with spaces": errand.WithBearerToken("ert_a b"),
	} {
		if _, err := errand.Dial(ctx, "127.0.0.1:1", opt, errand.WithLazyConnect()); err == nil {
			t.Errorf("%s: Dial succeeded", name)
		}
	}
}

// The token and TLS ride on every reconnect: a cut connection breaks the
// worker's Connect stream and the Completions stream; both are opened again,
// and the next task goes through.
func TestTokenAndTLSSurviveReconnects(t *testing.T) {
	s := newSecure(t)
	addr := s.serve(t, tlsTokens)
	proxy, err := testserver.NewProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	// The certificate names 127.0.0.1, which the proxy's address is too.
	wc := testkit.Dial(t, proxy.Addr, s.tlsCA(), errand.WithBearerToken(s.workerA))
	tool := testkit.Name("echo")
	w := testkit.StartWorker(t, wc, func(w *worker.Worker) {
		w.Handle(tool, "Returns its arguments.", nil, func(_ context.Context, a json.RawMessage) (any, error) { return a, nil })
	})
	agent := testkit.Dial(t, proxy.Addr, s.tlsCA(), errand.WithBearerToken(s.agentA))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, agent, session, 0)
	submit := func(text string) string {
		ack, err := agent.Submit(ctx, session, tool, map[string]string{"text": text})
		if err != nil {
			t.Fatalf("Submit(%s): %v", text, err)
		}
		return ack.TaskID
	}
	if id, done := submit("before"), stream.Next(t); done.TaskID != id {
		t.Fatalf("completion %s, want %s", done.TaskID, id)
	}
	proxy.Sever()
	w.AwaitRegistered(t) // registered again, with the token, over TLS
	id := submit("after")
	if done := stream.Next(t); done.TaskID != id || string(done.Result) != `{"text":"after"}` {
		t.Fatalf("completion after the cut = %+v, want %s", done, id)
	}
}
