// Package extract turns a raw mail into an Alert, and is the only package
// that imports enmime. It forwards what it could read and lists what it
// could not in ParseErrors; charsets are decoded to UTF-8 (undeclared 8-bit
// text as Windows-1252, noted), and nothing it returns carries invalid
// UTF-8.
package extract

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"

	"github.com/edgesink/edgesink/sink"
)

// ErrNoContent reports a mail from which nothing usable could be read: no
// subject, no text, no HTML and no attachment. The sink answers it with 554.
var ErrNoContent = errors.New("sink: message has no usable content")

// Envelope is what the SMTP transaction said about a mail, before its content.
type Envelope struct {
	ReceivedAt time.Time
	RemoteAddr string
	Helo       string
	MailFrom   string
	RcptTo     []string
	AuthUser   string // empty unless the client authenticated
}

// maxParseErrors bounds parse_errors so a mail with thousands of broken
// parts cannot blow up the alert.
const maxParseErrors = 20

// parser is lenient: corrupt base64 text keeps what decoded, a multipart
// without boundary is read as one part. Charset detection is off: measured
// on 4 KiB alerts it took 40% of edgesink's throughput (make bench) and, on
// the samples, found nothing the Windows-1252 fallback in toUTF8 does not
// (undeclared Shift_JIS defeats both). readRuns (runs.go) relies on these
// options: read its reasoning again before changing them.
var parser = enmime.NewParser(
	enmime.SetReadPartErrorPolicy(enmime.AllowCorruptTextPartErrorPolicy),
	enmime.MaxStoredPartErrors(maxParseErrors),
	enmime.MultipartWOBoundaryAsSinglePart(true),
	enmime.StripMediaTypeInvalidCharacters(true),
	enmime.DisableCharacterDetection(true),
)

// readers hands enmime a 4 KiB buffered reader it keeps as it is (it
// wraps any other reader in a new one): enmime copies what it keeps out of
// the buffer, so the buffer is free again once ReadEnvelope returns.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// Extract turns a raw message and its SMTP envelope into an Alert. A
// malformed message still yields an alert with whatever could be read and its
// problems listed in ParseErrors; only a message with no usable content at all
// returns ErrNoContent.
func Extract(raw []byte, env Envelope) (*sink.Alert, error) {
	return extract(raw, env, fast)
}

// extract is Extract taking the shortcuts fp allows; the zero fastPaths
// takes every mail through enmime's full parse (FuzzPlainPath and
// FuzzRunsPath compare the two).
func extract(raw []byte, env Envelope, fp fastPaths) (*sink.Alert, error) {
	a := &sink.Alert{
		ID:          sink.NewID(env.ReceivedAt),
		ReceivedAt:  env.ReceivedAt.UTC(),
		RemoteAddr:  toUTF8(env.RemoteAddr),
		Helo:        toUTF8(env.Helo),
		MailFrom:    toUTF8(env.MailFrom),
		AuthUser:    toUTF8(env.AuthUser),
		RcptTo:      make([]string, 0, len(env.RcptTo)),
		From:        []string{},
		To:          []string{},
		Attachments: []sink.Attachment{},
		ParseErrors: []string{},
		Size:        len(raw),
	}
	for _, r := range env.RcptTo {
		a.RcptTo = append(a.RcptTo, toUTF8(r))
	}

	e, err := readEnvelope(raw, fp)
	if err != nil {
		// enmime gives up only on a message it cannot split into header and
		// body at all; the bytes are still the device's words, so pass them on.
		addParseError(a, fmt.Sprintf("unreadable MIME structure: %v", err))
		a.Text = cleanText(toUTF8(string(raw)))
	} else {
		fillFromEnvelope(a, e)
	}

	a.Device = sink.DeviceName(env.AuthUser, env.MailFrom, a.From)
	if strings.TrimSpace(a.Subject) == "" && strings.TrimSpace(a.Text) == "" &&
		strings.TrimSpace(a.HTML) == "" && len(a.Attachments) == 0 {
		return a, ErrNoContent
	}
	return a, nil
}

