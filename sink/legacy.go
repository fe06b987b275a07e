package sink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// legacyConn is the thin layer between a device's TCP socket and go-smtp.
//
// Why it exists: go-smtp is strict where old devices are sloppy. It answers
// 501 to a HELO/EHLO without a name, and its DATA reader only ends a message
// on CRLF.CRLF, so a device that writes bare LF line endings (many embedded
// stacks do, ending with "\n.\n") hangs until the timeout and its alert is
// lost. RFC 5321 forbids bare LF because a relay that reads line endings
// differently from the next hop can be tricked into smuggling a second
// message. edgesink is the last hop and relays nothing, so accepting bare LF
// here is safe; Config.StrictLineEndings turns it off.
//
// What it does, on the client-to-server byte stream only:
//   - every LF not preceded by CR becomes CRLF (unless strict);
//   - "HELO" / "EHLO" with an empty name is rewritten to carry the client's
//     address literal, and the emptiness is remembered for the alert;
//   - the chunk after "BDAT n" is passed through untouched (it is binary and
//     counted in bytes), exactly when go-smtp will consume it;
//   - after the server's 220 reply to STARTTLS everything passes through
//     untouched (the stream is TLS from then on).
//
// It follows the server's replies to know when DATA starts (354), and the
// CRLF.CRLF line to know when it ends, so message lines that happen to read
// like commands are never rewritten.
type legacyConn struct {
	net.Conn
	translateLF bool
	dataTimeout time.Duration
	onClose     func()

	mu              sync.Mutex
	mode            connMode
	pendingStartTLS bool
	emptyHelo       bool
	busy            bool // inside a mail transaction: MAIL seen, not yet answered
	draining        bool // server is shutting down: end the session when idle
	hangUp          bool // close the connection once the next reply is written
	maxErrors       int  // error replies allowed before hanging up; 0: no limit
	errors          int
	closeOnce       sync.Once

	// Read side; go-smtp reads from a single goroutine, mu guards the mode
	// switches shared with Write.
	in        []byte
	out       []byte
	outPos    int
	line      []byte
	lineSkip  bool // current command line is too long to inspect
	prevCR    bool
	dataState dataState
	bdatLeft  uint64
	readErr   error
}

type connMode int

const (
	modeCommand connMode = iota
	modeData
	modeBDAT
	modeRaw
)

type dataState int

const (
	dataBeginLine dataState = iota
	dataDot
	dataDotCR
	dataCR
	dataMid
)

// maxInspectLine bounds how much of a command line is held back for
// inspection; longer lines are passed on as they come (go-smtp rejects
// over-long lines itself).
const maxInspectLine = 1024

func newLegacyConn(c net.Conn, translateLF bool, dataTimeout time.Duration) *legacyConn {
	return &legacyConn{
		Conn:        c,
		translateLF: translateLF,
		dataTimeout: dataTimeout,
		in:          make([]byte, 4096),
	}
}

// Read returns the client's bytes after translation.
func (c *legacyConn) Read(p []byte) (int, error) {
	for c.outPos >= len(c.out) {
		c.out, c.outPos = c.out[:0], 0
		if c.readErr != nil {
			return 0, c.readErr
		}
		c.mu.Lock()
		raw := c.mode == modeRaw && len(c.line) == 0
		c.mu.Unlock()
		if raw {
			return c.Conn.Read(p)
		}
		n, err := c.Conn.Read(c.in)
		c.mu.Lock()
		c.feed(c.in[:n])
		if err != nil {
			c.readErr = err
			if errors.Is(err, io.EOF) {
				// The client's last words, without a line end. A timeout
				// keeps a fragment back: it is no command.
				c.flushLine()
			}
		}
		c.mu.Unlock()
	}
	n := copy(p, c.out[c.outPos:])
	c.outPos += n
	return n, nil
}

// feed translates b and appends the result to c.out. Called with c.mu held.
func (c *legacyConn) feed(b []byte) {
	for i := 0; i < len(b); i++ {
		switch c.mode {
		case modeRaw:
			c.flushLine()
			c.out = append(c.out, b[i:]...)
			return
		case modeBDAT:
			k := uint64(len(b) - i)
			if k > c.bdatLeft {
				k = c.bdatLeft
			}
			c.out = append(c.out, b[i:i+int(k)]...)
			i += int(k) - 1
			c.bdatLeft -= k
			if c.bdatLeft == 0 {
				c.mode = modeCommand
			}
			c.prevCR = false
			continue
		}
		ch := b[i]
		if ch == '\n' && !c.prevCR && c.translateLF {
			c.put('\r')
		}
		c.put(ch)
		c.prevCR = ch == '\r'
	}
}

