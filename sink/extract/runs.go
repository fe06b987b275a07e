package extract

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/jhillyerd/enmime/v2"
)

// A camera's alert mail carries its snapshots as base64 bodies of hundreds
// of kilobytes, and enmime reads those a byte at a time twice over (its
// boundary reader, then its base64 cleaner): about 80% of Extract's time on
// the ~631 KB camera mail of make bench. readRuns cuts that out: it finds
// each long run of plain base64 lines, decodes it with encoding/base64, and
// hands enmime a copy of the mail in which the run is a marker of 4 KB: one
// line of the base64 of a token drawn from crypto/rand for this mail, then
// lines of '=', which enmime's base64 cleaner drops. enmime parses
// the structure, headers, file names and errors as ever, and decodes the
// marker of a run to its token; the part whose content is exactly that token
// then gets the run's decoded bytes. Anything not exactly as expected (a
// token found twice or not at all, in a text part, a boundary that could see
// the markers differently from the runs...) and the mail takes enmime's full
// parse instead. FuzzRunsPath (any input) and TestRunsPathGenerated (random
// mails of the pieces below) check that the alert is byte for byte the one
// the full parse gives; the generated mails found the two last points.
//
// Why the copy parses as the mail does, read against enmime v2.3.0
// (boundary.go, part.go, internal/coding/base64.go):
//   - A run is whole lines (it starts after an LF and ends with one) of
//     [A-Za-z0-9+/] and line breaks, every CR before an LF, with '=' only at
//     its end; the marker is lines of base64 and of '='. Neither holds a
//     '-', so a delimiter ("--" + boundary) can neither start inside one
//     nor, when the boundary has no CR or LF, run into one from before it;
//     the boundary reader finds the same delimiters at the same places.
//   - The boundary reader peeks up to len(boundary)+6 bytes ahead and notes
//     the end of its input (a part not closed) when the peek falls short;
//     the marker's last line is as long as the run's, with the same line
//     break, so the last peek in both sees the end alike (also when that
//     line break is a boundary's), and the earlier ones do not reach it.
//   - In the first read of a part (4096 bytes, enmime's bufio size) the
//     boundary reader peeks at every byte, after that only after line
//     breaks. Runs and markers are longer than that read and its peek
//     (4096 + len(boundary) + 4 bytes), so a first read that reaches a run
//     ends in it, and the one that reaches its marker ends in that: both
//     parses peek at every byte of the same stretch before it and only
//     after line breaks from its end on. (With a short marker a first read
//     reached past it: a "--" + boundary mid-line, or the end of a part
//     not closed, was seen in the copy and not in the mail.) To be sure of
//     the line breaks, every "--" + boundary in the copy must also start a
//     line.
//   - enmime's base64 cleaner drops line breaks and '=' without a word and
//     hands the rest to a RawStdEncoding decoder: the bytes are those of
//     base64.RawStdEncoding.Decode of the run without its final '='. It
//     reads no content of a part that is not text (no charset detection);
//     a text part (or one without a type, which enmime takes as text) never
//     gets a run's bytes. A part whose content is the token had no other
//     base64 character in it (the token is random), so its content in the
//     mail is the run's bytes, with the same cleaner warnings.

// markerLen is the least length of a marker, and so of a run: enmime's
// first read of a part (4096) and its longest peek for a boundary of up to
// 152 characters (RFC 2046 allows 70).
const markerLen = 4096 + 160

// minRunLen is the shortest base64 body readRuns takes out of enmime's
// hands: shorter ones cost enmime little more than their marker.
const minRunLen = 8192

// maxRuns bounds the runs of one mail; the others go through enmime.
const maxRuns = 64

// tokenLen is the length of a run's token, 152 base64 characters.
const tokenLen = 114

// maxHead is how far back from a body readRuns looks for its headers.
const maxHead = 2048

// A run is raw[start:end], whole lines of base64, and what it decodes to.
type run struct {
	start, end int
	data       []byte
}

// fastPaths says which shortcuts extract takes; the zero value is enmime's
// full parse for every mail.
type fastPaths struct {
	plain   bool // readPlain for mails without Content-* headers
	runMin  int  // readRuns for base64 runs of at least this length; 0: off
	anyPart bool // readRuns without looking at the part's headers (tests)
}

// fast is what Extract takes.
var fast = fastPaths{plain: true, runMin: minRunLen}

