package errand_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// badJSON marshals to JSON text that is not UTF-8 (encoding/json lets it
// pass).
type badJSON struct{}

func (badJSON) MarshalJSON() ([]byte, error) { return []byte("{\"a\":\"\xff\"}"), nil }

// first is the error of a stream's first item (nil if it yields a value),
// within a bound: a stream refused for good ends at once.
func first[V any](seq iter.Seq2[V, error]) error {
	done := make(chan error, 1)
	go func() {
		for _, err := range seq {
			done <- err
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return errors.New("the stream neither yielded nor ended within 5s")
	}
}

// A string that is not UTF-8, in any field the SDK sends, is the caller's
// mistake: InvalidArgument naming the field, before anything is sent, as
// the server names what it refuses; not grpc-go's INTERNAL "error while
// marshaling: string field contains invalid UTF-8", which names none. The
// connection is unharmed.
func TestTextThatIsNotUTF8IsInvalidArgumentNamingTheField(t *testing.T) {
	ctx := testkit.Ctx(t)
	c := testkit.Dial(t, fakeserver.Start(t, &pb.UnimplementedToolServiceServer{}, nil))
	streamCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	const bad = "a\xffb"
	submit := func(session, tool string, args any, opts ...errand.SubmitOption) error {
		_, err := c.Submit(ctx, session, tool, args, opts...)
		return err
	}
	getTask := func() error { _, err := c.GetTask(ctx, bad); return err }
	cancelTask := func() error {
		_, err := c.Cancel(ctx, "00000000-0000-0000-0000-000000000000", errand.WithReason(bad))
		return err
	}
	ack := func() error { _, err := c.AckCompletions(ctx, bad, 1); return err }
	digest := func() error { _, err := c.PendingDigest(ctx, bad, 0); return err }
	read := func() error { _, err := c.ReadResult(ctx, bad, 0, 0); return err }
	direct := func() error {
		_, err := pb.NewToolServiceClient(c.Conn()).ListTasks(ctx, &pb.ListTasksRequest{SessionId: bad})
		return err
	}
	for _, tc := range []struct {
		what  string
		err   error
		field string
	}{
		{"Submit(session)", submit(bad, "fast", nil), "session_id"},
		{"Submit(tool)", submit("s", bad, nil), "tool"},
		{"Submit(raw arguments)", submit("s", "fast", json.RawMessage("{\"a\":\"\xff\"}")), "arguments"},
		{"Submit([]byte arguments)", submit("s", "fast", []byte("{\"a\":\"\xff\"}")), "arguments"},
		{"Submit(arguments whose MarshalJSON is not UTF-8)", submit("s", "fast", badJSON{}), "arguments"},
		{"Submit(WithIdempotencyKey)", submit("s", "fast", nil, errand.WithIdempotencyKey(bad)), "idempotency_key"},
		{"Submit(WithFallbackTool)", submit("s", "fast", nil, errand.WithFallbackTool(bad)), "fallback.tool"},
		{"GetTask", getTask(), "task_id"},
		{"Cancel(WithReason)", cancelTask(), "reason"},
		{"AckCompletions", ack(), "session_id"},
		{"PendingDigest", digest(), "session_id"},
		{"ReadResult", read(), "task_id"},
		{"Completions", first(c.Completions(streamCtx, bad, 0)), "session_id"},
		{"SessionEvents", first(c.SessionEvents(streamCtx, bad, 0)), "session_id"},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		t.Logf("%s: %v", tc.what, tc.err)
		testkit.CheckCode(t, tc.what, tc.err, codes.InvalidArgument)
		msg := tc.err.Error()
		if !strings.Contains(msg, tc.field) || !strings.Contains(msg, "UTF-8") || !strings.Contains(msg, `\xff`) {
			t.Errorf("%s: %q should name %s, say UTF-8 and show the byte", tc.what, msg, tc.field)
		}
	}
	// The generated stubs called on Conn() are checked too (their errors
	// are statuses, not *Error).
	if err := direct(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "session_id") {
		t.Errorf("ListTasks through the generated stub = %v, want InvalidArgument naming session_id", err)
	}
	// The connection goes on: the fake server answers what is sent to it.
	if _, err := c.GetTask(ctx, "t"); !strings.Contains(err.Error(), "unimplemented") {
		t.Errorf("GetTask after the refusals = %v, want the fake server's unimplemented", err)
	}
}

// Metadata the caller adds to ctx that gRPC cannot send (a value that is
// not printable ASCII, a key with a space) is refused by grpc-go
// before sending, naming the header, but as INTERNAL, which streams retried
// for ever: it is the caller's mistake, InvalidArgument, as for the fields.
func TestMetadataGRPCCannotSendIsInvalidArgument(t *testing.T) {
	c := testkit.Dial(t, fakeserver.Start(t, &pb.UnimplementedToolServiceServer{}, nil))
	for _, kv := range [][2]string{{"x-trace", "a\xffb"}, {"x-trace", "line\nbreak"}, {"X Trace", "v"}} {
		ctx := metadata.AppendToOutgoingContext(testkit.Ctx(t), kv[0], kv[1])
		_, err := c.GetTask(ctx, "t")
		streamCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		streamErr := first(c.Completions(streamCtx, "s", 0))
		cancel()
		for what, err := range map[string]error{"GetTask": err, "Completions": streamErr} {
			what = fmt.Sprintf("%s with metadata %q: %q", what, kv[0], kv[1])
			t.Logf("%s: %v", what, err)
			testkit.CheckCode(t, what, err, codes.InvalidArgument)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", strings.ToLower(kv[0]))) {
				t.Errorf("%s: %v, want it to name the header", what, err)
			}
		}
	}
}
