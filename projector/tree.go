package projector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/agentreg/agentreg/events"
)

// The child index: for each parent path ("" is the root) the paths of its
// direct children, in order. Apply keeps it (agents are only ever added:
// retirement keeps them), Unmarshal and Clone rebuild or copy it, and it is
// not part of the canonical encoding. Children, Descendants, Walk and the
// revoke and retire cascades read it, so their cost follows the subtree or
// the page they return, not the size of the root.
//
// Order: siblings are ordered by segment (byte order). Since siblings share
// their parent's prefix, that is also the byte order of their paths.

// tree is the index of a registry.
type tree struct {
	kids map[string]*childSet // parent path -> its direct children
	// indexed is the number of agents in kids. When it differs from
	// len(Agents) (the map was changed other than by Apply), the index is
	// rebuilt before it is read.
	indexed int
}

// chunkMax is the most paths one chunk of a childSet holds: an insertion
// moves at most this many, whatever the number of siblings.
const chunkMax = 128

// childSet is an ordered set of sibling paths: sorted chunks, each
// non-empty and every path of a chunk before every path of the next.
type childSet struct {
	chunks [][]string
	n      int
}

func (s *childSet) last() string {
	c := s.chunks[len(s.chunks)-1]
	return c[len(c)-1]
}

// add inserts p (a no-op if present). Appending after the last path, what a
// rebuild and increasing names do, touches only the last chunk.
func (s *childSet) add(p string) {
	if len(s.chunks) == 0 {
		s.chunks = [][]string{append(make([]string, 0, 4), p)}
		s.n = 1
		return
	}
	if p > s.last() {
		ci := len(s.chunks) - 1
		if len(s.chunks[ci]) < chunkMax {
			s.chunks[ci] = append(s.chunks[ci], p)
		} else {
			s.chunks = append(s.chunks, append(make([]string, 0, 4), p))
		}
		s.n++
		return
	}
	// The first chunk whose last path is >= p exists, since p <= s.last().
	ci := sort.Search(len(s.chunks), func(i int) bool {
		c := s.chunks[i]
		return c[len(c)-1] >= p
	})
	c := s.chunks[ci]
	i, found := slices.BinarySearch(c, p)
	if found {
		return
	}
	c = slices.Insert(c, i, p)
	s.n++
	if len(c) <= chunkMax {
		s.chunks[ci] = c
		return
	}
	h := len(c) / 2
	right := append(make([]string, 0, chunkMax), c[h:]...)
	s.chunks[ci] = c[:h]
	s.chunks = slices.Insert(s.chunks, ci+1, right)
}

// all returns the paths in order, nil if none.
func (s *childSet) all() []string {
	if s == nil || s.n == 0 {
		return nil
	}
	out := make([]string, 0, s.n)
	for _, c := range s.chunks {
		out = append(out, c...)
	}
	return out
}

// clone returns a copy that shares no chunk with s.
func (s *childSet) clone() *childSet {
	c := &childSet{chunks: make([][]string, len(s.chunks)), n: s.n}
	for i, ch := range s.chunks {
		c.chunks[i] = slices.Clone(ch)
	}
	return c
}

// cursor iterates over a childSet from a position.
type cursor struct {
	s      *childSet
	ci, i  int
	closed bool
}

// first returns a cursor at the first path of s (s may be nil).
func (s *childSet) first() cursor { return cursor{s: s, closed: s == nil} }

// after returns a cursor at the first path of s greater than p.
func (s *childSet) after(p string) cursor {
	if s == nil {
		return cursor{closed: true}
	}
	ci := sort.Search(len(s.chunks), func(i int) bool {
		c := s.chunks[i]
		return c[len(c)-1] > p
	})
	if ci == len(s.chunks) {
		return cursor{closed: true}
	}
	c := s.chunks[ci]
	return cursor{s: s, ci: ci, i: sort.Search(len(c), func(j int) bool { return c[j] > p })}
}