// readRuns parses raw by the marker copy described above; ok is false when
// raw has no run or the result is not certain to be the full parse's, and
// br is then spent.
func readRuns(raw []byte, br *bufio.Reader, fp fastPaths) (e *enmime.Envelope, ok bool) {
	runs := findRuns(raw, fp.runMin, fp.anyPart)
	if len(runs) == 0 {
		return nil, false
	}
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, false
	}
	cp, shortest := withMarkers(raw, runs, &key)
	br.Reset(bytes.NewReader(cp))
	e, err := parser.ReadEnvelope(br)
	if err != nil {
		return nil, false
	}
	parts := make([]*enmime.Part, len(runs))
	if !matchTokens(e, cp, &key, parts, shortest) {
		return nil, false
	}
	for i, p := range parts {
		p.Content = runs[i].data // decoded afresh: nothing refers to raw
	}
	return e, true
}

// findRuns returns the bodies in raw that are runs of at least min bytes,
// read from the line after a blank line to the line before the next one
// that starts with '-' (a boundary), or to the end. Unless anyPart, the
// headers before must name base64 and no text type; that only saves
// decoding what enmime would not hand over anyway. Each stretch of raw is
// looked at once or twice.
func findRuns(raw []byte, min int, anyPart bool) []run {
	var runs []run
	for i := 0; i < len(raw) && len(runs) < maxRuns; {
		next := len(raw) // the next line that starts with '-'
		if k := bytes.Index(raw[i+1:], []byte("\n-")); k >= 0 {
			next = i + 1 + k + 1
		}
		s := bodyStart(raw[:next], i)
		if s >= 0 && next-s >= max(min, markerLen) && (anyPart || saysBinaryBase64(raw[max(i, s-maxHead):s])) {
			if r, ok := decodeRun(raw, s, next); ok {
				runs = append(runs, r)
			}
		}
		i = next
	}
	return runs
}

// bodyStart is the index just after the first empty line in b that starts
// at or after the line start i, within maxHead bytes of it; or -1.
func bodyStart(b []byte, i int) int {
	if rest := b[i:]; len(rest) > 0 && rest[0] == '\n' {
		return i + 1
	} else if bytes.HasPrefix(rest, []byte("\r\n")) {
		return i + 2
	}
	head := b[i:min(len(b), i+maxHead)]
	best := -1
	if k := bytes.Index(head, []byte("\n\n")); k >= 0 {
		best = i + k + 2
	}
	if k := bytes.Index(head, []byte("\n\r\n")); k >= 0 && (best < 0 || i+k+3 < best) {
		best = i + k + 3
	}
	return best
}

// saysBinaryBase64 reports whether a header block names base64 and no text
// type: a cheap guess, enmime's parse decides.
func saysBinaryBase64(head []byte) bool {
	return containsFold(head, "base64") && !containsFold(head, "text/")
}

// containsFold is bytes.Contains ignoring ASCII case; lower is lower case.
func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		if b[i]|0x20 == lower[0] && bytes.EqualFold(b[i:i+len(lower)], []byte(lower)) {
			return true
		}
	}
	return false
}

// decodeRun decodes raw[start:end] when it is a run: whole lines of base64
// characters with '=' only at the end, and no CR but before an LF.
func decodeRun(raw []byte, start, end int) (run, bool) {
	if end > len(raw) || raw[end-1] != '\n' {
		// The input ends without a line break: the run is the whole lines.
		end = bytes.LastIndexByte(raw[:end], '\n') + 1
	}
	if end <= start {
		return run{}, false
	}
	lines := raw[start:end]
	for i := bytes.IndexByte(lines, '\r'); i >= 0; {
		if i+1 == len(lines) || lines[i+1] != '\n' {
			return run{}, false
		}
		j := bytes.IndexByte(lines[i+2:], '\r')
		if j < 0 {
			break
		}
		i += 2 + j
	}
	src := bytes.TrimRight(lines, "=\r\n")
	n := len(src) - bytes.Count(src, []byte{'\n'}) - bytes.Count(src, []byte{'\r'})
	if end-start < markerLen || n < 4 {
		return run{}, false
	}
	// RawStdEncoding takes no '=' and skips CR and LF, as enmime's cleaner
	// and decoder do; anything else that is not base64 fails here.
	data := make([]byte, base64.RawStdEncoding.DecodedLen(n))
	if m, err := base64.RawStdEncoding.Decode(data, src); err != nil || m != len(data) {
		return run{}, false
	}
	return run{start: start, end: end, data: data}, true
}

// token is run i's token under key: key, i, zeros.
func token(key *[16]byte, i int) [tokenLen]byte {
	var t [tokenLen]byte
	copy(t[:], key[:])
	binary.BigEndian.PutUint32(t[16:], uint32(i))
	return t
}

