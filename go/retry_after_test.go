package errand_test

// A server with tokens and --requests-per-second-per-tenant refuses a call
// past its tenant's rate with RESOURCE_EXHAUSTED, "retry in N ms", and says
// N in the retry-after-ms trailer. A call (Submit, ListTools, ...) is not
// retried: its *errand.Error says the wait (RetryAfter).

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestE2EARateLimitedCallSaysHowLongToWait(t *testing.T) {
	r := testkit.StartRated(t)
	c := testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Agent))
	for _, err := range []error{testkit.Spend(t, c), refusedSubmit(t, c)} {
		var e *errand.Error
		if !errors.As(err, &e) || e.Code != codes.ResourceExhausted || !errors.Is(err, errand.ErrResourceExhausted) {
			t.Fatalf("a call past the rate = %v, want an *errand.Error with RESOURCE_EXHAUSTED", err)
		}
		asked := testkit.Asked(t, e.Message)
		if e.RetryAfter != asked || asked <= 0 {
			t.Errorf("%s: RetryAfter = %v, want the server's retry-after-ms (%v, as its words say)", e.Op, e.RetryAfter, asked)
		}
	}
}

// A call made on Client.Conn() with the generated stubs fails as grpc-go
// fails it: the status and its text are unchanged by the trailer kept.
func TestE2EARateLimitedRawCallKeepsItsStatus(t *testing.T) {
	r := testkit.StartRated(t)
	c := testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Agent))
	testkit.Spend(t, c)
	_, err := pb.NewToolServiceClient(c.Conn()).ListTools(testkit.Ctx(t), &pb.ListToolsRequest{})
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted || st.Err().Error() != err.Error() {
		t.Fatalf("a raw ListTools past the rate = %v (status %v), want grpc-go's RESOURCE_EXHAUSTED as it is", err, st)
	}
	if asked := testkit.Asked(t, st.Message()); asked <= 0 || asked > time.Second {
		t.Errorf("the raw call's status %q asks %v", st.Message(), asked)
	}
}

// refusedSubmit is a Submit refused for the rate: one made after Spend
// (again, should the rate have let one through meanwhile: a slow machine).
func refusedSubmit(t *testing.T, c *errand.Client) error {
	t.Helper()
	for {
		testkit.Spend(t, c)
		_, err := c.Submit(testkit.Ctx(t), testkit.Name("session"), "echo", nil)
		if !errors.Is(err, errand.ErrNotFound) { // let through: no tool echo
			return err
		}
	}
}

// Past the rate, a Completions stream (or SessionEvents, or an Inbox's) is
// refused when it opens: it waits as long as the server asks, not its own
// backoff (far shorter here), says the wait in its WARN ("in"), and goes on.

// ratedStreams serves an echo tool on r with a worker, submits one task to
// it and spends the tenant's calls; it returns a client that logs to logs,
// the session and the task's ID.
func ratedStreams(t *testing.T, r *testkit.Rated, logs *testkit.Logs) (*errand.Client, string, string) {
	t.Helper()
	tool := serveEcho(t, testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Worker)))
	c := testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Agent),
		errand.WithReconnectBackoff(shortBackoff/2, shortBackoff), errand.WithLogger(logs.Logger()))
	session := testkit.Name("session")
	ack, err := c.Submit(testkit.Ctx(t), session, tool, map[string]string{"text": "hi"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	testkit.Spend(t, c)
	return c, session, ack.TaskID
}

// shortBackoff is the streams' longest backoff: far shorter than any wait
// the server asks for here.
const shortBackoff = 10 * time.Millisecond

func TestE2ECompletionsWaitAsLongAsTheServerAsks(t *testing.T) {
	r := testkit.StartRated(t)
	logs := testkit.NewLogs()
	c, session, taskID := ratedStreams(t, r, logs)
	stream := testkit.Follow(t, c, session, 0)
	testkit.WaitedAsAsked(t, shortBackoff, logs.Await(t, slog.LevelWarn, "errand: Completions stream broke; reconnecting"))
	if got := stream.Next(t); got.TaskID != taskID {
		t.Fatalf("completion of %s, want %s", got.TaskID, taskID)
	}
}

func TestE2ESessionEventsWaitAsLongAsTheServerAsks(t *testing.T) {
	r := testkit.StartRated(t)
	logs := testkit.NewLogs()
	c, session, taskID := ratedStreams(t, r, logs)
	ctx, cancel := context.WithCancel(testkit.Ctx(t))
	defer cancel()
	events := make(chan testkit.Item, 1)
	go func() {
		for ev, err := range c.SessionEvents(ctx, session, 0) {
			if ev.Completion != nil || err != nil {
				events <- testkit.Item{C: ev.Completion, Err: err}
				return
			}
		}
	}()
	testkit.WaitedAsAsked(t, shortBackoff, logs.Await(t, slog.LevelWarn, "errand: SessionEvents stream broke; reconnecting"))
	select {
	case it := <-events:
		if it.Err != nil || it.C.TaskID != taskID {
			t.Fatalf("SessionEvents = %+v, %v; want the completion of %s", it.C, it.Err, taskID)
		}
	case <-time.After(testkit.Timeout):
		t.Fatalf("no completion within %v", testkit.Timeout)
	}
}
