// Package testserver starts the real errand server binary for tests, and a
// TCP proxy that can cut connections to it.
//
// The binary is $ERRAND_BIN, or <repo>/target/debug/errand when unset.
package testserver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout bounds how long a server may take to print its listening line.
const StartTimeout = 30 * time.Second

const listeningPrefix = "errand listening on "

// Bin is the server binary the tests run.
func Bin() string {
	if b := os.Getenv("ERRAND_BIN"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0) // <repo>/go/internal/testserver/testserver.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "target", "debug", "errand")
}

// Options of one server.
type Options struct {
	// DataDir selects the durable store in that folder; empty: --store memory.
	DataDir string
	// Listen is the address to bind; empty: 127.0.0.1:0 (a free port).
	Listen string
	// Args are more flags of `errand serve` (--tokens-file, --tls-cert, ...).
	Args []string
}

// Server is one running `errand serve`.
type Server struct {
	// Addr is host:port, as the server printed it.
	Addr string

	opts   Options
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncBuffer
}

// Start runs `errand serve` and returns once it printed its listening line.
func Start(opts Options) (*Server, error) {
	bin := Bin()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("errand server binary not found at %s (set ERRAND_BIN or run cargo build): %w", bin, err)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	args := []string{"serve", "--listen", opts.Listen}
	if opts.DataDir != "" {
		args = append(args, "--data-dir", opts.DataDir)
	} else {
		args = append(args, "--store", "memory")
	}
	args = append(args, opts.Args...)
	s := &Server{opts: opts, exited: make(chan struct{}), stderr: &syncBuffer{}}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = s.stderr
	s.cmd.Env = append(os.Environ(), "RUST_LOG="+envOr("RUST_LOG", "info"))
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), listeningPrefix); ok {
				select {
				case addr <- strings.TrimSpace(a):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case s.Addr = <-addr:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("%s %s exited before listening (%v); stderr:\n%s",
			bin, strings.Join(args, " "), s.cmd.ProcessState, s.stderr.Tail(4000))
	case <-timer.C:
		s.Kill()
		return nil, fmt.Errorf("%s did not print %q within %v; stderr:\n%s",
			bin, listeningPrefix+"ADDR", StartTimeout, s.stderr.Tail(4000))
	}
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Restart kills the server and starts it again on the same address with the
// same store. A port still held by the dying process is retried a few times.
func (s *Server) Restart() (*Server, error) {
	s.Kill()
	opts := s.opts
	opts.Listen = s.Addr
	var err error
	for i := 0; i < 20; i++ {
		var n *Server
		if n, err = Start(opts); err == nil {
			return n, nil
		}
		if !strings.Contains(strings.ToLower(err.Error()), "in use") {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond) // the kernel releasing the port, not test synchronisation
	}
	return nil, err
}

// Stderr returns the end of what the server logged, for failure messages.
func (s *Server) Stderr() string { return s.stderr.Tail(8000) }

// NewToken makes a token with `errand token new --role ROLE --tenant TENANT
// --append FILE [extra...]` and returns its secret (the first line of stdout).
func NewToken(file, role, tenant string, extra ...string) (string, error) {
	args := append([]string{"token", "new", "--role", role, "--tenant", tenant, "--append", file}, extra...)
	cmd := exec.Command(Bin(), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("errand %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	secret, _, _ := strings.Cut(string(out), "\n")
	secret = strings.TrimSpace(secret)
	if !strings.HasPrefix(secret, "ert_") {
		return "", fmt.Errorf("errand token new printed %q, want a token (ert_...) on the first line", out)
	}
	return secret, nil
}

// SupportsDataDir reports whether the binary knows `serve --data-dir`.
func SupportsDataDir() bool {
	out, _ := exec.Command(Bin(), "serve", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("--data-dir"))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep memory bounded on chatty servers
		tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-(256<<10):]...)
		b.buf.Reset()
		b.buf.Write(tail)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
