package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lineConn is the line shim between a device's connection and go-smtp. It
// sits above TLS: on an implicit-TLS listener it wraps the *tls.Conn, and
// it does STARTTLS itself, so everything below holds inside TLS exactly as
// outside. (The session's lifecycle, deadlines, drain and slot, is
// clientConn's, on the socket below.)
//
// Why it exists: go-smtp is strict where old devices are sloppy. It answers
// 501 to a HELO/EHLO without a name, and its DATA reader only ends a message
// on CRLF.CRLF, so a device that writes bare LF line endings (many embedded
// stacks do, ending with "\n.\n") hangs until the timeout and its alert is
// lost. RFC 5321 forbids bare LF because a relay that reads line endings
// differently from the next hop can be tricked into smuggling a second
// message. edgesink is the last hop and relays nothing, so accepting bare LF
// here is safe; Config.StrictLineEndings turns it off. The same old devices
// are the ones that need TLS 1.0, which is why this must hold inside TLS.
//
// What it does to the client's bytes:
//   - every LF not preceded by CR becomes CRLF (unless strict);
//   - "HELO" / "EHLO" with an empty name is rewritten to carry the client's
//     address literal, and the emptiness is remembered for the alert;
//   - the chunk after "BDAT n" is passed through untouched (it is binary and
//     counted in bytes), exactly when go-smtp will consume it;
//   - HELP and STARTTLS are answered here (go-smtp has no HELP, and its
//     STARTTLS would put TLS above this shim).
//
// And to the server's replies: it counts error replies and hangs up past
// the cap (Config.MaxErrors), advertises STARTTLS in the EHLO reply while
// the session is not yet secure, and watches for 354 to know when DATA
// starts; the CRLF.CRLF line tells when it ends, so message lines that
// happen to read like commands are never rewritten.
//
// go-smtp only sees this shim, never a *tls.Conn, so it takes every
// session for plain text: the session asks secure() instead (AUTH policy),
// and go-smtp's own insecure-AUTH guard is left open for it.
type lineConn struct {
	cfg shimConfig

	mu        sync.Mutex
	conn      net.Conn // the socket's clientConn, or TLS above it; swapped by STARTTLS
	secure    bool     // conn is TLS
	handshake bool     // implicit TLS: handshake before the first byte
	mode      connMode
	emptyHelo bool
	errors    int  // error replies written
	hangUp    bool // close once the next reply is written
	swallow   bool // drop the next reply (the RSET injected after STARTTLS)

	// Read side; go-smtp reads from a single goroutine, mu guards what
	// Write shares.
	in        []byte
	out       []byte
	outPos    int
	held      []byte // client bytes after a command answered here, fed once it is
	local     string // command to answer here once go-smtp has caught up
	line      []byte
	lineSkip  bool // current command line is too long to inspect
	prevCR    bool
	dataState dataState
	bdatLeft  uint64
	readErr   error

	byteAtATime bool // tests: take the byte-by-byte path only, the reference

	// DATA captured here (capture.go); guarded by mu.
	fedAfterData bool                   // client bytes came after the last DATA command line
	capActive    bool                   // this message is captured (from 354 until the session takes it)
	capturing    bool                   // ... and its end has not come yet
	capBuf       []byte                 // the message so far, as go-smtp's reader would return it
	capHeld      int64                  // what capBuf holds of the server's memory budget
	capErr       error                  // what ended the capture early
	capLine      int                    // go-smtp's line-length count
	capIn        *[captureReadSize]byte // the read buffer while capturing, from a pool
}

// shimConfig is what the shim needs from the server's Config.
type shimConfig struct {
	translateLF bool
	maxErrors   int         // error replies allowed before hanging up; 0: no limit
	startTLS    *tls.Config // offer STARTTLS with it; nil: not offered
	handshake   time.Duration
	auth        bool // AUTH offered (when secure or insecure AUTH allowed)
	authPlain   bool // ... also without TLS
	// capture, when set, lets the shim capture DATA (capture.go) against
	// this budget, with go-smtp's line and message limits.
	capture    bufferBudget
	maxLine    int
	maxMessage int64
}

type connMode int

