package errand_test

// A message larger than the client's WithMaxRecvBytes is refused by grpc-go
// itself, as codes.ResourceExhausted. Completions and SessionEvents took
// that for a server saying "try later" and reconnected for ever, only to be
// sent the same message again: the loop never saw an error. Now they end
// with ErrResourceExhausted naming the sizes and the option to raise, as a
// unary call's error does; the server's own RESOURCE_EXHAUSTED (a rate
// limit) stays worth retrying (see rpcerr's tests).

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestStreamsEndWhenAMessageIsOverTheReceiveLimit(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("echo_len")
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "The length of its arguments.", nil, func(_ context.Context, a json.RawMessage) (any, error) {
			return len(a), nil
		})
	})
	session := testkit.Name("maxrecv")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(testkit.Ctx(t), session, tool, map[string]string{"pad": strings.Repeat("x", 8000)})
	if err != nil {
		t.Fatal(err)
	}
	if done := stream.Next(t); done.TaskID != ack.TaskID || done.Status != errand.StatusSucceeded {
		t.Fatalf("completion %+v, want task %s SUCCEEDED", done, ack.TaskID)
	}

	small := testkit.Dial(t, testkit.Addr(), errand.WithMaxRecvBytes(4096))
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errand.ErrResourceExhausted) {
			t.Fatalf("%s: error %v, want ErrResourceExhausted", what, err)
		}
		for _, want := range []string{"WithMaxRecvBytes", "4096"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %q", what, err, want)
			}
		}
	}
	ctx := testkit.Ctx(t)
	for comp, err := range small.Completions(ctx, session, 0) {
		if err == nil {
			t.Fatalf("Completions yielded %+v, want an error", comp)
		}
		check("Completions", err)
		break
	}
	for ev, err := range small.SessionEvents(ctx, session, 0) {
		if err == nil {
			t.Fatalf("SessionEvents yielded %+v, want an error", ev)
		}
		check("SessionEvents", err)
		break
	}
	_, err = small.GetTask(ctx, ack.TaskID)
	check("GetTask", err)
}
