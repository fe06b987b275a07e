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
	// Delimiter lines are found by "\n--" (bytes.Index), not by looking
	// at every line of what is mostly base64.
	parts := 0
	for i := 0; i < len(raw); {
		if bytes.HasPrefix(raw[i:], []byte("--")) {
			line := raw[i:]
			if end := bytes.IndexByte(line, '\n'); end >= 0 {
				line = line[:end+1]
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
		j := bytes.Index(raw[i:], []byte("\n--"))
		if j < 0 {
			break
		}
		i += j + 1
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

// indexFold is bytes.Index ignoring ASCII case in sep (which is lower case
// and ends in a byte that has no case, such as '='). It looks for that last
// byte (bytes.IndexByte), which is rare in base64, and then at what
// precedes it.
func indexFold(s, sep []byte) int {
	last := sep[len(sep)-1]
	for at := len(sep) - 1; at < len(s); at++ {
		j := bytes.IndexByte(s[at:], last)
		if j < 0 {
			return -1
		}
		at += j
		if start := at + 1 - len(sep); bytes.EqualFold(s[start:at+1], sep) {
			return start
		}
	}
	return -1
}
