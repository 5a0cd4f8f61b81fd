// Package errand is the Go client of errand, a gRPC service that gives AI
// agents asynchronous tools: an agent submits a tool call, gets a task ID and
// a text for its model at once, and receives the results later on one
// stream per session, in completion order, each keyed by its task ID.
//
//	c, err := errand.Dial(ctx, "127.0.0.1:7466")
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	ack, err := c.Submit(ctx, "session-1", "weather", map[string]string{"city": "Oslo"})
//	if err != nil {
//		return err // errors.Is(err, errand.ErrNotFound): no such tool
//	}
//	fmt.Println(ack.Text) // for the model: the result will come later
//	for comp, err := range c.Completions(ctx, "session-1", 0) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(comp.TaskID, comp.Status, string(comp.Result))
//	}
//
// A server with tokens and TLS (see "Running in production" in the
// repository's README) takes WithBearerToken and WithTLSFiles (or WithTLS),
// or WithEnv to read ERRAND_TOKEN and ERRAND_TLS_* as the errand CLI does:
//
//	c, err := errand.Dial(ctx, "localhost:7466",
//		errand.WithBearerToken(token), errand.WithTLSFiles("ca.pem", "", ""))
//
// Layout of the module:
//   - package errand (this one): Dial and the Client for agents, with
//     Submit, Completions, GetTask, Cancel, ListTools and AckCompletions;
//     what the model sees: delivery, dedup, budget and fallback options on
//     Submit, SessionEvents (progress), PendingDigest, ReadResult, and the
//     Inbox that sorts completions by delivery policy; the Error type and its
//     sentinels.
//   - package worker: serve tools written in Go (worker.New, Handle, Run,
//     WaitRegistered), with TaskFrom, Progress, ResumeDetail and WithSummary
//     inside a handler.
//   - package errandv1: the stubs generated from proto/errand/v1/errand.proto,
//     for calling the RPCs directly (Client.Conn gives the connection).
//   - examples/agent, examples/worker: runnable programs.
package errand