// readEnvelope parses raw with enmime: by readPlain when fp allows and raw
// has no Content-* header, by readRuns when fp allows and raw has long
// base64 bodies, else by the full parse.
func readEnvelope(raw []byte, fp fastPaths) (*enmime.Envelope, error) {
	br := readers.Get().(*bufio.Reader)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	if fp.plain && mayBePlain(raw) {
		rd := bytes.NewReader(raw)
		br.Reset(rd)
		if e, ok := readPlain(raw, br, rd); ok {
			return e, nil
		}
	}
	if fp.runMin > 0 {
		if e, ok := readRuns(raw, br, fp); ok {
			return e, nil
		}
	}
	br.Reset(bytes.NewReader(raw))
	return parser.ReadEnvelope(br)
}

func fillFromEnvelope(a *sink.Alert, e *enmime.Envelope) {
	a.Subject = cleanHeader(decodeLeftoverWords(a, "Subject", undeclared8bit(a, "Subject", e.GetHeader("Subject"))))
	a.From = addresses(a, e, "From")
	a.To = addresses(a, e, "To")
	a.Text = cleanText(undeclared8bit(a, "text", e.Text))
	a.HTML = undeclared8bit(a, "html", e.HTML)

	parts := make([]*enmime.Part, 0, len(e.Attachments)+len(e.Inlines))
	parts = append(parts, e.Attachments...)
	parts = append(parts, e.Inlines...)
	for _, p := range e.OtherParts {
		if !strings.HasPrefix(p.ContentType, "multipart/") {
			parts = append(parts, p)
		}
	}
	for _, p := range parts {
		sum := sha256.Sum256(p.Content)
		a.Attachments = append(a.Attachments, sink.Attachment{
			Filename:    cleanHeader(decodeLeftoverWords(a, "attachment filename", undeclared8bit(a, "attachment filename", p.FileName))),
			ContentType: toUTF8(p.ContentType),
			Size:        len(p.Content),
			SHA256:      hex.EncodeToString(sum[:]),
			Data:        imageBytes(p.Content),
		})
	}

	if e.Root != nil {
		for _, p := range e.Root.DepthMatchAll(readAsASCII) {
			addParseError(a, fmt.Sprintf("%s part: 8-bit text without a declared charset, read as Windows-1252", p.ContentType))
		}
	}
	for _, pe := range e.Errors {
		// enmime notes every HTML-only mail; that is expected, not a problem.
		if pe.Name == enmime.ErrorPlainTextFromHTML && !pe.Severe {
			continue
		}
		addParseError(a, pe.Name+": "+pe.Detail)
	}
	if len(e.GetHeaderKeys()) == 0 {
		addParseError(a, "missing headers: message has no header block")
	}
}

// imageBytes is content when it is an image by its first bytes (cameras
// declare JPEGs as application/octet-stream, or as nothing), else nil. No
// copy: the snapshot stage takes what it keeps before the alert is queued.
func imageBytes(content []byte) []byte {
	if bytes.HasPrefix(content, []byte{0xff, 0xd8, 0xff}) || strings.HasPrefix(http.DetectContentType(content), "image/") {
		return content
	}
	return nil
}

// readAsASCII matches a text part that claims US-ASCII (the default when a
// part declares no charset) yet decoded to non-ASCII characters: its 8-bit
// bytes were read as Windows-1252 (enmime maps the label as browsers do).
func readAsASCII(p *enmime.Part) bool {
	if !p.TextContent() || strings.HasPrefix(p.ContentType, "multipart/") {
		return false
	}
	switch strings.ToLower(p.Charset) {
	case "us-ascii", "ascii", "us", "ansi_x3.4-1968":
	default:
		return false
	}
	return !isASCII(p.Content)
}

// addresses decodes an address header into bare addresses. A header that
// does not parse as RFC 5322 is split leniently instead of dropped.
func addresses(a *sink.Alert, e *enmime.Envelope, key string) []string {
	raw := e.GetHeader(key)
	if strings.TrimSpace(raw) == "" {
		return []string{}
	}
	list, err := e.AddressList(key)
	if err == nil {
		out := make([]string, 0, len(list))
		for _, addr := range list {
			out = append(out, toUTF8(addr.Address))
		}
		return out
	}
	addParseError(a, fmt.Sprintf("%s header: %v", key, err))
	out := []string{}
	for _, field := range strings.Split(undeclared8bit(a, key, raw), ",") {
		field = strings.TrimSpace(field)
		if i, j := strings.LastIndexByte(field, '<'), strings.LastIndexByte(field, '>'); i >= 0 && j > i {
			field = field[i+1 : j]
		} else if addr, err := mail.ParseAddress(field); err == nil {
			field = addr.Address
		}
		if field = cleanHeader(field); field != "" {
			out = append(out, field)
		}
	}
	return out
}