func (c *cursor) next() (string, bool) {
	if c.closed {
		return "", false
	}
	for c.ci < len(c.s.chunks) {
		ch := c.s.chunks[c.ci]
		if c.i < len(ch) {
			p := ch[c.i]
			c.i++
			return p, true
		}
		c.ci, c.i = c.ci+1, 0
	}
	c.closed = true
	return "", false
}

// index returns the child index, rebuilding it if it does not cover Agents.
func (r *Registry) index() map[string]*childSet {
	if r.tree.kids == nil || r.tree.indexed != len(r.Agents) {
		r.rebuildIndex()
	}
	return r.tree.kids
}

// rebuildIndex builds the child index from Agents: O(n log n), every
// insertion an append since the paths come sorted.
func (r *Registry) rebuildIndex() {
	kids := map[string]*childSet{}
	for _, p := range sortedKeys(r.Agents) {
		parent := events.Parent(p)
		s := kids[parent]
		if s == nil {
			s = &childSet{}
			kids[parent] = s
		}
		s.add(p)
	}
	r.tree = tree{kids: kids, indexed: len(r.Agents)}
}

// addAgent stores a new agent and indexes it.
func (r *Registry) addAgent(a *Agent) {
	kids := r.index()
	if _, ok := r.Agents[a.Path]; ok {
		r.Agents[a.Path] = a // the same path: the tree does not change
		return
	}
	r.Agents[a.Path] = a
	parent := events.Parent(a.Path)
	s := kids[parent]
	if s == nil {
		s = &childSet{}
		kids[parent] = s
	}
	s.add(a.Path)
	r.tree.indexed++
}

// Children returns the paths of an agent's direct children ("" is the
// root), sorted; nil if it has none. Its cost follows the number of
// children.
func (r *Registry) Children(path string) []string {
	return r.index()[path].all()
}

// Descendants returns every path strictly below path ("" is the root),
// sorted (byte order of the paths, as Paths; Walk's order differs); nil if
// there are none. Its cost follows the size of the subtree.
func (r *Registry) Descendants(path string) []string {
	var out []string
	r.below(path, func(p string) { out = append(out, p) })
	slices.Sort(out)
	return out
}

// visitBelow calls fn for every agent strictly below path, in Walk order.
func (r *Registry) visitBelow(path string, fn func(*Agent)) {
	r.below(path, func(p string) {
		if a := r.Agents[p]; a != nil {
			fn(a)
		}
	})
}

// below calls fn for every path strictly below path, depth first with
// siblings in order (Walk's order).
func (r *Registry) below(path string, fn func(string)) {
	kids := r.index()
	stack := []cursor{kids[path].first()}
	for len(stack) > 0 {
		p, ok := stack[len(stack)-1].next()
		if !ok {
			stack = stack[:len(stack)-1]
			continue
		}
		fn(p)
		if s := kids[p]; s != nil {
			stack = append(stack, s.first())
		}
	}
}

// Walk pages through the agents strictly below under ("" is the whole
// root) in depth-first pre-order, siblings ordered by segment: an agent
// comes before its children, and its whole subtree before its next sibling
// (so "a/b", "a/b/c", "a/b-x": not the byte order of Paths and
// Descendants, where '-' sorts before '/').
//
// It returns the paths that follow after in that order ("" starts from the
// first), at most limit of them (limit <= 0: all), and whether more follow.
// after need not exist: the walk resumes where it would stand in the order.
// An after that is neither "" nor strictly below under gives nothing. The
// next page starts after the last path returned. Its cost follows the page
// plus, to find where after stands, a binary search among the siblings at
// each level of after's path; never the size of the root.
func (r *Registry) Walk(under, after string, limit int) (paths []string, more bool) {
	kids := r.index()
	var stack []cursor
	if after == "" {
		stack = append(stack, kids[under].first())
	} else {
		if !events.IsDescendant(after, under) {
			return nil, false
		}
		rel := after
		if under != "" {
			rel = after[len(under)+1:]
		}
		// At each level of after's path, the siblings that follow it;
		// deepest last, then after's own children.
		cur := under
		for seg := range strings.SplitSeq(rel, "/") {
			next := events.Join(cur, seg)
			stack = append(stack, kids[cur].after(next))
			cur = next
		}
		stack = append(stack, kids[after].first())
	}
	for len(stack) > 0 {
		p, ok := stack[len(stack)-1].next()
		if !ok {
			stack = stack[:len(stack)-1]
			continue
		}
		if limit > 0 && len(paths) == limit {
			return paths, true
		}
		paths = append(paths, p)
		if s := kids[p]; s != nil {
			stack = append(stack, s.first())
		}
	}
	return paths, false
}

