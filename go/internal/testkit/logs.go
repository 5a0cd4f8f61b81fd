package testkit

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// Logs is a slog.Handler that keeps every record for the test to await
// (Await): what the SDK logs at every level, in order.
type Logs struct{ ch chan slog.Record }

// NewLogs returns an empty Logs.
func NewLogs() *Logs { return &Logs{ch: make(chan slog.Record, 4096)} }

// Logger is a logger that writes to l.
func (l *Logs) Logger() *slog.Logger { return slog.New(l) }

func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	select {
	case l.ch <- r.Clone():
	default: // a test that logs this much awaits nothing more
	}
	return nil
}

func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *Logs) WithGroup(string) slog.Handler      { return l }

// Await returns the next record with this level and message, failing t after
// Timeout; the records before it are dropped.
func (l *Logs) Await(t testing.TB, level slog.Level, msg string) slog.Record {
	t.Helper()
	timeout := time.After(Timeout)
	for {
		select {
		case r := <-l.ch:
			if r.Level == level && r.Message == msg {
				return r
			}
		case <-timeout:
			t.Fatalf("no %v record %q logged within %v", level, msg, Timeout)
		}
	}
}

// Attr is the value of r's attribute key, failing t when r has none.
func Attr(t testing.TB, r slog.Record, key string) slog.Value {
	t.Helper()
	var v slog.Value
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	if !found {
		t.Fatalf("the record %q has no attribute %q", r.Message, key)
	}
	return v
}
