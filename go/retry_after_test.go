package errand_test

// A server with tokens and --requests-per-second-per-tenant refuses a call
// past its tenant's rate with RESOURCE_EXHAUSTED, "retry in N ms", and says
// N in the retry-after-ms trailer. A call (Submit, ListTools, ...) is not
// retried: its *errand.Error says the wait (RetryAfter).

import (
	"errors"
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
