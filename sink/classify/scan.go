package classify

import (
	"encoding/binary"
	"regexp/syntax"
	"strings"
)

// Every template asks of a mail whether its subject, body or text holds
// some literals (prefilter.go), and there are a few hundred of them: asked
// one by one, each was a search through the body. A litIndex holds every
// literal of a classifier's templates and finds, in one pass over a
// field, all those the field contains; a template's prefilter is then a
// few bit tests.
type litIndex struct {
	lits []string // lower case, at least minLiteral bytes
	ids  map[string]int32
	// starts is the set of gramOf hashes of the literals' first three
	// bytes, a test for every byte of a field; slots finds the literals
	// starting with three given bytes (open addressing: a few hundred
	// literals start with fewer than 256 different ones), for the few
	// bytes starts lets through.
	starts [gramBits / 64]uint64
	slots  []gramSlot
	byGram []int32 // literal numbers, those of a slot together
}

// gramSlot is the literals byGram[from:to] that start with gram's three
// bytes; used is false for an empty slot.
type gramSlot struct {
	gram     uint32
	used     bool
	from, to int32
}

// gramBits is the size of starts in bits: a hash collision only costs a
// look in slots.
const gramBits = 1 << 16

func newLitIndex() *litIndex { return &litIndex{ids: map[string]int32{}} }

// clone is x with the same literals under the same numbers, to add more
// to: a classifier's templates are the built-in ones and the user's.
func (x *litIndex) clone() *litIndex {
	y := &litIndex{lits: append([]string(nil), x.lits...), ids: make(map[string]int32, len(x.ids))}
	for l, id := range x.ids {
		y.ids[l] = id
	}
	return y
}

// add returns the number of literal l (lower case, at least minLiteral
// bytes), adding it if new.
func (x *litIndex) add(l string) int32 {
	if id, ok := x.ids[l]; ok {
		return id
	}
	id := int32(len(x.lits))
	x.lits = append(x.lits, l)
	x.ids[l] = id
	return id
}

// addSets numbers the literals of sets (a matcher's prefilter) in x.
func (x *litIndex) addSets(sets [][]string) [][]int32 {
	out := make([][]int32, len(sets))
	for i, set := range sets {
		for _, l := range set {
			out[i] = append(out[i], x.add(l))
		}
	}
	return out
}

// build makes the lookup tables once every literal is added; x is
// read-only after.
func (x *litIndex) build() {
	clear(x.starts[:])
	grams := map[uint32][]int32{}
	for id, l := range x.lits {
		g := tri(l[0], l[1], l[2])
		grams[g] = append(grams[g], int32(id))
		h := gramHash(g)
		x.starts[h>>6] |= 1 << (h & 63)
	}
	n := 16
	for n < 2*len(grams) {
		n *= 2
	}
	x.slots = make([]gramSlot, n)
	x.byGram = x.byGram[:0]
	for g, ids := range grams {
		i := x.slot(g)
		x.slots[i] = gramSlot{gram: g, used: true, from: int32(len(x.byGram)), to: int32(len(x.byGram) + len(ids))}
		x.byGram = append(x.byGram, ids...)
	}
}

// slot is the index of gram's slot, or of the empty slot where it goes.
func (x *litIndex) slot(gram uint32) int {
	mask := len(x.slots) - 1
	i := int(gram*0x85EBCA6B>>16) & mask
	for x.slots[i].used && x.slots[i].gram != gram {
		i = (i + 1) & mask
	}
	return i
}

// tri is three bytes as one number; gramHash is its bit in starts.
func tri(a, b, c byte) uint32 { return uint32(a)<<16 | uint32(b)<<8 | uint32(c) }

func gramHash(g uint32) uint32 { return g * 0x9E3779B1 >> 16 }

// words is the length of a bit set of x's literals.
func (x *litIndex) words() int { return (len(x.lits) + 63) / 64 }

// scan calls hit with every literal of x that low (lower case, as
// lowerInto makes it) contains and where it starts; a literal found more
// than once is reported each time.
func (x *litIndex) scan(low []byte, hit func(id int32, at int)) {
	if len(low) < minLiteral {
		return
	}
	g := uint32(low[0])<<8 | uint32(low[1])
	for i := 2; i < len(low); i++ {
		g = (g<<8 | uint32(low[i])) & 0xFFFFFF
		if h := gramHash(g); x.starts[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		s := x.slots[x.slot(g)]
		if !s.used {
			continue
		}
		at := i - 2
		for _, id := range x.byGram[s.from:s.to] {
			if l := x.lits[id]; len(low)-at >= len(l) && string(low[at:at+len(l)]) == l {
				hit(id, at)
			}
		}
	}
}

// bits is a set of literal numbers.
type bits []uint64

func (b bits) set(id int32)      { b[id>>6] |= 1 << (id & 63) }
func (b bits) has(id int32) bool { return b[id>>6]&(1<<(id&63)) != 0 }

// all reports whether b holds one literal of each of sets.
func (b bits) all(sets [][]int32) bool {
next:
	for _, set := range sets {
		for _, id := range set {
			if b.has(id) {
				continue next
			}
		}
		return false
	}
	return true
}

// lowerInto appends lowerASCII(s) to dst: a copy lower-cased in place,
// eight ASCII bytes at a time, and lowerASCII itself only for the rare
// field with a rune it folds.
func lowerInto(dst []byte, s string) []byte {
	n := len(dst)
	dst = append(dst, s...)
	d := dst[n:]
	special := false
	for len(d) >= 8 {
		w := binary.LittleEndian.Uint64(d)
		if w&highBits != 0 {
			special = lowerBytes(d[:8]) || special
		} else {
			// A byte below 0x80 plus 0x3F has its high bit set when it
			// is 'A' or above, plus 0x25 when above 'Z'; neither sum
			// carries into the next byte.
			upper := (w + 0x3F*lowBits) &^ (w + 0x25*lowBits) & highBits
			binary.LittleEndian.PutUint64(d, w|upper>>2)
		}
		d = d[8:]
	}
	special = lowerBytes(d) || special
	if special && (strings.Contains(s, "\u212A") || strings.Contains(s, "\u017F")) {
		return append(dst[:n], lowerASCII(s)...)
	}
	return dst
}

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// lowerBytes lower-cases the ASCII letters of d, and reports whether it
// holds a first byte of the runes lowerASCII folds.
func lowerBytes(d []byte) (special bool) {
	for i, c := range d {
		switch {
		case c >= 'A' && c <= 'Z':
			d[i] = c + 'a' - 'A'
		case c == 0xE2 || c == 0xC5:
			special = true
		}
	}
	return special
}

// number works out the prefilter of t's expressions (literalSets,
// prefixLiterals) and numbers in x the literals of those on fields of one
// value. t is not in use yet.
func (x *litIndex) number(t *template) {
	each := func(cm compiledMatch) {
		for i := range cm {
			mt := &cm[i]
			parsed, err := syntax.Parse(mt.expr, syntax.Perl)
			if err != nil {
				continue // compile checked it
			}
			simple := parsed.Simplify()
			mt.need = literalSets(simple)
			if mt.prefix, mt.back = prefixLiterals(simple); mt.prefix != nil {
				mt.need = append(mt.need, mt.prefix)
			}
			if mt.field != fieldSender && mt.field != fieldRecipient && mt.need != nil {
				mt.ids = x.addSets(mt.need)
				if mt.prefix != nil {
					mt.pre = x.addSets([][]string{mt.prefix})[0]
				}
			}
		}
	}
	each(t.match)
	for _, r := range t.rules {
		each(r.match)
	}
	for _, cm := range t.extract {
		each(cm)
	}
}
