package worker_test

// A tool's duration options: a negative duration is the caller's error,
// reported by Run (and so by WaitRegistered) before anything is sent.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

// Before the fix, WithTimeout(-1s) registered timeout_ms
// 18446744073709550617 (-999 as a uint64), WithQueueTimeout sent 0
// (the server's default) and WithFallbackLastGood 0.
func TestNegativeToolDurationsFailRun(t *testing.T) {
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		opt  worker.ToolOption
	}{
		{"worker.WithTimeout(-1s)", worker.WithTimeout(-time.Second)},
		{"worker.WithQueueTimeout(-1ms)", worker.WithQueueTimeout(-time.Millisecond)},
		{"worker.WithFallbackLastGood(-1ns)", worker.WithFallbackLastGood(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16)}
			c := testkit.Dial(t, fakeserver.Start(t, nil, f))
			w := worker.New(c)
			w.Handle("fine", "Fine.", nil, noop, worker.WithTimeout(time.Second))
			w.Handle("broken", "Broken.", nil, noop, tc.opt)
			ran := make(chan error, 1)
			go func() { ran <- w.Run(testkit.Ctx(t)) }()
			var err error
			select {
			case err = <-ran:
			case m := <-f.got:
				t.Fatalf("the worker registered %v, want Run to fail before sending anything", m)
			case <-time.After(testkit.Timeout):
				t.Fatal("Run neither returned nor registered")
			}
			if !errors.Is(err, errand.ErrInvalidArgument) || err == nil ||
				!strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), `"broken"`) {
				t.Errorf("Run = %v, want ErrInvalidArgument naming the tool \"broken\" and %s", err, tc.name)
			}
			if werr := w.WaitRegistered(testkit.Ctx(t)); werr != err {
				t.Errorf("WaitRegistered = %v, want Run's error %v", werr, err)
			}
		})
	}
}

// Zero still means the server's default, and the longest duration rounds up
// without overflowing.
func TestToolDurationsOnTheWire(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle("zero", "", nil, noop, worker.WithTimeout(0), worker.WithQueueTimeout(0))
		w.Handle("longest", "", nil, noop, worker.WithTimeout(math.MaxInt64), worker.WithQueueTimeout(math.MaxInt64),
			worker.WithFallbackLastGood(math.MaxInt64))
		w.Handle("rounded", "", nil, noop, worker.WithTimeout(1500*time.Microsecond), worker.WithFallbackLastGood(time.Nanosecond))
	})
	maxMs := uint64(math.MaxInt64/int64(time.Millisecond)) + 1
	want := map[string][3]uint64{"zero": {0, 0, 0}, "longest": {maxMs, maxMs, maxMs}, "rounded": {2, 0, 1}}
	reg := f.next(t).GetRegister()
	if len(reg.GetTools()) != len(want) {
		t.Fatalf("registered %v, want %d tools", reg, len(want))
	}
	for _, tool := range reg.GetTools() {
		got := [3]uint64{tool.GetTimeoutMs(), tool.GetQueueTimeoutMs(), tool.GetFallback().GetLastGoodMaxAgeMs()}
		if got != want[tool.GetName()] {
			t.Errorf("tool %s: timeout, queue timeout, last-good max age = %v ms, want %v", tool.GetName(), got, want[tool.GetName()])
		}
	}
}
