package classify

import (
	"regexp/syntax"
	"slices"
	"strings"
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
func literalsOf(re *syntax.Regexp) []string { return simpleLiterals(re.Simplify()) }

// simpleLiterals is literalsOf of a simplified expression.
func simpleLiterals(re *syntax.Regexp) []string {
	set, ok := literals(re)
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

// literalSets returns sets of strings as requiredLiterals does, every one
// of which holds a string of every match: literalsOf's set, and those of
// the other parts of a concatenation, since a match holds a match of each
// part. EVENT TYPE:\s*Video (?:Signal )?Loss needs "event type:",
// "video " and "loss": a Hikvision motion mail has the first only, and
// the expression is not run on it.
//
// re is simplified (syntax.Regexp.Simplify), as for prefixLiterals: the
// expressions of the built-in templates are simplified once, at start.
func literalSets(re *syntax.Regexp) [][]string {
	var out [][]string
	add := func(set []string) {
		if len(set) == 0 || shortest(set) < minLiteral {
			return
		}
		for _, o := range out {
			if slices.Equal(o, set) {
				return
			}
		}
		out = append(out, set)
	}
	add(simpleLiterals(re))
	var walk func(re *syntax.Regexp)
	walk = func(re *syntax.Regexp) {
		switch re.Op {
		case syntax.OpCapture, syntax.OpPlus:
			walk(re.Sub[0])
		case syntax.OpRepeat:
			if re.Min >= 1 {
				walk(re.Sub[0])
			}
		case syntax.OpLiteral, syntax.OpAlternate:
			if l, ok := literals(re); ok {
				add(l)
			}
		case syntax.OpConcat:
			// Runs of exact parts are joined as literals joins them.
			var run []string
			for _, sub := range re.Sub {
				if e, ok := exact(sub); ok {
					if joined := cross(run, e); joined != nil {
						run = joined
					} else {
						add(run)
						run = e
					}
					continue
				}
				add(run)
				run = nil
				walk(sub)
			}
			add(run)
		}
	}
	walk(re)
	return out
}

// prefixLiterals returns lower-case ASCII strings one of which every
// match of re starts with, or nil; back is true when re looks at the byte
// before (a \b first). A match cannot start before the first of them in a
// field, so the expression is run from there (a byte before, if back): a
// regular expression with (?i) is tried at every byte otherwise, and the
// Hikvision "EVENT TYPE:" is a third of the way into its body.
func prefixLiterals(re *syntax.Regexp) (set []string, back bool) {
	set, back, ok := prefixes(re)
	if !ok || shortest(set) < minLiteral {
		return nil, false
	}
	return set, back
}

func prefixes(re *syntax.Regexp) (set []string, back, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		set, ok = literals(re)
		return set, false, ok
	case syntax.OpCapture, syntax.OpPlus:
		return prefixes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return prefixes(re.Sub[0])
		}
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			p, b, ok := prefixes(sub)
			if !ok {
				return nil, false, false
			}
			set, back = append(set, p...), back || b
		}
		return set, back, true
	case syntax.OpConcat:
		// A part that may match nothing lets the match start with the
		// next one: (?:HP )?(?:LaserJet|…) starts with "hp " or
		// "laserjet". A word boundary looks one byte back.
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpWordBoundary || sub.Op == syntax.OpNoWordBoundary {
				back = true
				continue
			}
			optional := sub.Op == syntax.OpQuest || sub.Op == syntax.OpStar || sub.Op == syntax.OpRepeat && sub.Min == 0
			if optional {
				sub = sub.Sub[0]
			}
			p, b, ok := prefixes(sub)
			if !ok {
				return nil, false, false
			}
			set, back = append(set, p...), back || b
			if !optional {
				return set, back, true
			}
		}
	}
	return nil, false, false
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

// containsAny reports whether s contains one of set.
func containsAny(s string, set []string) bool {
	for _, l := range set {
		if strings.Contains(s, l) {
			return true
		}
	}
	return false
}

// containsAll reports whether s contains one string of each of sets.
func containsAll(s string, sets [][]string) bool {
	for _, set := range sets {
		if !containsAny(s, set) {
			return false
		}
	}
	return true
}
