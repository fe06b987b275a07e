package smtpd

import (
	"bytes"
	"slices"
	"testing"
)

// checkShapeReference is checkShape as it was before it looked for
// delimiter lines and "boundary=" with bytes.Index: the two must agree on
// every message.
func checkShapeReference(raw []byte, maxHeader, maxParts int) error {
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
		i := indexFoldReference(rest, []byte("boundary="))
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

// indexFold is bytes.Index ignoring ASCII case in sep (which is lower case).
func indexFoldReference(s, sep []byte) int {
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

func FuzzCheckShape(f *testing.F) {
	mixed := "Content-Type: multipart/mixed; BOUNDARY=\"b1\"\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\n\r\nx\r\n--b2--\r\n--b1\r\n\r\ny\r\n--b1--\r\n"
	for _, seed := range []string{"", "Subject: x\r\n\r\nbody\r\n", mixed, "--b\n--b\nboundary=b\n", "boundary=\"\nx\"\n--\nx\n--\nx\n", "BoUnDaRy=z; \n\n--z\n--z--\n"} {
		for _, maxParts := range []uint8{0, 1, 3} {
			f.Add([]byte(seed), maxParts, uint16(40))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, maxParts uint8, maxHeader uint16) {
		got := checkShape(raw, int(maxHeader), int(maxParts))
		want := checkShapeReference(raw, int(maxHeader), int(maxParts))
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("checkShape(%q) = %v, reference %v", raw, got, want)
		}
	})
}
