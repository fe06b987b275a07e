package smtpd

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-smtp"
)

// Capturing DATA in the line shim.
//
// go-smtp's DATA reader takes the message one byte at a time (a
// bufio.Reader.ReadByte per byte, below it a length check per byte): on a
// camera's 600 KB mail that was a third of edgesink's CPU time. The shim
// already follows every DATA byte to see the end of the message, so it
// keeps the message itself, in whole runs between line ends, and gives
// go-smtp only the end marker ".\r\n": go-smtp's reader then returns at
// once with nothing, and the session takes the message from the shim
// (capturedMessage). Nothing else changes for go-smtp: the replies, their
// order and the session's state are its own.
//
// The shim keeps exactly what go-smtp's reader would have returned: the
// same state machine (trackData) decides the end and which dots go (a dot
// that starts a line, and a CR after it), so raw mail is byte for byte the
// same. go-smtp's limits are kept too:
//   - a message of max_message_size bytes or more gets ErrDataTooLarge,
//     as go-smtp's reader reports it;
//   - the bytes are held against the same memory budget (Server.growBuffer),
//     451 when it is used up;
//   - a line longer than max_line_length: go-smtp's line-length reader sees
//     the stream, not the message, so the shim stops capturing and hands it
//     an over-long line, and go-smtp ends the session as it always did.
//
// The shim captures only when nothing came after the DATA command before
// go-smtp's 354: a client that sends its message without waiting for 354
// has had those bytes passed to go-smtp already, so that message is left to
// go-smtp's own reader from start to end.

// bufferBudget is the server's memory budget for mail in transfer.
type bufferBudget interface {
	growBuffer(buf []byte, held *int64) ([]byte, error)
	releaseBuffer(held int64)
}

var errCaptureOverlap = errors.New("smtpd: go-smtp read message bytes the line shim had captured")

// startCapture begins capturing a message (at go-smtp's 354) if nothing
// came after the DATA command. Called with c.mu held.
func (c *lineConn) startCapture() {
	if c.cfg.capture == nil || c.fedAfterData {
		return
	}
	// go-smtp's line-length reader has counted the DATA line's LF as 1.
	c.capActive, c.capturing, c.capLine = true, true, 1
}

// capturingData reports whether the message go-smtp is about to read is
// being captured here: then the session calls capturedMessage.
func (c *lineConn) capturingData() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capActive
}

// capturedMessage drains go-smtp's DATA reader r, which makes the shim read
// the whole message, and returns it as readMessage would: the message, what
// it holds of the memory budget (the caller gives that back), or the error
// that ended it.
func (c *lineConn) capturedMessage(r io.Reader) (raw []byte, held int64, err error) {
	n, err := io.Copy(io.Discard, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	raw, held, capErr := c.capBuf, c.capHeld, c.capErr
	c.capBuf, c.capHeld, c.capErr, c.capActive, c.capturing = nil, 0, nil, false, false
	// go-smtp reads on this goroutine: no Read is using the buffer now.
	c.putCaptureIn()
	if err == nil && n != 0 {
		err = errCaptureOverlap
	}
	if err == nil {
		err = capErr
	}
	if err != nil {
		c.cfg.capture.releaseBuffer(held)
		return nil, 0, err
	}
	return raw, held, nil
}

// captureReadSize is the socket read while capturing: a camera's 600 KB in
// 19 reads instead of 150. The buffer is borrowed for the message only, so
// an idle connection costs what it did.
const captureReadSize = 32 << 10

var captureInPool = sync.Pool{New: func() any { return new([captureReadSize]byte) }}

// captureIn is the read buffer while capturing. Called with c.mu held.
func (c *lineConn) captureIn() []byte {
	if c.capIn == nil {
		c.capIn = captureInPool.Get().(*[captureReadSize]byte)
	}
	return c.capIn[:]
}

// putCaptureIn gives the read buffer back. Called with c.mu held, by the
// reader (the only user of the buffer).
func (c *lineConn) putCaptureIn() {
	if c.capIn != nil {
		captureInPool.Put(c.capIn)
		c.capIn = nil
	}
}

// captureRun takes a run of DATA bytes without CR or LF, in the middle of a
// line. Called with c.mu held.
func (c *lineConn) captureRun(p []byte) {
	c.capLine += len(p)
	if c.cfg.maxLine > 0 && c.capLine > c.cfg.maxLine {
		c.captureLineTooLong()
		return
	}
	c.store(p)
}

// captureByte takes one DATA byte. Called with c.mu held.
func (c *lineConn) captureByte(ch byte) {
	if ch == '\n' {
		c.capLine = 0
	}
	c.capLine++
	if c.cfg.maxLine > 0 && c.capLine > c.cfg.maxLine {
		c.captureLineTooLong()
		return
	}
	// What go-smtp's reader drops: a dot that starts a line, a CR right
	// after it, and the LF that ends the message.
	var keep bool
	switch c.dataState {
	case dataBeginLine:
		keep = ch != '.'
	case dataDot:
		keep = ch != '\r'
	case dataDotCR:
		keep = ch != '\n'
	default:
		keep = true
	}
	c.trackData(ch)
	if c.mode != modeData {
		// The end of the message: go-smtp's reader sees only the marker.
		c.capturing = false
		c.out = append(c.out, ".\r\n"...)
		return
	}
	if keep {
		c.store([]byte{ch})
	}
}

// store appends message bytes to the capture, against the size limit and
// the memory budget.
func (c *lineConn) store(p []byte) {
	if c.capErr != nil {
		return
	}
	if c.cfg.maxMessage > 0 && int64(len(c.capBuf)+len(p)) >= c.cfg.maxMessage {
		// go-smtp's reader refuses once it has returned max bytes.
		c.dropCapture(smtp.ErrDataTooLarge)
		return
	}
	for cap(c.capBuf)-len(c.capBuf) < len(p) {
		nb, err := c.cfg.capture.growBuffer(c.capBuf, &c.capHeld)
		if err != nil {
			c.dropCapture(err)
			return
		}
		c.capBuf = nb
	}
	c.capBuf = append(c.capBuf, p...)
}

// dropCapture ends the message with err; its bytes are read to the end and
// discarded, as go-smtp does after a refusal.
func (c *lineConn) dropCapture(err error) {
	c.capErr = err
	c.cfg.capture.releaseBuffer(c.capHeld)
	c.capBuf, c.capHeld = nil, 0
}

// captureLineTooLong stops capturing and gives go-smtp a line over its
// limit, so that its line-length reader fails the message and the session
// as it does for any over-long line.
func (c *lineConn) captureLineTooLong() {
	c.dropCapture(errors.New("smtpd: line too long"))
	c.capturing = false
	c.out = append(c.out, bytes.Repeat([]byte("x"), c.cfg.maxLine+1)...)
}

// releaseCapture gives back a capture left behind by a session that ended
// in the middle of a message. Called with c.mu held.
func (c *lineConn) releaseCapture() {
	if c.capHeld > 0 {
		c.cfg.capture.releaseBuffer(c.capHeld)
	}
	c.capBuf, c.capHeld = nil, 0
}
