package projector

import (
	"maps"
	"slices"

	"github.com/oklog/ulid/v2"
)

// idSet holds the ids of the events a registry refused, compactly: an id in
// ULID form (every id the runtime writes, keyed ones included) as its 16
// bytes, any other as its string. About 20 bytes an event.
type idSet struct {
	ulids  map[ulid.ULID]struct{}
	others map[string]struct{}
}

func (s *idSet) has(id string) bool {
	if u, err := ulid.ParseStrict(id); err == nil && u.String() == id {
		_, ok := s.ulids[u]
		return ok
	}
	_, ok := s.others[id]
	return ok
}

func (s *idSet) add(id string) {
	if u, err := ulid.ParseStrict(id); err == nil && u.String() == id {
		if s.ulids == nil {
			s.ulids = map[ulid.ULID]struct{}{}
		}
		s.ulids[u] = struct{}{}
		return
	}
	if s.others == nil {
		s.others = map[string]struct{}{}
	}
	s.others[id] = struct{}{}
}

// Len is the number of ids.
func (s *idSet) Len() int { return len(s.ulids) + len(s.others) }

// sorted returns every id as text, sorted.
func (s *idSet) sorted() []string {
	out := make([]string, 0, s.Len())
	for u := range s.ulids {
		out = append(out, u.String())
	}
	for id := range s.others {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (s *idSet) clone() idSet {
	return idSet{ulids: maps.Clone(s.ulids), others: maps.Clone(s.others)}
}

// refusedIDs holds the ids of refused events by the path of their subject
// ("" is the root). A replayed copy must be on its original's subject to
// pass the hash chain anyway; keeping the ids per subject makes whether an
// event is replayed depend on its own subject alone, so that a reader
// folding only an agent's chain (agent.readChain) decides as the full fold
// does: an id refused on a sibling's subject never refuses an event here.
type refusedIDs map[string]*idSet

func (r refusedIDs) has(path, id string) bool {
	s := r[path]
	return s != nil && s.has(id)
}

func (r *refusedIDs) add(path, id string) {
	if *r == nil {
		*r = refusedIDs{}
	}
	s := (*r)[path]
	if s == nil {
		s = &idSet{}
		(*r)[istr(path)] = s
	}
	s.add(id)
}

// Len is the number of ids over every subject.
func (r refusedIDs) Len() int {
	n := 0
	for _, s := range r {
		n += s.Len()
	}
	return n
}

func (r refusedIDs) clone() refusedIDs {
	if r == nil {
		return nil
	}
	out := make(refusedIDs, len(r))
	for p, s := range r {
		c := s.clone()
		out[p] = &c
	}
	return out
}

// HasID reports whether the registry refused an event with this id (past
// the trust check) on the subject of the agent at path ("" is the root): a
// copy of it published there is refused as replayed.
func (r *Registry) HasID(path, id string) bool { return r.ids.has(path, id) }

// IDCount is how many refused event ids the registry remembers, over every
// subject.
func (r *Registry) IDCount() int { return r.ids.Len() }
