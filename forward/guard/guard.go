// Package guard is what edgesink's listeners on the LAN (the embedded
// broker, the status page) share to decide how far to trust a client:
// whether an address can be reached from this machine only, and the table
// of failed logins that makes each further attempt from one address wait
// longer.
package guard

import (
	"context"
	"net"
	"sync"
	"time"
)

// Loopback tells whether addr (host:port) can only be reached from this
// machine.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Memory is how long a failed login is held against its address.
const Memory = 15 * time.Minute

// Failures counts failed logins per client address (without its port). An
// address is forgotten Memory after its last failure, or by Forget at its
// next successful login; past max addresses the table starts afresh, so a
// flood of addresses cannot grow it. Safe for concurrent use.
type Failures struct {
	max int

	mu sync.Mutex
	by map[string]failure
}

type failure struct {
	n    int
	last time.Time
}

// NewFailures returns a table of at most max addresses.
func NewFailures(max int) *Failures {
	return &Failures{max: max, by: map[string]failure{}}
}

// Fail counts a failure from addr and returns how many there were from it
// within Memory of each other, this one included.
func (f *Failures) Fail(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	x := f.by[addr]
	if now.Sub(x.last) > Memory {
		x.n = 0
	}
	if len(f.by) >= f.max {
		clear(f.by)
	}
	x.n++
	x.last = now
	f.by[addr] = x
	return x.n
}

// Forget clears addr's failures (it logged in).
func (f *Failures) Forget(addr string) {
	f.mu.Lock()
	delete(f.by, addr)
	f.mu.Unlock()
}

// Delay is how long to wait before answering the nth failure in a row:
// n times step, at most ceiling.
func Delay(n int, step, ceiling time.Duration) time.Duration {
	return min(time.Duration(n)*step, ceiling)
}

// Sleep waits d before a failed login is answered, or until ctx is done
// (a server closing does not wait for the guessers it keeps waiting).
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
