package extract

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// plainSeeds are mails readPlain takes, or nearly: broken header lines,
// 8-bit bytes, bare LF and CR, no blank line, a Content-* header in odd
// case, an encoded word, header-only mails.
var plainSeeds = []string{
	"From: a@b.lan\r\nTo: c@d.lan\r\nSubject: x\r\n\r\nbody\r\n",
	"From: a@b.lan\nSubject: x\n\nbody\n",
	"Subject: caf\xe9\r\n\r\nPanne d\xe9tect\xe9e \x81\x8d\r\n",
	"Subject: x\r\nbroken line\r\n: colon first\r\nBad Key: v\r\nKey : v\r\n\r\nb",
	"Subject: x\r\n continued\r\n\tmore\r\n\r\n",
	"cOnTeNt-TyPe: text/html\r\n\r\n<b>x</b>",
	"X-Content-Thing: 1\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n",
	"Content-Disposition: attachment; filename=a.txt\r\n\r\nabc",
	"Content-Type:\r\nSubject: empty type\r\n\r\nx",
	"Subject: =?utf-8?q?caf=C3=A9?= =?x-unknown?q?=E9?=\r\nFrom: =?utf-8?b?w6k=?= <a@b>\r\nTo: bad,,<x@y\r\n\r\nt",
	"Subject: only a header",
	"no header at all\r\njust text",
	"\r\nbody after an empty header",
	"Subject: nul \x00 and cr \r in it\r\n\r\n\x00\x7f\r\r\n",
	"MIME-Version: 1.0\r\nSubject: mime without type\r\n\r\nx",
}

// FuzzPlainPath: for any input, the alert readPlain's path gives is the one
// enmime's full parse gives, byte for byte in JSON (id aside), with the
// same error and the same snapshot bytes.
func FuzzPlainPath(f *testing.F) {
	for _, s := range plainSeeds {
		f.Add([]byte(s))
	}
	// Past enmime's 4 KiB buffer: a header line longer than it, a header
	// ending across it, 8-bit bytes after it.
	f.Add([]byte("Subject: " + strings.Repeat("x", 5000) + "\r\nFrom: a@b\r\n\r\nbody\r\n"))
	f.Add([]byte("X-Pad: " + strings.Repeat("y", 4080) + "\r\nSubject: s\r\n\r\nbody"))
	f.Add([]byte("Subject: s\r\n\r\n" + strings.Repeat("0123456789abcde\r\n", 300) + "caf\xe9\r\n"))
	for _, file := range sampleFiles(f) {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, errFast := extract(raw, testEnvelope, fastPaths{plain: true})
		full, errFull := extract(raw, testEnvelope, fastPaths{})
		if !errors.Is(errFast, errFull) && (errFast == nil || errFull == nil || errFast.Error() != errFull.Error()) {
			t.Fatalf("error %v, full parse %v", errFast, errFull)
		}
		if !plainTaken(raw) {
			// Both went through the full parse: the same code twice, and
			// not deterministic (see fullParseCanGive): nothing to compare.
			return
		}
		if g, w := alertJSON(t, fast), alertJSON(t, full); g != w && !fullParseCanGive(t, raw, fast) {
			t.Fatalf("alert differs from the full parse's\n--- plain path\n%s\n--- full parse\n%s", g, w)
		}
	})
}

// fullParseCanGive reports whether enmime's full parse of raw gives the
// alert fast gave (parse errors in any order) in one of many tries. Its charset detection
// (gogs/chardet) runs a goroutine per charset and breaks ties in the
// order they finish, so a mail with 8-bit bytes and no declared charset
// can come out as, say, Windows-1252 in most runs and ISO-8859-2 in some
// (seen here: 21 runs in 300). A fast path's alert must be one of them.
func fullParseCanGive(t *testing.T, raw []byte, fast *sink.Alert) bool {
	t.Helper()
	f := *fast
	f.ParseErrors = slices.Sorted(slices.Values(fast.ParseErrors))
	want := alertJSON(t, &f)
	for range 500 {
		full, _ := extract(raw, testEnvelope, fastPaths{})
		slices.Sort(full.ParseErrors)
		if alertJSON(t, full) == want {
			return true
		}
	}
	return false
}

// TestPlainPathTaken: the mails readPlain is for do take it, and the others
// do not (so FuzzPlainPath compares something).
func TestPlainPathTaken(t *testing.T) {
	for raw, want := range map[string]bool{
		plainSeeds[0]:                       true,
		plainSeeds[2]:                       true,
		plainSeeds[3]:                       true,
		plainSeeds[5]:                       false,
		plainSeeds[6]:                       false,
		plainSeeds[7]:                       false,
		plainSeeds[8]:                       false, // mayBePlain looks at names only
		"Content-Type: text/plain\r\n\r\nx": false,
	} {
		if got := plainTaken([]byte(raw)); got != want {
			t.Errorf("%q: plain path %v, want %v", raw, got, want)
		}
	}
}

// plainTaken reports whether Extract reads raw by readPlain.
func plainTaken(raw []byte) bool {
	if !mayBePlain(raw) {
		return false
	}
	br := readers.Get().(*bufio.Reader)
	defer readers.Put(br)
	rd := bytes.NewReader(raw)
	br.Reset(rd)
	_, ok := readPlain(raw, br, rd)
	return ok
}

func alertJSON(t *testing.T, a *sink.Alert) string {
	t.Helper()
	c := *a
	c.ID = ""
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, at := range a.Attachments {
		data = append(data, at.Data...)
	}
	return string(b) + "\ndata: " + string(data)
}
