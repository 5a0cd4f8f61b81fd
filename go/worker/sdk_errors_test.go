package worker_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
)

// The errors the worker raises itself answer status.Code with the code of
// the sentinel they match (or should match), as the server's do.
func TestErrorsTheWorkerRaisesAnswerStatusCode(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	ctx := testkit.Ctx(t)

	noTools := worker.New(c).Run(ctx)
	negative := worker.New(c)
	negative.Handle(testkit.Name("neg"), "", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil }, worker.WithTimeout(-time.Second))
	negErr := negative.Run(ctx)

	tool := testkit.Name("progress")
	progressErr := make(chan error, 1)
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Reports a progress that is not finite.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			progressErr <- worker.Progress(ctx, math.NaN(), 1, "", nil)
			return nil, nil
		})
	})
	if _, err := c.Submit(ctx, testkit.Name("s"), tool, nil); err != nil {
		t.Fatal(err)
	}
	var nan error
	select {
	case nan = <-progressErr:
	case <-ctx.Done():
		t.Fatal("the tool did not run")
	}
	for _, tc := range []struct {
		what string
		err  error
		want codes.Code
	}{
		{"Run without tools", noTools, codes.FailedPrecondition},
		{"Run with WithTimeout(-1s)", negErr, codes.InvalidArgument},
		{"Run while Run runs", w.Run(ctx), codes.FailedPrecondition},
		{"WaitRegistered(a tool not handled)", w.WaitRegistered(ctx, "nope"), codes.InvalidArgument},
		{"Progress outside a handler", worker.Progress(ctx, 1, 2, "", nil), codes.InvalidArgument},
		{"Progress(NaN)", nan, codes.InvalidArgument},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		testkit.CheckCode(t, tc.what, tc.err, tc.want)
	}
}
