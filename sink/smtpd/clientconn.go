package smtpd

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// clientConn is one device's connection as the server's lifecycle sees it.
// It bounds the whole DATA transfer, counts error replies and hangs up
// past the cap, ends the session once it is idle when the server drains,
// and gives the listener its slot back on Close. It sits right on the
// socket: below the line shim and below implicit TLS.
type clientConn struct {
	net.Conn
	maxErrors int    // error replies allowed before hanging up; 0: no limit
	onClose   func() // the listener's bookkeeping, run once
	onTLS     func() // told when the session turns to TLS; may be nil

	mu        sync.Mutex
	sealed    bool // replies are TLS records from now on: not read any more
	busy      bool // inside a mail transaction
	draining  bool // the server drains: end the session when idle
	hangUp    bool // close the connection once the next reply is written
	errors    int
	closeOnce sync.Once
}

var _ encrypter = (*clientConn)(nil)

// Write passes a reply on. Error replies (4xx, 5xx; go-smtp writes one
// reply per call) are counted; over the cap the client is told why and the
// line is cut.
func (c *clientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	out := p
	if !c.sealed && c.maxErrors > 0 && len(p) >= 4 && (p[0] == '4' || p[0] == '5') && !bytes.HasPrefix(p, []byte("421")) {
		c.errors++
		if c.errors >= c.maxErrors && !c.hangUp {
			c.hangUp = true
			out = append(append([]byte(nil), p...), "421 4.7.0 Too many errors, closing connection\r\n"...)
		}
	}
	hangUp := c.hangUp
	c.mu.Unlock()
	n, err := c.Conn.Write(out)
	if hangUp {
		_ = c.Conn.Close() // go-smtp's next read fails and ends the session
	}
	return min(n, len(p)), err
}

// encrypted: from now on the stream is TLS (STARTTLS, or an implicit-TLS
// listener from the first byte); replies can no longer be counted.
func (c *clientConn) encrypted() {
	c.mu.Lock()
	c.sealed = true
	c.mu.Unlock()
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

// hangUpAfterReply closes the connection right after the next reply: for a
// client the server refuses to talk to any longer.
func (c *clientConn) hangUpAfterReply() {
	c.mu.Lock()
	c.hangUp = true
	c.mu.Unlock()
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