// withMarkers returns raw with each run replaced by its marker, and the
// length of the shortest run or marker.
func withMarkers(raw []byte, runs []run, key *[16]byte) (cp []byte, shortest int) {
	size := len(raw)
	for _, r := range runs {
		size += markerLen + len(padLine) + 2 - (r.end - r.start)
	}
	cp = make([]byte, 0, size)
	shortest = len(raw)
	at := 0
	for i, r := range runs {
		cp = append(cp, raw[at:r.start]...)
		nl := "\n"
		if raw[r.end-2] == '\r' {
			nl = "\r\n" // the run's own line break
		}
		start := len(cp)
		t := token(key, i)
		cp = append(base64.StdEncoding.AppendEncode(cp, t[:]), nl...)
		for len(cp)-start < markerLen {
			cp = append(append(cp, padLine...), nl...)
		}
		// The last line as long as the run's: when the run ends a part
		// that holds a multipart not closed, its line break is the
		// delimiter's, and the inner boundary reader's last peek is from
		// the start of that line.
		body := raw[r.start : r.end-len(nl)]
		last := len(body) - 1 - bytes.LastIndexByte(body, '\n')
		for ; last > len(padLine); last -= len(padLine) {
			cp = append(cp, padLine...)
		}
		cp = append(append(cp, padLine[:last]...), nl...)
		shortest = min(shortest, len(cp)-start, r.end-r.start)
		at = r.end
	}
	return append(cp, raw[at:]...), shortest
}

// padLine fills a marker: enmime's base64 cleaner drops '=' silently.
const padLine = "============================================================================"

// matchTokens checks that enmime's parse of cp is the full parse's but for
// the runs' contents, and fills parts[i] with the part whose content is run
// i's token.
func matchTokens(e *enmime.Envelope, cp []byte, key *[16]byte, parts []*enmime.Part, shortest int) bool {
	markerHead := base64.StdEncoding.EncodeToString(key[:15])
	if strings.Contains(e.Text, string(key[:])) || strings.Contains(e.HTML, string(key[:])) ||
		strings.Contains(e.Text, markerHead) || strings.Contains(e.HTML, markerHead) {
		return false
	}
	for _, pe := range e.Errors {
		if strings.Contains(pe.Detail, markerHead) {
			return false
		}
	}
	var boundaries []string
	ok := true
	var walk func(p *enmime.Part)
	walk = func(p *enmime.Part) {
		for ; p != nil && ok; p = p.NextSibling {
			if p.Boundary != "" && !slices.Contains(boundaries, p.Boundary) {
				boundaries = append(boundaries, p.Boundary)
			}
			if i := tokenIndex(p.Content, key, len(parts)); i >= 0 {
				if parts[i] != nil || !binaryLeaf(e, p) {
					ok = false
					return
				}
				parts[i] = p
			} else if bytes.Contains(p.Content, key[:]) {
				ok = false
				return
			}
			walk(p.FirstChild)
		}
	}
	walk(e.Root)
	if !ok || slices.Contains(parts, nil) || len(boundaries) > 16 {
		return false
	}
	for _, b := range boundaries {
		if strings.ContainsAny(b, "\r\n") || 4096+len(b)+8 > shortest {
			return false
		}
		delim := []byte("--" + b)
		for i := 0; ; i++ {
			k := bytes.Index(cp[i:], delim)
			if k < 0 {
				break
			}
			if i += k; i > 0 && cp[i-1] != '\n' {
				return false
			}
		}
	}
	return true
}

// tokenIndex is i when content is run i's token under key (i < n), else -1.
func tokenIndex(content []byte, key *[16]byte, n int) int {
	if len(content) != tokenLen || !bytes.Equal(content[:16], key[:]) {
		return -1
	}
	i := binary.BigEndian.Uint32(content[16:])
	if i >= uint32(n) || token(key, int(i)) != [tokenLen]byte(content) {
		return -1
	}
	return int(i)
}

// binaryLeaf reports whether p is a part whose content enmime uses for
// nothing but the part itself: typed, not text (no charset detection or
// conversion, never Text or HTML), not multipart, and, when it is the whole
// message, filed as an attachment or inline.
func binaryLeaf(e *enmime.Envelope, p *enmime.Part) bool {
	ct := strings.ToLower(p.ContentType)
	if ct == "" || strings.HasPrefix(ct, "text/") || strings.HasPrefix(ct, "multipart/") ||
		p.FirstChild != nil || p.TextContent() {
		return false
	}
	return p != e.Root || slices.Contains(e.Attachments, p) || slices.Contains(e.Inlines, p)
}
