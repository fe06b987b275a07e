package smtpd

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/emersion/go-smtp"
)

// Limits on a message's shape, checked on the raw bytes before parsing, so
// a crafted mail cannot make the MIME parser build huge structures: the
// size limit alone bounds bytes, not headers or parts.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxMIMEParts   = 200
	// maxBoundaries bounds the distinct multipart boundaries looked for.
	maxBoundaries = 64
)

func errShape(format string, a ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf(format, a...)}
}

// checkShape refuses a message whose top-level header is over maxHeader
// bytes or which has more than maxParts MIME parts. Parts are counted as
// delimiter lines of the multipart boundaries the message declares.
func checkShape(raw []byte, maxHeader, maxParts int) error {
	end := bytes.Index(raw, []byte("\n\n"))
	if crlf := bytes.Index(raw, []byte("\r\n\r\n")); crlf >= 0 && (end < 0 || crlf < end) {
		end = crlf
	}
	if end < 0 {
		end = len(raw) // all header
	}
	if end > maxHeader {
		return errShape("Message header too large (over %d bytes)", maxHeader)
	}

	var boundaries [][]byte
	for rest := raw; ; {
		i := indexFold(rest, []byte("boundary="))
		if i < 0 {
			break
		}
		rest = rest[i+len("boundary="):]
		b := boundaryValue(rest)
		if len(b) == 0 || slices.ContainsFunc(boundaries, func(x []byte) bool { return bytes.Equal(x, b) }) {
			continue
		}
		if len(boundaries) == maxBoundaries {
			return errShape("Message nests too many multiparts (over %d)", maxBoundaries)
		}
		boundaries = append(boundaries, b)
	}
	if len(boundaries) == 0 {
		return nil
	}
	parts := 0
	for line := range bytes.Lines(raw) {
		if !bytes.HasPrefix(line, []byte("--")) {
			continue
		}
		for _, b := range boundaries {
			if bytes.HasPrefix(line[2:], b) {
				parts++
				break
			}
		}
		if parts > maxParts+len(boundaries) { // each multipart's closing delimiter is no part
			return errShape("Message has too many MIME parts (over %d)", maxParts)
		}
	}
	return nil
}

// boundaryValue reads a boundary parameter value, quoted or not.
func boundaryValue(b []byte) []byte {
	if len(b) > 0 && b[0] == '"' {
		if j := bytes.IndexByte(b[1:], '"'); j >= 0 {
			return b[1 : 1+j]
		}
		return nil
	}
	j := bytes.IndexAny(b, "; \t\r\n")
	if j < 0 {
		j = len(b)
	}
	return b[:j]
}

// indexFold is bytes.Index ignoring ASCII case in sep (which is lower case).
func indexFold(s, sep []byte) int {
	for i := 0; i+len(sep) <= len(s); i++ {
		j := bytes.IndexByte(s[i:], sep[0])
		k := bytes.IndexByte(s[i:], sep[0]-32)
		switch {
		case j < 0 && k < 0:
			return -1
		case j < 0 || (k >= 0 && k < j):
			j = k
		}
		i += j
		if i+len(sep) <= len(s) && bytes.EqualFold(s[i:i+len(sep)], sep) {
			return i
		}
	}
	return -1
}