// ErrInvalidCursor is Page's error for an after that is neither "", path,
// nor below path: a stale or wrong cursor.
var ErrInvalidCursor = errors.New("list cursor outside the listed path")

// Page is one page of a listing of the agent at path ("" the root's whole
// tree) and its subtree, in Walk's order: the first page (after "")
// starts with the agent at path itself when path is not "", and after
// equal to path resumes after it, at its first descendant. At most limit
// paths (limit >= 1); next is the cursor of the following page, "" after
// the last. The agent at path must exist (events.ErrNotFound).
func (r *Registry) Page(path, after string, limit int) (paths []string, next string, err error) {
	if after != "" && after != path && !events.IsDescendant(after, path) {
		return nil, "", fmt.Errorf("after %q is not path %q nor below it: %w", after, path, ErrInvalidCursor)
	}
	if path != "" && r.Agents[path] == nil {
		return nil, "", fmt.Errorf("agent %q: %w", path, events.ErrNotFound)
	}
	if path != "" && after == "" {
		paths = append(paths, path) // the subtree's own agent first
	}
	if after == path {
		after = ""
	}
	// One more path than room says whether more follow (Walk's limit <= 0
	// would mean all).
	page, more := r.Walk(path, after, limit-len(paths)+1)
	if room := limit - len(paths); len(page) > room {
		page, more = page[:room], true
	}
	paths = append(paths, page...)
	if more && len(paths) > 0 {
		next = paths[len(paths)-1]
	}
	return paths, next, nil
}

// Clone returns a copy of the registry that Apply on either leaves the
// other unchanged. It copies what Apply changes in place (the maps, the
// Agent structs, the child index) and shares what it never changes (Grant
// and TaskDef values, interned strings, the root definition, the
// violations recorded so far), so it costs a fraction of Marshal: take it
// under the registry's lock and Marshal (or read) the clone outside it.
// An agent's empty Capabilities or Tasks map is nil in the clone.
func (r *Registry) Clone() *Registry {
	c := *r
	c.Agents = make(map[string]*Agent, len(r.Agents))
	slab := make([]Agent, len(r.Agents)) // one allocation for every Agent
	i := 0
	for p, a := range r.Agents {
		ac := &slab[i]
		i++
		*ac = *a
		ac.Capabilities, ac.Tasks = nil, nil // Apply makes a map when it needs one
		if len(a.Capabilities) > 0 {
			ac.Capabilities = maps.Clone(a.Capabilities)
		}
		if len(a.Tasks) > 0 {
			ac.Tasks = maps.Clone(a.Tasks)
		}
		if len(a.Revocations) > 0 {
			// Apply appends to a list: clipped, the clone's next append
			// copies instead of writing where the original's would.
			ac.Revocations = make(map[string][]Revocation, len(a.Revocations))
			for k, revs := range a.Revocations {
				ac.Revocations[k] = slices.Clip(revs)
			}
		}
		c.Agents[p] = ac
	}
	c.SubjectSeq = maps.Clone(r.SubjectSeq)
	c.ids = r.ids.clone()
	// Apply only appends to Violations: with no spare capacity the clone's
	// next append copies instead of writing where the original's would.
	c.Violations = slices.Clip(r.Violations)
	c.tasks = maps.Clone(r.tasks)
	c.tree = tree{indexed: r.tree.indexed}
	if r.tree.kids != nil {
		c.tree.kids = make(map[string]*childSet, len(r.tree.kids))
		for p, s := range r.tree.kids {
			c.tree.kids[p] = s.clone()
		}
	}
	return &c
}
