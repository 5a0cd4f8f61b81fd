package errand_test

// Output fields of the proto that the Go types dropped: Task.worker_id and
// worker_name (who runs it), Tool.queued and running (its load).

import (
	"context"
	"encoding/json"
	"testing"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestTaskNamesItsWorkerAndToolCountsItsLoad(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("held")
	started, release := make(chan struct{}, 4), make(chan struct{})
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Waits to be released.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}, worker.WithConcurrency(1))
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ctx := testkit.Ctx(t)
	running, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the task did not start")
	}
	queued, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}

	ws, err := pb.NewToolServiceClient(c.Conn()).ListWorkers(ctx, &pb.ListWorkersRequest{Tool: tool})
	if err != nil || len(ws.GetWorkers()) != 1 {
		t.Fatalf("ListWorkers: %v, %v; want one worker", ws, err)
	}
	workerID := ws.GetWorkers()[0].GetWorkerId()
	task, err := c.GetTask(ctx, running.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != errand.StatusRunning || task.WorkerID != workerID || task.WorkerName != t.Name() {
		t.Errorf("running task: status %s, WorkerID %q, WorkerName %q; want running on %q named %q",
			task.Status, task.WorkerID, task.WorkerName, workerID, t.Name())
	}
	if task, err := c.GetTask(ctx, queued.TaskID); err != nil || task.WorkerID != "" || task.WorkerName != "" {
		t.Errorf("queued task: %+v, %v; want no worker", task, err)
	}
	tools, err := c.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range tools {
		if x.Name == tool {
			found = true
			if x.Workers != 1 || x.Running != 1 || x.Queued != 1 {
				t.Errorf("tool %s: workers %d, running %d, queued %d; want 1, 1, 1", tool, x.Workers, x.Running, x.Queued)
			}
		}
	}
	if !found {
		t.Fatalf("ListTools has no %s", tool)
	}
	close(release)
	stream.Next(t)
	stream.Next(t)
}
