// Package fakeserver runs an in-process gRPC server on a loopback port for
// unit tests: each test registers its own implementations of the errandv1
// services (embedding the Unimplemented ones), so the SDK can be tested
// against server behaviour the real binary does not have yet, or cannot be
// made to produce on demand (a broken page, a stream cut mid-replay).
package fakeserver

import (
	"net"
	"testing"

	pb "github.com/errand-dev/errand/go/errandv1"
	"google.golang.org/grpc"
)

// Start serves tools (nil: none) and workers (nil: none) until the test ends
// and returns the address to dial.
func Start(t testing.TB, tools pb.ToolServiceServer, workers pb.WorkerServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fakeserver: listen: %v", err)
	}
	s := grpc.NewServer()
	if tools != nil {
		pb.RegisterToolServiceServer(s, tools)
	}
	if workers != nil {
		pb.RegisterWorkerServiceServer(s, workers)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}
