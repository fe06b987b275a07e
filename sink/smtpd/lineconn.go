package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// lineConn is the line shim between a device's connection and go-smtp: it
// does line endings, empty HELO names and BDAT passthrough, nothing else.
// (The session's lifecycle, deadlines, error cap and slot, is clientConn's,
// below it.)
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
type lineConn struct {
	net.Conn
	translateLF bool

	mu              sync.Mutex
	mode            connMode
	pendingStartTLS bool
	emptyHelo       bool

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

func newLineConn(c net.Conn, translateLF bool) *lineConn {
	return &lineConn{Conn: c, translateLF: translateLF, in: make([]byte, 4096)}
}

// NetConn returns the connection below the shim.
func (c *lineConn) NetConn() net.Conn { return c.Conn }

// Read returns the client's bytes after translation.
func (c *lineConn) Read(p []byte) (int, error) {
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
func (c *lineConn) feed(b []byte) {
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
func (c *lineConn) put(ch byte) {
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

func (c *lineConn) flushLine() {
	c.out = append(c.out, c.line...)
	c.line = c.line[:0]
}

// trackData follows the same state machine as go-smtp's DATA reader to see
// the CRLF.CRLF end of the message.
func (c *lineConn) trackData(ch byte) {
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
func (c *lineConn) commandLine(line []byte) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(text, " ")
	switch strings.ToUpper(verb) {
	case "HELO", "EHLO":
		c.emptyHelo = strings.TrimSpace(arg) == ""
		if c.emptyHelo {
			return []byte(verb + " " + addressLiteral(c.Conn.RemoteAddr()) + "\r\n")
		}
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
func (c *lineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	startTLS := false
	switch {
	case c.pendingStartTLS:
		c.pendingStartTLS = false
		if bytes.HasPrefix(p, []byte("220")) {
			c.mode, startTLS = modeRaw, true
		}
	case c.mode == modeCommand && bytes.HasPrefix(p, []byte("354")):
		c.mode, c.dataState = modeData, dataBeginLine
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if e, ok := c.Conn.(encrypter); ok && startTLS {
		e.encrypted()
	}
	return n, err
}

// encrypter is told when the stream below turns into TLS records (once the
// reply accepting STARTTLS is written), so it stops reading the replies.
type encrypter interface {
	encrypted()
}

func (c *lineConn) heloWasEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.emptyHelo
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