// addParseError records a problem once; repeats of the same text (enmime
// reports each bad base64 byte) add nothing.
func addParseError(a *sink.Alert, msg string) {
	msg = toUTF8(msg)
	if len(a.ParseErrors) >= maxParseErrors || slices.Contains(a.ParseErrors, msg) {
		return
	}
	a.ParseErrors = append(a.ParseErrors, msg)
}

// decodeLeftoverWords decodes RFC 2047 encoded-words that enmime left as they
// were because their charset is unknown to it: the decoded bytes go through
// the same fallback as raw 8-bit text, and the problem is noted.
func decodeLeftoverWords(a *sink.Alert, what, s string) string {
	if !strings.Contains(s, "=?") || !strings.Contains(s, "?=") {
		return s
	}
	var unknown []string
	dec := mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
		if enc, err := htmlindex.Get(charset); err == nil {
			return enc.NewDecoder().Reader(input), nil
		}
		unknown = append(unknown, charset)
		return input, nil // raw bytes; toUTF8 below makes them valid
	}}
	out, err := dec.DecodeHeader(s)
	if err != nil {
		return s
	}
	for _, cs := range unknown {
		addParseError(a, fmt.Sprintf("%s: unknown charset %q, read as Windows-1252", what, cs))
	}
	return toUTF8(out)
}

// undeclared8bit is toUTF8 for text from the mail itself: when s is not
// valid UTF-8 (8-bit bytes whose charset was not declared, or enmime could
// not convert), the Windows-1252 reading is noted in ParseErrors, so a
// consumer knows the characters are a guess.
func undeclared8bit(a *sink.Alert, what, s string) string {
	if utf8.ValidString(s) {
		return s
	}
	addParseError(a, what+": 8-bit text without a known charset, read as Windows-1252")
	return toUTF8(s)
}

// toUTF8 returns s unchanged when it is valid UTF-8. Otherwise the bytes are
// read as Windows-1252, the charset that undeclared 8-bit text from old
// devices is by far most often in; every byte maps to a character, so the
// result is always valid UTF-8 and nothing is silently dropped.
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out, err := charmap.Windows1252.NewDecoder().String(s)
	if err != nil || !utf8.ValidString(out) {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return out
}

// cleanHeader removes control characters (CR, LF, NUL, ...) from a one-line
// value and trims it.
func cleanHeader(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			if r == '\t' {
				return ' '
			}
			return -1
		}
		return r
	}, s))
}

// cleanText normalises line endings to LF and drops control characters other
// than tab and newline, so consumers see plain text.
func cleanText(s string) string {
	// Most alert text is ASCII: done here a byte at a time, without
	// decoding runes, copying the runs between the bytes to drop or change
	// (a CR, mostly) whole, and without a copy when there is nothing to clean.
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); i++ {
		// Eight plain bytes (space to tilde) at a time: a word holds a
		// byte below 0x20 when subtracting 0x20 from each borrows, and one
		// of 0x7f or above when adding 1 to each sets a top bit.
		for i+8 <= len(s) {
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if ((w-0x2020202020202020)&^w|(w+0x0101010101010101)|w)&0x8080808080808080 != 0 {
				break
			}
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c >= ' ' && c < 0x7f || c == '\n' || c == '\t' {
			continue
		}
		if c >= utf8.RuneSelf {
			return cleanUnicodeText(s)
		}
		if b.Cap() == 0 {
			b.Grow(len(s)) // the result is never longer: one allocation, no copy
		}
		b.WriteString(s[start:i])
		if c == '\r' && (i+1 == len(s) || s[i+1] != '\n') {
			b.WriteByte('\n') // a lone CR ends a line; before an LF it goes
		}
		start = i + 1
	}
	if b.Cap() == 0 {
		return s
	}
	b.WriteString(s[start:])
	return b.String()
}

// cleanUnicodeText is cleanText for text beyond ASCII.
func cleanUnicodeText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r':
			return '\n'
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}
