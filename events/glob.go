package events

import "strings"

// Glob grants are checked at write time by a conservative rule: a pattern
// is accepted only where it provably matches nothing the parent cannot use.
// CoversPattern decides it for one grant of the parent's chain; the
// projector asks it of every grant from the root down to the parent.

// IsPattern reports whether an include or exclude entry is a glob (holds
// one of the characters path.Match gives a meaning to), not a member name.
func IsPattern(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// GlobBudget is the number of steps CoversPattern may take in all for one
// grant (pass a pointer to a counter starting there): past it, it answers
// false, refusing what it could not prove in time.
const GlobBudget = 1 << 16

// CoversPattern reports whether every member name the glob p matches,
// except those the patterns minus exclude (the excludes of the grant p is
// an include of), is provably allowed by the capability c: an include of c
// covers p, and every exclude of c either matches nothing p matches or is
// covered by an entry of minus. It answers false whenever it cannot tell,
// so a caller refuses a grant it cannot prove within the parent's limits.
// An include q of c covers p when:
//
//   - q is "*" (Allows takes "*" as every member), or
//   - q equals p, or
//   - q is a literal prefix L followed by "*", p begins with the literal
//     characters of L, and p matches no name holding '/' (path.Match's
//     '*' never matches a '/').
//
// An exclude x matches nothing p matches when the two patterns are
// disjoint: no string is matched by both, decided exactly on the patterns'
// token sequences (an automaton over pairs of positions), for ASCII
// patterns; a pattern with a non-ASCII byte, a malformed pattern or a
// search beyond *budget steps counts as overlapping. An entry y of minus
// covers x when y equals x or y is a literal prefix followed by "*" as
// above (excludes are matched with path.Match alone, so a "*" there covers
// only patterns that match no '/'). Unset Include and Exclude take the
// defaults of Normalized.
func (c Capability) CoversPattern(p string, minus []string, budget *int) bool {
	pt, ok := parseGlob(p)
	if !ok {
		return false
	}
	include := c.Include
	if len(include) == 0 {
		include = []string{"*"}
	}
	covered := false
	for _, q := range include {
		if q == "*" || q == p || prefixStarCovers(q, pt) {
			covered = true
			break
		}
	}
	if !covered {
		return false
	}
	exclude := c.Exclude
	if exclude == nil {
		exclude = []string{"_*"}
	}
next:
	for _, x := range exclude {
		xt, ok := parseGlob(x)
		if !ok {
			return false
		}
		for _, y := range minus {
			if y == x || prefixStarCovers(y, xt) {
				continue next
			}
		}
		if !disjoint(pt, xt, budget) {
			return false
		}
	}
	return true
}

// prefixStarCovers reports whether q = L + "*" (L literal) covers the
// pattern whose tokens are pt.
func prefixStarCovers(q string, pt []globToken) bool {
	lit, ok := strings.CutSuffix(q, "*")
	if !ok || IsPattern(lit) || len(pt) < len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		t := pt[i]
		if t.star || !t.set.only(lit[i]) {
			return false
		}
	}
	for _, t := range pt {
		if t.set.has('/') {
			return false
		}
	}
	return true
}

// byteSet is a set of characters: the ASCII ones bit by bit, every
// non-ASCII rune at once (an ASCII pattern treats them all alike).
type byteSet struct {
	lo, hi uint64 // bits 0..63 and 64..127
	other  bool   // every rune >= 0x80
}

func (s *byteSet) add(c byte) {
	if c < 64 {
		s.lo |= 1 << c
	} else {
		s.hi |= 1 << (c - 64)
	}
}

func (s byteSet) has(c byte) bool {
	if c < 64 {
		return s.lo&(1<<c) != 0
	}
	return s.hi&(1<<(c-64)) != 0
}

// only reports whether the set is exactly {c}.
func (s byteSet) only(c byte) bool {
	var one byteSet
	one.add(c)
	return s == one
}

func (s byteSet) meets(t byteSet) bool {
	return s.lo&t.lo != 0 || s.hi&t.hi != 0 || s.other && t.other
}

