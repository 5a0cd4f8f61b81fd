package errand_test

// These examples are the README's "What the model sees" snippets; go vet and
// go test compile them, so the README stays true.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/worker"
)

// model stands for the agent's LLM call: it takes the turn's messages and
// returns the tool calls it wants.
func model(ctx context.Context, messages []string) []string { return nil }

// An agent loop obeying each completion's delivery policy.
func ExampleClient_NewInbox() {
	ctx := context.Background()
	c, err := errand.Dial(ctx, "127.0.0.1:7466")
	if err != nil {
		return
	}
	defer c.Close()
	in := c.NewInbox(ctx, "session-1", errand.WithProgressFunc(func(p *errand.Progress) {
		fmt.Printf("[%s] %s %.0f/%.0f\n", p.Tool, p.Message, p.Progress, p.Total) // status line, not a turn
	}))
	defer in.Close()

	userMessages := make(chan string)
	for {
		var turn []string
		select {
		case u := <-userMessages: // SILENT results lead the next user message
			for _, comp := range in.Silent() {
				turn = append(turn, comp.Message)
			}
			turn = append(turn, u)
		case comp, ok := <-in.Interrupts(): // INTERRUPT: at once (or cut the running turn short)
			if !ok {
				return
			}
			turn = append(turn, comp.Message)
		case <-in.Notify(): // WHEN_IDLE results wake an idle agent (taken below)
		case <-in.Done():
			return
		}
		for _, comp := range in.Ready() { // WHEN_IDLE results waiting for this turn
			turn = append(turn, comp.Message)
		}
		if len(turn) == 0 {
			continue // a wake-up whose completion an interrupt took
		}
		if d, err := in.Digest(ctx); err == nil && d.Text != "" {
			turn = append([]string{d.Text}, turn...) // what is still running, verbatim
		}
		for _, call := range model(ctx, turn) {
			ack, err := c.Submit(ctx, "session-1", call, nil,
				errand.WithDelivery(errand.DeliveryWhenIdle), errand.WithDedup(errand.DedupJoinInFlight),
				errand.WithResultBudget(8<<10), errand.WithFallbackLastGood(10*time.Minute))
			if err == nil {
				fmt.Println(ack.Text, ack.Joined) // the model's tool result for now
			}
		}
		in.Ack(ctx) // the turn used them: the server may drop them
	}
}

// A truncated result, read in full when the model asks for it.
func ExampleClient_CompletionResult() {
	ctx := context.Background()
	c, err := errand.Dial(ctx, "127.0.0.1:7466")
	if err != nil {
		return
	}
	defer c.Close()
	for comp, err := range c.Completions(ctx, "session-1", 0) {
		if err != nil {
			return
		}
		if comp.ResultTruncated {
			fmt.Println(comp.Message)       // says the full size and how to fetch it
			fmt.Println(comp.ResultPreview) // the worker's summary, or head and tail
			full, err := c.CompletionResult(ctx, comp)
			fmt.Println(len(full), comp.ResultBytes, err)
		}
	}
}

// A long tool that reports progress and resumes where a lost worker stopped.
func Example_resumableTool() {
	ctx := context.Background()
	c, err := errand.Dial(ctx, "127.0.0.1:7466")
	if err != nil {
		return
	}
	w := worker.New(c)
	w.Handle("crawl", "Crawls a site.", `{"type":"object"}`,
		func(ctx context.Context, args json.RawMessage) (any, error) {
			state := struct{ Page int }{}
			if d := worker.ResumeDetail(ctx); d != nil {
				json.Unmarshal(d, &state) // an earlier attempt got this far
			}
			var pages []string
			for ; state.Page < 100; state.Page++ {
				pages = append(pages, strings.Repeat("text ", 100))
				worker.Progress(ctx, float64(state.Page+1), 100, "crawling", state)
			}
			return worker.WithSummary(pages, "100 pages, 50 KB of text"), nil
		},
		worker.WithDelivery(errand.DeliveryInterrupt), worker.WithResultBudget(4096),
		worker.WithFallbackTool("crawl_cached"), worker.CancellableByModel())
	w.Run(ctx)
}
