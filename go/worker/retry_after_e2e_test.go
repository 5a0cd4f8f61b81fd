package worker_test

// Against a server with tokens and --requests-per-second-per-tenant: past
// its tenant's rate, a worker's Connect is refused RESOURCE_EXHAUSTED with
// retry-after-ms. Run waits as long as the server asks, not its own backoff
// (far shorter here), says the wait in its WARN ("in"), and registers then.

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestE2EAWorkerWaitsAsLongAsTheServerAsks(t *testing.T) {
	const shortBackoff = 10 * time.Millisecond
	r := testkit.StartRated(t)
	agent := testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Agent))
	c := testkit.Dial(t, r.Addr, errand.WithBearerToken(r.Worker))
	logs := testkit.NewLogs()
	testkit.Spend(t, agent)
	testkit.StartWorker(t, c, func(w *worker.Worker) { // returns once registered
		w.Handle(testkit.Name("echo"), "Echo.", nil, func(_ context.Context, args json.RawMessage) (any, error) {
			return args, nil
		})
	}, worker.WithReconnectBackoff(shortBackoff/2, shortBackoff), worker.WithLogger(logs.Logger()))
	testkit.WaitedAsAsked(t, shortBackoff, logs.Await(t, slog.LevelWarn, "errand worker: stream broke; reconnecting"))
}
