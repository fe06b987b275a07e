package classify

import (
	"regexp/syntax"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Most templates do not match most mail, and a regular expression without
// a literal prefix costs per byte of the body. So each expression is given,
// when one can be derived from it, the set of literal strings one of which
// every match must contain; a field that contains none of them is
// rejected with a substring search before the expression runs. The check
// is on lower-cased ASCII, so it only ever says "maybe" for a match, never
// "no" to one.

// minLiteral is the shortest literal worth a search: single letters are
// in every mail.
const minLiteral = 3

// requiredLiterals returns lower-case ASCII strings one of which every
// match of expr contains, or nil when it cannot tell.
func requiredLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	return literalsOf(re)
}

// literalsOf is requiredLiterals of a parsed expression.
func literalsOf(re *syntax.Regexp) []string {
	set, ok := literals(re.Simplify())
	if !ok || len(set) == 0 {
		return nil
	}
	for _, l := range set {
		if len(l) < minLiteral {
			return nil
		}
	}
	return set
}

// literals is requiredLiterals for one node: ok false means "no set".
func literals(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		var b strings.Builder
		for _, r := range re.Rune {
			switch {
			case r >= 'A' && r <= 'Z':
				r += 'a' - 'A'
			case r >= utf8.RuneSelf && unicode.SimpleFold(r) != r:
				return nil, false // folding beyond ASCII: no shortcut
			}
			b.WriteRune(r)
		}
		return []string{b.String()}, true
	case syntax.OpCapture, syntax.OpPlus:
		return literals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literals(re.Sub[0])
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			l, ok := literals(sub)
			if !ok {
				return nil, false
			}
			out = append(out, l...)
		}
		return out, true
	case syntax.OpConcat:
		// Any one part's set will do; take the one whose shortest literal
		// is longest (the most selective search). Runs of parts that match
		// exact strings are joined first: i(?:nput port|/o) gives
		// {input port, i/o}.
		var best []string
		bestLen := 0
		consider := func(l []string) {
			if m := shortest(l); l != nil && m > bestLen {
				best, bestLen = l, m
			}
		}
		var run []string
		for _, sub := range re.Sub {
			if e, ok := exact(sub); ok {
				if run = cross(run, e); run == nil {
					run = e
				}
				consider(run)
				continue
			}
			run = nil
			if l, ok := literals(sub); ok {
				consider(l)
			}
		}
		return best, best != nil
	}
	return nil, false
}

// maxExact bounds the strings a cross product of exact parts may hold.
const maxExact = 32

// exact returns the lower-cased strings re matches, when re matches only
// a few fixed strings.
func exact(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return literals(re)
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			e, ok := exact(sub)
			if !ok || len(out)+len(e) > maxExact {
				return nil, false
			}
			out = append(out, e...)
		}
		return out, true
	case syntax.OpConcat:
		var out []string
		for _, sub := range re.Sub {
			e, ok := exact(sub)
			if !ok {
				return nil, false
			}
			if out = cross(out, e); out == nil {
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}

// cross is every a followed by every b (b alone when a is empty), or nil
// when that is more than maxExact strings.
func cross(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	if len(a)*len(b) > maxExact {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

func shortest(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

// lowerASCII lower-cases s for the literal check: ASCII letters, and the
// two non-ASCII runes that (?i) folds onto ASCII ones (KELVIN SIGN onto k,
// LATIN SMALL LETTER LONG S onto s). Other bytes are kept as they are.
func lowerASCII(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' || c == 0xE2 || c == 0xC5 {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, i, len(s))
	copy(b, s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == 0xE2 && strings.HasPrefix(s[i:], "\u212A"):
			c, i = 'k', i+2
		case c == 0xC5 && strings.HasPrefix(s[i:], "\u017F"):
			c, i = 's', i+1
		}
		b = append(b, c)
	}
	return string(b)
}

// containsAny reports whether s contains one of set. g, when not nil, is
// s's gramSet: a literal one of whose 3-byte sequences s lacks is passed
// over without searching s.
func containsAny(s string, set []string, g *gramSet) bool {
	for _, l := range set {
		if g != nil && !g.mayContain(l) {
			continue
		}
		if strings.Contains(s, l) {
			return true
		}
	}
	return false
}

// A long field (a 4 KiB body) made every literal a search through all of
// it: with a hundred templates, most of the CPU time the classifier took.
// A gramSet is the set of 3-byte sequences such a field holds, hashed into
// 2^16 bits, built in one pass; a literal is searched for only if all of
// its 3-byte sequences are in the set (every literal has at least
// minLiteral bytes). A collision only lets a search through, so the
// prefilter answers as before, sooner.
const (
	gramBits = 1 << 16
	// gramMin is the shortest field worth a gramSet.
	gramMin = 256
)

type gramSet [gramBits / 64]uint64

var gramPool = sync.Pool{New: func() any { return new(gramSet) }}

func gramOf(a, b, c byte) uint32 {
	return (uint32(a)<<16 | uint32(b)<<8 | uint32(c)) * 0x9E3779B1 >> 16
}

// newGramSet returns the gramSet of s, from the pool: give it back with
// putGramSet.
func newGramSet(s string) *gramSet {
	g := gramPool.Get().(*gramSet)
	for i := 0; i+3 <= len(s); i++ {
		h := gramOf(s[i], s[i+1], s[i+2])
		g[h>>6] |= 1 << (h & 63)
	}
	return g
}

func putGramSet(g *gramSet) {
	clear(g[:])
	gramPool.Put(g)
}

// mayContain is false when s, the string of g, cannot contain lit.
func (g *gramSet) mayContain(lit string) bool {
	for i := 0; i+3 <= len(lit); i++ {
		h := gramOf(lit[i], lit[i+1], lit[i+2])
		if g[h>>6]&(1<<(h&63)) == 0 {
			return false
		}
	}
	return true
}