// put emits one byte in command or data mode.
func (c *legacyConn) put(ch byte) {
	if c.mode == modeData {
		c.out = append(c.out, ch)
		c.trackData(ch)
		return
	}
	if c.lineSkip {
		c.out = append(c.out, ch)
		if ch == '\n' {
			c.lineSkip = false
		}
		return
	}
	c.line = append(c.line, ch)
	if ch == '\n' {
		c.out = append(c.out, c.commandLine(c.line)...)
		c.line = c.line[:0]
		return
	}
	if len(c.line) > maxInspectLine {
		c.flushLine()
		c.lineSkip = true
	}
}

func (c *legacyConn) flushLine() {
	c.out = append(c.out, c.line...)
	c.line = c.line[:0]
}

// trackData follows the same state machine as go-smtp's DATA reader to see
// the CRLF.CRLF end of the message.
func (c *legacyConn) trackData(ch byte) {
	switch c.dataState {
	case dataBeginLine:
		switch ch {
		case '.':
			c.dataState = dataDot
		case '\r':
			c.dataState = dataCR
		default:
			c.dataState = dataMid
		}
	case dataDot:
		if ch == '\r' {
			c.dataState = dataDotCR
		} else {
			c.dataState = dataMid
		}
	case dataDotCR:
		if ch == '\n' {
			c.mode = modeCommand
			c.dataState = dataBeginLine
		} else {
			c.dataState = dataMid
		}
	case dataCR:
		if ch == '\n' {
			c.dataState = dataBeginLine
		} else if ch != '\r' {
			c.dataState = dataMid
		}
	case dataMid:
		if ch == '\r' {
			c.dataState = dataCR
		}
	}
}

// commandLine inspects one complete command line and returns what go-smtp
// should see instead.
func (c *legacyConn) commandLine(line []byte) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(text, " ")
	switch strings.ToUpper(verb) {
	case "HELO", "EHLO":
		c.emptyHelo = strings.TrimSpace(arg) == ""
		if c.emptyHelo {
			return []byte(verb + " " + addressLiteral(c.Conn.RemoteAddr()) + "\r\n")
		}
	case "MAIL":
		c.busy = true
	case "BDAT":
		// Mirror go-smtp's handleBdat: the chunk follows whenever the size
		// argument parses, even if the command itself is then refused.
		args := strings.Fields(arg)
		if len(args) == 0 || len(args) > 2 || (len(args) == 2 && !strings.EqualFold(args[1], "LAST")) {
			break
		}
		if size, err := strconv.ParseUint(args[0], 10, 32); err == nil && size > 0 {
			c.mode, c.bdatLeft = modeBDAT, size
		}
	case "STARTTLS":
		c.pendingStartTLS = true
	}
	return line
}

// Write passes the server's replies on and watches them for the two that
// change how the client's bytes must be read.
func (c *legacyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.pendingStartTLS:
		c.pendingStartTLS = false
		if bytes.HasPrefix(p, []byte("220")) {
			c.mode = modeRaw
		}
	case c.mode == modeCommand && bytes.HasPrefix(p, []byte("354")):
		c.mode, c.dataState = modeData, dataBeginLine
		if c.dataTimeout > 0 {
			// go-smtp sets a read deadline per command line only; this bounds
			// the whole message transfer instead.
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.dataTimeout))
		}
	}
	// Count error replies (4xx, 5xx; a reply is one write, go-smtp flushes
	// each). Over the limit, the client is told why and the line is cut.
	out := p
	if c.mode != modeRaw && c.maxErrors > 0 && len(p) >= 4 && (p[0] == '4' || p[0] == '5') && !bytes.HasPrefix(p, []byte("421")) {
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

// setRaw passes bytes through untouched from now on.
func (c *legacyConn) setRaw() {
	c.mu.Lock()
	c.mode = modeRaw
	c.mu.Unlock()
}

// hangUpAfterReply closes the connection right after the next reply: for a
// client the server refuses to talk to any longer.
func (c *legacyConn) hangUpAfterReply() {
	c.mu.Lock()
	c.hangUp = true
	c.mu.Unlock()
}

// SetReadDeadline keeps an idle session of a draining server ending at once:
// go-smtp renews the deadline before every command.
func (c *legacyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.draining && !c.busy {
		t = time.Unix(1, 0)
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline routes the read half through SetReadDeadline.
func (c *legacyConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// transactionDone marks the end of a mail transaction; a draining server
// then ends the session (go-smtp answers 421 on the expired deadline).
func (c *legacyConn) transactionDone() {
	c.mu.Lock()
	c.busy = false
	drain := c.draining
	c.mu.Unlock()
	if drain {
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// drain asks the session to end as soon as it is idle.
func (c *legacyConn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := !c.busy
	c.mu.Unlock()
	if idle {
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *legacyConn) heloWasEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.emptyHelo
}

// Close closes the socket once and tells the listener the slot is free.
func (c *legacyConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// addressLiteral formats a peer address as an RFC 5321 address literal.
func addressLiteral(a net.Addr) string {
	host := a.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		return "[IPv6:" + host + "]"
	}
	return "[" + host + "]"
}
