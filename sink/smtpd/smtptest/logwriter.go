package smtptest

import (
	"io"
	"strings"
	"sync"
	"testing"
)

// LogWriter returns a writer for a slog handler that sends lines to t.Log
// until the test ends. Library goroutines that outlive the test (connection
// handlers, mochi's per-client goroutines) may log after Close returns;
// their lines are dropped rather than crash the test binary.
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return w
}

type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