const (
	modeCommand connMode = iota
	modeData
	modeBDAT
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

// newLineConn wraps c, which is a *tls.Conn on an implicit-TLS listener.
func newLineConn(c net.Conn, cfg shimConfig) *lineConn {
	_, isTLS := c.(*tls.Conn)
	return &lineConn{conn: c, cfg: cfg, secure: isTLS, handshake: isTLS, in: make([]byte, 4096), fedAfterData: true}
}

func (c *lineConn) current() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// NetConn returns the connection below the shim.
func (c *lineConn) NetConn() net.Conn { return c.current() }
func (c *lineConn) Close() error {
	c.mu.Lock()
	c.releaseCapture()
	c.mu.Unlock()
	return c.current().Close()
}
func (c *lineConn) LocalAddr() net.Addr                { return c.current().LocalAddr() }
func (c *lineConn) RemoteAddr() net.Addr               { return c.current().RemoteAddr() }
func (c *lineConn) SetDeadline(t time.Time) error      { return c.current().SetDeadline(t) }
func (c *lineConn) SetReadDeadline(t time.Time) error  { return c.current().SetReadDeadline(t) }
func (c *lineConn) SetWriteDeadline(t time.Time) error { return c.current().SetWriteDeadline(t) }

// tlsState reports the session's TLS state: the one truth about "secure"
// for the session (AUTH), as go-smtp cannot see the TLS below the shim.
func (c *lineConn) tlsState() (tls.ConnectionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc, ok := c.conn.(*tls.Conn); ok && c.secure {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// handshakeTLS runs the TLS handshake of an implicit-TLS session before its
// first byte, bounded as go-smtp bounds it (a client that connects and
// says nothing must not hold its slot for ever).
func (c *lineConn) handshakeTLS() error {
	if !c.handshake {
		return nil
	}
	c.handshake = false
	return c.tlsHandshake(c.conn.(*tls.Conn))
}

func (c *lineConn) tlsHandshake(tc *tls.Conn) error {
	if c.cfg.handshake > 0 {
		_ = tc.SetDeadline(time.Now().Add(c.cfg.handshake))
		defer tc.SetDeadline(time.Time{})
	}
	return tc.Handshake()
}

// Read returns the client's bytes after translation.
func (c *lineConn) Read(p []byte) (int, error) {
	if err := c.handshakeTLS(); err != nil {
		return 0, err
	}
	for c.outPos >= len(c.out) {
		c.out, c.outPos = c.out[:0], 0
		if c.local != "" {
			// go-smtp asks for more, so it has answered everything
			// before this command: its reply comes in order.
			cmd := c.local
			c.local = ""
			c.answer(cmd)
			continue
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		if len(c.held) > 0 {
			b := c.held
			c.held = nil
			c.mu.Lock()
			c.feed(b)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		in := c.in
		if c.capturing {
			// A message comes in bulk: fewer, larger reads (capture.go).
			in = c.captureIn()
		}
		c.mu.Unlock()
		n, err := c.conn.Read(in)
		c.mu.Lock()
		c.feed(in[:n])
		if err != nil {
			c.readErr = err
			if errors.Is(err, io.EOF) && c.local == "" {
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

// feed translates b and appends the result to c.out, up to a command this
// shim answers itself; what follows that is held. Called with c.mu held.
func (c *lineConn) feed(b []byte) {
	for i := 0; i < len(b); i++ {
		if c.mode != modeData {
			c.fedAfterData = true
		}
		if c.mode == modeBDAT {
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
		if c.mode == modeData && c.dataState == dataMid && !c.byteAtATime {
			// The bulk of a message: in the middle of a line only CR and
			// LF mean anything, so the run up to the next one is passed
			// on whole (bytes.IndexByte, not a loop over bytes).
			if k := midLineRun(b[i:]); k > 0 {
				if c.capturing {
					c.captureRun(b[i : i+k])
				} else {
					c.out = append(c.out, b[i:i+k]...)
				}
				c.prevCR = false
				i += k - 1
				continue
			}
		}
		ch := b[i]
		if ch == '\n' && !c.prevCR && c.cfg.translateLF {
			c.put('\r')
		}
		c.put(ch)
		c.prevCR = ch == '\r'
		if c.local != "" {
			c.held = append([]byte(nil), b[i+1:]...)
			return
		}
	}
}

// midLineRun is the length of b's leading run without CR or LF.
func midLineRun(b []byte) int {
	k := bytes.IndexByte(b, '\n')
	if k < 0 {
		k = len(b)
	}
	if r := bytes.IndexByte(b[:k], '\r'); r >= 0 {
		k = r
	}
	return k
}

// put emits one byte in command or data mode.
func (c *lineConn) put(ch byte) {
	if c.mode == modeData {
		if c.capturing {
			c.captureByte(ch)
			return
		}
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
		// As go-smtp: only CRLF begins a line; "\r\r" is mid-line.
		if ch == '\n' {
			c.dataState = dataBeginLine
		} else {
			c.dataState = dataMid
		}
	case dataMid:
		if ch == '\r' {
			c.dataState = dataCR
		}
	}
}

// commandLine inspects one complete command line and returns what go-smtp
// should see instead (nothing, for a command answered here).
func (c *lineConn) commandLine(line []byte) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(text, " ")
	switch strings.ToUpper(verb) {
	case "HELO", "EHLO":
		c.emptyHelo = strings.TrimSpace(arg) == ""
		if c.emptyHelo {
			return []byte(verb + " " + addressLiteral(c.conn.RemoteAddr()) + "\r\n")
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
	case "DATA":
		c.fedAfterData = false
	case "HELP":
		c.local = "HELP"
		return nil
	case "STARTTLS":
		if c.cfg.startTLS != nil {
			c.local = "STARTTLS"
			return nil
		}
		// Not configured: go-smtp answers 502 5.5.1.
	}
	return line
}

// answer replies to a command answered here. Called by the reader, after
// go-smtp has answered everything before it.
func (c *lineConn) answer(cmd string) {
	switch cmd {
	case "HELP":
		c.reply("214 2.0.0 Commands: " + c.commands())
	case "STARTTLS":
		c.startTLS()
	}
}

// commands lists what edgesink speaks now, for HELP.
func (c *lineConn) commands() string {
	c.mu.Lock()
	secure := c.secure
	c.mu.Unlock()
	cmds := "HELO EHLO"
	if !secure && c.cfg.startTLS != nil {
		cmds += " STARTTLS"
	}
	if c.cfg.auth && (secure || c.cfg.authPlain) {
		cmds += " AUTH"
	}
	return cmds + " MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT"
}

// startTLS turns the session into TLS below this shim. Whatever the client
// sent after STARTTLS in the clear is dropped (RFC 3207: it must wait for
// the handshake; a plaintext command injected there must never be read as
// if it came over TLS).
func (c *lineConn) startTLS() {
	c.held = nil
	c.mu.Lock()
	secure := c.secure
	c.mu.Unlock()
	if secure {
		c.reply("502 5.5.1 Already running in TLS")
		return
	}
	if err := c.reply("220 2.0.0 Ready to start TLS"); err != nil {
		c.readErr = err
		return
	}
	tc := tls.Server(c.conn, c.cfg.startTLS)
	if err := c.tlsHandshake(tc); err != nil {
		// The stream is in no state to answer in: end the session.
		c.readErr = err
		return
	}
	if n, ok := c.conn.(tlsNotifier); ok {
		n.tlsStarted()
	}
	c.mu.Lock()
	c.conn, c.secure = tc, true
	c.prevCR, c.line = false, c.line[:0]
	// RFC 3207: the server forgets what the client said in the clear. An
	// RSET ends any transaction in go-smtp and the session; its reply is
	// not the client's to read. (A login before STARTTLS, which only
	// auth.allow_insecure permits, stands.)
	c.swallow = true
	c.out = append(c.out, "RSET\r\n"...)
	c.mu.Unlock()
}

// reply writes a reply of this shim's own, through the same counting as
// go-smtp's.
func (c *lineConn) reply(line string) error {
	_, err := c.Write([]byte(line + "\r\n"))
	return err
}

// starttlsCap is inserted after the first capability go-smtp always lists,
// so the EHLO reply offers STARTTLS while the session is not secure.
var (
	firstCap    = []byte("250-PIPELINING\r\n")
	starttlsCap = []byte("250-STARTTLS\r\n")
)

// Write passes the server's replies on (go-smtp writes one line per call),
// and watches them: 354 starts DATA, error replies count towards the cap.
func (c *lineConn) Write(p []byte) (int, error) {
	if err := c.handshakeTLS(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.swallow {
		c.swallow = false
		c.mu.Unlock()
		return len(p), nil
	}
	out := p
	if c.mode == modeCommand && bytes.HasPrefix(p, []byte("354")) {
		c.mode, c.dataState = modeData, dataBeginLine
		c.startCapture()
	}
	if !c.secure && c.cfg.startTLS != nil {
		if i := bytes.Index(p, firstCap); i == 0 || (i > 0 && p[i-1] == '\n') {
			j := i + len(firstCap)
			out = append(append(append([]byte(nil), p[:j]...), starttlsCap...), p[j:]...)
		}
	}
	if c.cfg.maxErrors > 0 && len(p) >= 4 && (p[0] == '4' || p[0] == '5') && p[3] != '-' && !bytes.HasPrefix(p, []byte("421")) {
		c.errors++
		if c.errors >= c.cfg.maxErrors && !c.hangUp {
			c.hangUp = true
			out = append(append([]byte(nil), out...), "421 4.7.0 Too many errors, closing connection\r\n"...)
		}
	}
	hangUp, conn := c.hangUp, c.conn
	c.mu.Unlock()
	_, err := conn.Write(out)
	if hangUp {
		_ = conn.Close() // go-smtp's next read fails and ends the session
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// hangUpAfterReply closes the connection right after the next reply: for a
// client the server refuses to talk to any longer.
func (c *lineConn) hangUpAfterReply() {
	c.mu.Lock()
	c.hangUp = true
	c.mu.Unlock()
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
