// Package testkit holds the helpers the client and worker tests share: one
// real server per test binary, unique names, a worker running for the length
// of a test, and a Completions follower that tests read with a timeout.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Timeout bounds every wait for an event in the tests.
const Timeout = 20 * time.Second

var shared *testserver.Server

// Main runs a test binary's tests against one shared server (TestMain).
func Main(m *testing.M) {
	srv, err := testserver.Start(testserver.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testkit:", err)
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- server stderr (tail) ---\n%s\n", srv.Stderr())
	}
	srv.Kill()
	os.Exit(code)
}

// Addr is the shared server's address.
func Addr() string { return shared.Addr }

var counter atomic.Int64
var unsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Name returns base with a suffix unique in this test binary, valid as a tool
// name or session ID (tests share one server, so names must not collide).
func Name(base string) string {
	return fmt.Sprintf("%s_%d", unsafe.ReplaceAllString(base, "_"), counter.Add(1))
}

// Ctx is a context that ends with the test or after Timeout.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Dial connects to addr with fast reconnects, closed at the end of the test.
func Dial(t testing.TB, addr string, opts ...errand.Option) *errand.Client {
	t.Helper()
	opts = append([]errand.Option{errand.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := errand.Dial(Ctx(t), addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Worker is a worker.Worker running in the background of one test.
type Worker struct {
	*worker.Worker
	// Registered receives the worker ID on each (re)registration.
	Registered chan string
	// Done receives Run's error when it returns.
	Done chan error
}

// StartWorker builds a worker on c, lets setup register its tools, runs it
// until the end of the test and waits for its first registration.
func StartWorker(t testing.TB, c *errand.Client, setup func(w *worker.Worker), opts ...worker.Option) *Worker {
	t.Helper()
	tw := &Worker{Registered: make(chan string, 16), Done: make(chan error, 1)}
	opts = append([]worker.Option{
		worker.WithName(t.Name()),
		worker.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond),
		worker.OnRegistered(func(id string) { tw.Registered <- id }),
	}, opts...)
	tw.Worker = worker.New(c, opts...)
	setup(tw.Worker)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { tw.Done <- tw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tw.Done:
		case <-time.After(Timeout):
			t.Errorf("worker.Run did not return within %v of its context being cancelled", Timeout)
		}
	})
	tw.AwaitRegistered(t)
	return tw
}

// AwaitRegistered waits for the next registration of the worker.
func (w *Worker) AwaitRegistered(t testing.TB) string {
	t.Helper()
	select {
	case id := <-w.Registered:
		return id
	case err := <-w.Done:
		t.Fatalf("worker.Run returned before registering: %v", err)
	case <-time.After(Timeout):
		t.Fatalf("worker not registered within %v", Timeout)
	}
	return ""
}

// Item is one value of a Completions sequence.
type Item struct {
	C   *errand.Completion
	Err error
}

// Stream follows a session in the background; read it with Next.
type Stream struct {
	ch     chan Item
	cancel context.CancelFunc
}

// Follow starts ranging over c.Completions(ctx, session, after) until the
// end of the test.
func Follow(t testing.TB, c *errand.Client, session string, after uint64) *Stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{ch: make(chan Item, 1024), cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for comp, err := range c.Completions(ctx, session, after) {
			s.ch <- Item{comp, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// Next returns the next completion, failing the test on an error or after Timeout.
func (s *Stream) Next(t testing.TB) *errand.Completion {
	t.Helper()
	select {
	case it := <-s.ch:
		if it.Err != nil {
			t.Fatalf("Completions: %v", it.Err)
		}
		return it.C
	case <-time.After(Timeout):
		t.Fatalf("no completion within %v", Timeout)
	}
	return nil
}

// Stop ends the stream.
func (s *Stream) Stop() { s.cancel() }

// Items is the raw channel, to check that nothing more arrived.
func (s *Stream) Items() <-chan Item { return s.ch }

// RequireRPC skips t when the server answers UNIMPLEMENTED for rpc
// ("PendingDigest", "ReadResult" or "SessionEvents"): the test covers a
// feature of issue 17 that the server under test does not have yet, and runs
// as soon as it does. Any other answer (NOT_FOUND for the probe's unknown
// task, say) means the RPC exists. Features without an RPC of their own are
// probed through the RPC that comes with them: PendingDigest for cancel
// reasons, ReadResult for joins and fallbacks.
func RequireRPC(t testing.TB, c *errand.Client, rpc string) {
	t.Helper()
	if err := probe(t, c, rpc); err != nil {
		t.Skipf("the server under test (%s) lacks %s: %v", testserver.Bin(), rpc, err)
	}
}

// HasRPC reports whether the server implements rpc, probed as RequireRPC does.
func HasRPC(t testing.TB, c *errand.Client, rpc string) bool {
	t.Helper()
	return probe(t, c, rpc) == nil
}

// probe returns the UNIMPLEMENTED error the server answers for rpc, or nil.
func probe(t testing.TB, c *errand.Client, rpc string) error {
	t.Helper()
	ctx := Ctx(t)
	var err error
	switch rpc {
	case "PendingDigest":
		_, err = c.PendingDigest(ctx, Name("probe"), 0)
	case "ReadResult":
		_, err = c.ReadResult(ctx, "00000000-0000-0000-0000-000000000000", 0, 0)
	case "SessionEvents":
		// A fresh session's stream stays open and quiet, but its response
		// headers come at once; a server without the RPC answers with
		// trailers only, so Header returns no metadata and Recv the status.
		// The bound only guards against a server that sends no headers.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var st grpc.ServerStreamingClient[pb.SessionEvent]
		st, err = pb.NewToolServiceClient(c.Conn()).SessionEvents(pctx, &pb.SessionEventsRequest{SessionId: Name("probe")})
		if err == nil {
			if md, _ := st.Header(); md == nil {
				_, err = st.Recv()
			}
		}
		if status.Code(err) == codes.Unimplemented {
			err = errand.ErrUnimplemented
		}
	default:
		t.Fatalf("testkit: no probe for %s", rpc)
	}
	if errors.Is(err, errand.ErrUnimplemented) {
		return err
	}
	return nil
}

// sentinels is every errand sentinel and the status code it stands for.
var sentinels = map[error]codes.Code{
	errand.ErrInvalidArgument:    codes.InvalidArgument,
	errand.ErrNotFound:           codes.NotFound,
	errand.ErrResourceExhausted:  codes.ResourceExhausted,
	errand.ErrFailedPrecondition: codes.FailedPrecondition,
	errand.ErrUnauthenticated:    codes.Unauthenticated,
	errand.ErrPermissionDenied:   codes.PermissionDenied,
	errand.ErrUnavailable:        codes.Unavailable,
	errand.ErrInternal:           codes.Internal,
	errand.ErrOutOfRange:         codes.OutOfRange,
	errand.ErrUnimplemented:      codes.Unimplemented,
}

// CheckCode fails t unless err answers status.Code with want and errors.Is
// agrees with it for every sentinel: it matches the sentinel of want, and
// no other.
func CheckCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: status.Code = %v, want %v (err: %v)", what, got, want, err)
	}
	for s, code := range sentinels {
		if errors.Is(err, s) != (code == want) {
			t.Errorf("%s: errors.Is(err, %v) = %v, but status.Code should be %v (err: %v)", what, s, errors.Is(err, s), want, err)
		}
	}
}