// anyButSlash is what '?' and each character of '*' match.
var anyButSlash = func() byteSet {
	s := byteSet{lo: ^uint64(0), hi: ^uint64(0), other: true}
	s.lo &^= 1 << '/'
	return s
}()

// globToken is one step of a pattern: a character from set, or (star) any
// number of them.
type globToken struct {
	set  byteSet
	star bool
}

// parseGlob splits an ASCII path.Match pattern into tokens; ok is false for
// a malformed pattern or one holding a non-ASCII byte.
func parseGlob(p string) (toks []globToken, ok bool) {
	for i := 0; i < len(p); {
		c := p[i]
		if c >= 0x80 {
			return nil, false
		}
		switch c {
		case '*':
			i++
			if len(toks) > 0 && toks[len(toks)-1].star {
				continue // "**" is "*"
			}
			toks = append(toks, globToken{set: anyButSlash, star: true})
		case '?':
			i++
			toks = append(toks, globToken{set: anyButSlash})
		case '\\':
			if i+1 >= len(p) || p[i+1] >= 0x80 {
				return nil, false
			}
			var s byteSet
			s.add(p[i+1])
			toks = append(toks, globToken{set: s})
			i += 2
		case '[':
			s, n, ok := parseClass(p[i+1:])
			if !ok {
				return nil, false
			}
			toks = append(toks, globToken{set: s})
			i += 1 + n
		default:
			var s byteSet
			s.add(c)
			toks = append(toks, globToken{set: s})
			i++
		}
	}
	return toks, true
}

// parseClass parses a character class after its '[' as path.Match does:
// an optional '^', then one or more ranges (lo or lo-hi, '\' escapes),
// then ']'. n is the number of bytes consumed, the ']' included.
func parseClass(p string) (s byteSet, n int, ok bool) {
	negated := false
	if n < len(p) && p[n] == '^' {
		negated = true
		n++
	}
	esc := func() (byte, bool) {
		if n >= len(p) || p[n] == '-' || p[n] == ']' {
			return 0, false
		}
		if p[n] == '\\' {
			n++
			if n >= len(p) {
				return 0, false
			}
		}
		c := p[n]
		n++
		return c, c < 0x80
	}
	ranges := 0
	for {
		if n < len(p) && p[n] == ']' && ranges > 0 {
			n++
			break
		}
		lo, ok := esc()
		if !ok {
			return s, 0, false
		}
		hi := lo
		if n < len(p) && p[n] == '-' {
			n++
			if hi, ok = esc(); !ok {
				return s, 0, false
			}
		}
		for c := int(lo); c <= int(hi); c++ {
			s.add(byte(c))
		}
		ranges++
	}
	if negated {
		s = byteSet{lo: ^s.lo, hi: ^s.hi, other: true}
	}
	return s, n, true
}

// disjoint reports whether no string is matched by both token sequences.
// It searches the pairs of positions reachable on a common input; false
// also when *budget runs out first.
func disjoint(a, b []globToken, budget *int) bool {
	w := len(b) + 1
	seen := make([]bool, (len(a)+1)*w)
	stack := []int{0}
	seen[0] = true
	push := func(i, j int) {
		if k := i*w + j; !seen[k] {
			seen[k] = true
			stack = append(stack, k)
		}
	}
	for len(stack) > 0 {
		if *budget--; *budget < 0 {
			return false
		}
		k := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i, j := k/w, k%w
		if i == len(a) && j == len(b) {
			return false // both patterns match the string read so far
		}
		if i < len(a) && a[i].star {
			push(i+1, j) // the star matches nothing more
		}
		if j < len(b) && b[j].star {
			push(i, j+1)
		}
		if i < len(a) && j < len(b) && a[i].set.meets(b[j].set) {
			ni, nj := i+1, j+1
			if a[i].star {
				ni = i
			}
			if b[j].star {
				nj = j
			}
			push(ni, nj)
		}
	}
	return true
}
