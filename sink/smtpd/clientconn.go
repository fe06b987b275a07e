package smtpd

import (
	"net"
	"sync"
	"time"
)

// clientConn is one device's connection as the server's lifecycle sees it.
// It bounds the whole DATA transfer, ends the session once it is idle when
// the server drains, and gives the listener its slot back on Close. It sits
// right on the socket, below TLS and the line shim (which counts error
// replies, as only above TLS can they be read).
type clientConn struct {
	net.Conn
	onClose func() // the listener's bookkeeping, run once
	onTLS   func() // told when the session turns to TLS; may be nil

	mu        sync.Mutex
	busy      bool // inside a mail transaction
	draining  bool // the server drains: end the session when idle
	closeOnce sync.Once
}

// tlsNotifier is told when a session turns to TLS (the metrics count
// handshakes); clientConn implements it for the line shim.
type tlsNotifier interface{ tlsStarted() }

// tlsStarted reports a completed STARTTLS, or an implicit-TLS session.
func (c *clientConn) tlsStarted() {
	if c.onTLS != nil {
		c.onTLS()
	}
}

// startData bounds the whole message transfer that begins now: go-smtp
// renews the read deadline per command line only.
func (c *clientConn) startData(timeout time.Duration) {
	if timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	}
}

// beginTransaction marks a mail transaction open (MAIL accepted): a
// draining server lets it finish.
func (c *clientConn) beginTransaction() {
	c.mu.Lock()
	c.busy = true
	c.mu.Unlock()
}

// transactionDone marks the end of a mail transaction; a draining server
// then ends the session (go-smtp answers 421 on the expired deadline).
func (c *clientConn) transactionDone() {
	c.mu.Lock()
	c.busy = false
	drain := c.draining
	c.mu.Unlock()
	if drain {
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// drain asks the session to end as soon as it is idle.
func (c *clientConn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := !c.busy
	c.mu.Unlock()
	if idle {
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// SetReadDeadline keeps an idle session of a draining server ending at
// once: go-smtp renews the deadline before every command.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.draining && !c.busy {
		t = time.Unix(1, 0)
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline routes the read half through SetReadDeadline.
func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the socket once and tells the listener the slot is free.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// unwrap finds the connection of type T below c (through the line shim and
// TLS), or nil.
func unwrap[T net.Conn](c net.Conn) (T, bool) {
	for c != nil {
		if t, ok := c.(T); ok {
			return t, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	var zero T
	return zero, false
}
