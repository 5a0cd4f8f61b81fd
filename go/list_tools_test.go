package errand_test

// ListTools follows the server's pages to the last tool.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
)

// The server pages ListTools by bytes (a response holds what fits in its
// --max-message-bytes): 60 tools of ~4 KB under a 128 KiB limit take two
// pages. Before the fix ListTools returned the first page only (30 tools).
func TestListToolsFollowsPagesToTheLastTool(t *testing.T) {
	srv, err := testserver.Start(testserver.Options{Args: []string{
		"--max-message-bytes", "131072", "--max-result-bytes", "16384", "--max-arguments-bytes", "4096",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	c := testkit.Dial(t, srv.Addr)
	var want []string
	// Two workers of 30 tools each: one Register must fit in one message.
	for w := range 2 {
		testkit.StartWorker(t, c, func(wk *worker.Worker) {
			for i := w * 30; i < (w+1)*30; i++ {
				name := fmt.Sprintf("tool%02d", i)
				want = append(want, name)
				wk.Handle(name, strings.Repeat("d", 4000), nil, echo)
			}
		})
	}
	ctx := testkit.Ctx(t)
	first, err := pb.NewToolServiceClient(c.Conn()).ListTools(ctx, &pb.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetTools()) >= 60 || first.GetNextPageToken() == "" {
		t.Fatalf("the server's first page holds %d tools (next token %q): the test needs more than one page",
			len(first.GetTools()), first.GetNextPageToken())
	}
	tools, err := c.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tl := range tools {
		got = append(got, tl.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListTools returned %d tools %v, want the %d tools %v", len(got), got, len(want), want)
	}
}

// pagedTools serves ListTools from pages keyed by the request's page token.
type pagedTools struct {
	pb.UnimplementedToolServiceServer
	pages map[string]*pb.ListToolsResponse

	mu   sync.Mutex
	reqs []*pb.ListToolsRequest
}

func (p *pagedTools) ListTools(_ context.Context, r *pb.ListToolsRequest) (*pb.ListToolsResponse, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, r)
	p.mu.Unlock()
	return p.pages[r.GetPageToken()], nil
}

func page(next string, names ...string) *pb.ListToolsResponse {
	r := &pb.ListToolsResponse{NextPageToken: next}
	for _, n := range names {
		r.Tools = append(r.Tools, &pb.Tool{Name: n, Workers: 1})
	}
	return r
}

// Tokens are opaque: ListTools passes each one back as the server gave it,
// and stops at the page without one.
func TestListToolsFollowsOpaqueTokens(t *testing.T) {
	f := &pagedTools{pages: map[string]*pb.ListToolsResponse{
		"":        page("b64:xyz", "a", "b"),
		"b64:xyz": page("?=&", "c"),
		"?=&":     page("", "d", "e"),
	}}
	c := testkit.Dial(t, fakeserver.Start(t, f, nil))
	tools, err := c.ListTools(testkit.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tl := range tools {
		got = append(got, tl.Name)
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("ListTools = %v, want %v", got, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var tokens []string
	for _, r := range f.reqs {
		tokens = append(tokens, r.GetPageToken())
		if r.GetPageSize() != 0 || r.GetOnlyServed() {
			t.Errorf("request %v: want no page size and every tool", r)
		}
	}
	if want := []string{"", "b64:xyz", "?=&"}; !slices.Equal(tokens, want) {
		t.Errorf("page tokens sent = %q, want %q", tokens, want)
	}
}

// A server that gives the same token twice would make ListTools loop for
// ever: it fails with ErrInternal naming the token instead.
func TestListToolsStopsAtARepeatedToken(t *testing.T) {
	for name, pages := range map[string]map[string]*pb.ListToolsResponse{
		"the same page": {"": page("t1", "a"), "t1": page("t1", "b")},
		"a cycle":       {"": page("t1", "a"), "t1": page("t2", "b"), "t2": page("t1", "c")},
	} {
		t.Run(name, func(t *testing.T) {
			f := &pagedTools{pages: pages}
			c := testkit.Dial(t, fakeserver.Start(t, f, nil))
			tools, err := c.ListTools(testkit.Ctx(t))
			if !errors.Is(err, errand.ErrInternal) || !strings.Contains(err.Error(), `"t1"`) || tools != nil {
				t.Errorf("ListTools = %d tools, %v; want nil and ErrInternal naming the token \"t1\"", len(tools), err)
			}
		})
	}
}
