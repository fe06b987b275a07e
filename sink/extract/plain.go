package extract

import (
	"bufio"
	"bytes"
	"fmt"
	"net/textproto"

	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/text/encoding/charmap"
)

// A mail without Content-Type, Content-Transfer-Encoding and
// Content-Disposition headers (the alert mail of many old devices) is one
// text/plain part in US-ASCII by RFC 2045, and that is all enmime makes of
// it: it reads the header with ReadHeader, then reads the rest twice into
// growing slices (once for a charset detection we turned off, once through
// the Windows-1252 decoder it maps US-ASCII to). readPlain builds the same
// part from enmime's own ReadHeader and hands it to enmime's
// EnvelopeFromPart, without those copies: Extract of the 4 KiB alert went
// from about 80 to 25 µs of CPU and from 52.9 to 14.8 KB allocated
// (BenchmarkExtract). Any other mail takes enmime's full parse.
// FuzzPlainPath checks, for any input, that the alert is byte for byte the
// one the full parse gives.

// mayBePlain is false when the header block holds something like
// "content-" in any case: the mail goes straight to the full parse. It is a
// cheap filter only; readPlain decides on the parsed header.
func mayBePlain(raw []byte) bool {
	head := raw
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		if rest := raw[i:]; len(rest) > 0 && (rest[0] == '\n' || bytes.HasPrefix(rest, []byte("\r\n"))) {
			head = raw[:i] // up to the first blank line, not through a camera's JPEGs
			break
		}
	}
	for i := bytes.IndexByte(head, '-'); i >= 0; {
		if i >= 7 && bytes.EqualFold(head[i-7:i], []byte("content")) {
			return false
		}
		j := bytes.IndexByte(head[i+1:], '-')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return true
}

// readPlain reads a mail whose header has none of the headers that make
// enmime read its body as anything but US-ASCII text; ok is false for any
// other mail, and br is then spent (the caller starts again).
func readPlain(raw []byte, br *bufio.Reader, rd *bytes.Reader) (e *enmime.Envelope, ok bool) {
	var errs rootErrors
	header, err := enmime.ReadHeader(br, &errs)
	if err != nil {
		return nil, false // the full parse reports it
	}
	h := textproto.MIMEHeader(header)
	if h.Get("Content-Type") != "" || h.Get("Content-Transfer-Encoding") != "" ||
		h.Get("Content-Disposition") != "" {
		return nil, false
	}
	body := raw[len(raw)-rd.Len()-br.Buffered():]
	if !isASCII(body) {
		// What enmime's reader does with US-ASCII; the decoder is
		// stateless, so reading it whole gives the same bytes.
		if body, err = charmap.Windows1252.NewDecoder().Bytes(body); err != nil {
			return nil, false
		}
	}
	root := enmime.NewPart("text/plain")
	root.PartID = "0"
	root.Header = h
	root.Charset = "us-ascii"
	root.Content = body // raw's bytes when ASCII: nothing outlives Extract
	root.Errors = errs
	e, err = parser.EnvelopeFromPart(root)
	if err != nil {
		return nil, false
	}
	return e, true
}

// rootErrors collects what enmime's ReadHeader reports, as enmime does for
// a message's root part (bounded as parser's MaxStoredPartErrors).
type rootErrors []*enmime.Error

func (r *rootErrors) AddError(name, detailFmt string, args ...any) {
	r.add(&enmime.Error{Name: name, Detail: fmt.Sprintf(detailFmt, args...), Severe: true})
}

func (r *rootErrors) AddWarning(name, detailFmt string, args ...any) {
	r.add(&enmime.Error{Name: name, Detail: fmt.Sprintf(detailFmt, args...)})
}

func (r *rootErrors) add(e *enmime.Error) {
	if len(*r) < maxParseErrors {
		*r = append(*r, e)
	}
}

// isASCII reports whether b has no byte of 0x80 or above, eight at a time.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if w&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
