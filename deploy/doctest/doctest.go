// Package doctest holds README's figures to what the tests measure: a test
// reads the bound it enforces out of README's own sentence, so the two
// cannot drift apart silently.
package doctest

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Numbers returns the numbers pattern's groups capture in the file at path
// (thousands separators allowed), failing the test when the pattern is not
// there: a README edit that drops the figure breaks its test, not the check.
func Numbers(t testing.TB, path, pattern string) []float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// README wraps lines: match across a line break as across a space.
	text := regexp.MustCompile(`\s+`).ReplaceAllString(string(data), " ")
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s no longer says %q: update the test with the README", path, pattern)
	}
	out := make([]float64, 0, len(m)-1)
	for _, g := range m[1:] {
		v, err := strconv.ParseFloat(strings.ReplaceAll(g, ",", ""), 64)
		if err != nil {
			t.Fatalf("%s: %q in %q is not a number", path, g, m[0])
		}
		out = append(out, v)
	}
	return out
}

// Range returns the two numbers of a "low–high" figure.
func Range(t testing.TB, path, pattern string) (low, high float64) {
	t.Helper()
	n := Numbers(t, path, pattern)
	if len(n) != 2 || n[0] > n[1] {
		t.Fatalf("%s: %q: want a range low–high, got %v", path, pattern, n)
	}
	return n[0], n[1]
}
