package extract

import (
	"strings"
	"testing"
	"unicode"
)

// cleanTextReference is cleanText as it was before its ASCII fast path:
// the fast path must give the same string for every input.
func cleanTextReference(s string) string {
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

func FuzzCleanText(f *testing.F) {
	for _, seed := range []string{"", "plain text\n", "a\r\nb\rc\r\r\nd", "nul\x00 del\x7f tab\t", "caf\xc3\xa9\r\n\x85", "bad \xff utf8\r\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := cleanText(s), cleanTextReference(s); got != want {
			t.Fatalf("cleanText(%q) = %q, want %q", s, got, want)
		}
	})
}
