package testkit

import (
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Rated is a server of one test's own whose tenant may make Rate calls a
// second (errand serve --tokens-file and --requests-per-second-per-tenant):
// past them a call is refused RESOURCE_EXHAUSTED, "retry in N ms", with N
// in the retry-after-ms trailer.
type Rated struct {
	Addr string
	// Agent and Worker are tokens of the one tenant: every call of either
	// counts against its rate (a stream once, when opened).
	Agent, Worker string
}

// Rate is a Rated server's calls per second per tenant: a burst of 4, then
// one every 250 ms.
const Rate = 4

// StartRated starts a Rated server for the length of t.
func StartRated(t testing.TB) *Rated {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	r := &Rated{}
	var err error
	if r.Agent, err = testserver.NewToken(tokens, "agent", "acme"); err != nil {
		t.Fatal(err)
	}
	if r.Worker, err = testserver.NewToken(tokens, "worker", "acme"); err != nil {
		t.Fatal(err)
	}
	srv, err := testserver.Start(testserver.Options{Args: []string{
		"--tokens-file", tokens, "--requests-per-second-per-tenant", strconv.Itoa(Rate)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server stderr:\n%s", srv.Stderr())
		}
		srv.Kill()
	})
	r.Addr = srv.Addr
	return r
}

// Spend makes calls with c (ListTools) until the server refuses one with a
// wait of most of a refill (at least 0.8 of 1/Rate), so that the next call
// is refused too; it returns that refusal.
func Spend(t testing.TB, c *errand.Client) error {
	t.Helper()
	ctx := Ctx(t)
	for {
		_, err := c.ListTools(ctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, errand.ErrResourceExhausted) {
			t.Fatalf("spending the tenant's calls: %v", err)
		}
		if Asked(t, err.Error()) >= time.Second*8/(10*Rate) {
			return err
		}
	}
}

var retryIn = regexp.MustCompile(`retry in (\d+) ms`)

// Asked is the wait the server's words in text ask for ("retry in N ms").
func Asked(t testing.TB, text string) time.Duration {
	t.Helper()
	m := retryIn.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%q does not say how long to wait (retry in N ms)", text)
	}
	ms, _ := strconv.Atoi(m[1])
	return time.Duration(ms) * time.Millisecond
}

// WaitedAsAsked checks the WARN of a reconnect (a client's stream, a
// worker's): a RESOURCE_EXHAUSTED (its "err") and a wait ("in") of the
// server's retry-after-ms, as its words say, not a backoff's (at most
// backoff).
func WaitedAsAsked(t testing.TB, backoff time.Duration, r slog.Record) {
	t.Helper()
	err, _ := Attr(t, r, "err").Any().(error)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%s: err = %v, want the rate limit's RESOURCE_EXHAUSTED", r.Message, err)
	}
	in := Attr(t, r, "in")
	if in.Kind() != slog.KindDuration || in.Duration() != Asked(t, err.Error()) || in.Duration() <= backoff {
		t.Errorf("%s: in = %v, want the server's wait (%v), not the backoff's", r.Message, in, err)
	}
}
