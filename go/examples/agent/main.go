// Command agent submits tool calls to an errand server and prints their
// results as they arrive, out of order, the way an agent loop would feed them
// to its model:
//
//	go run ./examples/worker &          # serves sleep and word_count
//	go run ./examples/agent -addr 127.0.0.1:7466
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	errand "github.com/errand-dev/errand/go"
)

func main() {
	addr := flag.String("addr", "", "errand server address (default $ERRAND_SERVER, else 127.0.0.1:7466); "+
		"ERRAND_TOKEN and ERRAND_TLS_CA/CERT/KEY are read as the errand CLI reads them")
	session := flag.String("session", fmt.Sprintf("go-agent-%d", time.Now().UnixNano()), "session ID")
	flag.Parse()
	if err := run(*addr, *session); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(addr, session string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	c, err := errand.Dial(ctx, addr, errand.WithEnv())
	if err != nil {
		return err
	}
	defer c.Close()

	tools, err := c.ListTools(ctx)
	if err != nil {
		return err
	}
	for _, t := range tools {
		summary, _, _ := strings.Cut(t.Description, "\n") // the rest is the server's async notice
		fmt.Printf("tool %s (%d workers): %s\n", t.Name, t.Workers, summary)
	}

	// The slow call goes first, yet its result arrives last.
	calls := []struct {
		tool string
		args any
	}{
		{"sleep", map[string]float64{"seconds": 2.5}},
		{"word_count", map[string]string{"text": "results arrive out of order, keyed by task ID"}},
	}
	pending := map[string]bool{}
	for _, call := range calls {
		ack, err := c.Submit(ctx, session, call.tool, call.args)
		if errors.Is(err, errand.ErrNotFound) {
			return fmt.Errorf("%w (is examples/worker running?)", err)
		}
		if err != nil {
			return err
		}
		pending[ack.TaskID] = true
		fmt.Printf("submitted %s -> %s\n  model sees: %s\n", call.tool, ack.TaskID, ack.Text)
	}

	// One stream for the session, with the running calls' progress; it
	// reconnects and resumes by itself.
	for ev, err := range c.SessionEvents(ctx, session, 0, errand.WithProgress()) {
		if err != nil {
			return err
		}
		if p := ev.Progress; p != nil {
			fmt.Printf("progress of %s (%s): %s\n", p.TaskID, p.Tool, p.Message) // a status line, not a turn
			continue
		}
		comp := ev.Completion
		fmt.Printf("completion #%d %s %s after %v: %s\n", comp.Seq, comp.Tool, comp.Status, comp.Elapsed, comp.Result)
		fmt.Printf("  model sees: %s\n", comp.Message)
		delete(pending, comp.TaskID)
		if len(pending) == 0 {
			_, err := c.AckCompletions(ctx, session, comp.Seq)
			return err
		}
	}
	return nil
}
