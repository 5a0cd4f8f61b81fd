// Command worker serves two example tools to an errand server until
// interrupted:
//
//	go run ./examples/worker -addr 127.0.0.1:7466
//
// The tools: sleep waits `seconds` (honouring cancellation), reporting its
// progress every second, and says how long it slept; word_count counts the
// words of `text`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/worker"
)

func main() {
	addr := flag.String("addr", "", "errand server address (default $ERRAND_SERVER, else 127.0.0.1:7466); "+
		"ERRAND_TOKEN and ERRAND_TLS_CA/CERT/KEY are read as the errand CLI reads them")
	concurrency := flag.Int("concurrency", 4, "tasks run at once")
	flag.Parse()
	if err := run(*addr, *concurrency); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(addr string, concurrency int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := errand.Dial(dialCtx, addr, errand.WithEnv(), errand.WithLogger(logger))
	if err != nil {
		return err
	}
	defer c.Close()

	w := worker.New(c, worker.WithName("go-example"), worker.WithConcurrency(concurrency), worker.WithLogger(logger))
	w.Handle("sleep", "Sleeps for a number of seconds, then says how long it slept.",
		`{"type":"object","properties":{"seconds":{"type":"number","minimum":0}},"required":["seconds"]}`,
		sleep, worker.WithTimeout(5*time.Minute))
	w.Handle("word_count", "Counts the words of a text.",
		`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`,
		wordCount)
	logger.Info("serving", "addr", addr, "tools", []string{"sleep", "word_count"})
	return w.Run(ctx)
}

func sleep(ctx context.Context, args json.RawMessage) (any, error) {
	var in struct {
		Seconds float64 `json:"seconds"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, err
	}
	start := time.Now()
	done := time.After(time.Duration(in.Seconds * float64(time.Second)))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return map[string]float64{"slept_seconds": time.Since(start).Seconds()}, nil
		case <-tick.C:
			// Agents following the session with progress see it; a failure to
			// report is no reason to stop sleeping.
			slept := time.Since(start).Seconds()
			_ = worker.Progress(ctx, slept, in.Seconds, fmt.Sprintf("slept %.0f of %g s", slept, in.Seconds), nil)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func wordCount(_ context.Context, args json.RawMessage) (any, error) {
	var in struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, err
	}
	return map[string]int{"words": len(strings.Fields(in.Text))}, nil
}
