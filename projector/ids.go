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

// HasID reports whether the registry refused an event with this id (past
// the trust check): a copy of it is refused as replayed.
func (r *Registry) HasID(id string) bool { return r.ids.has(id) }

// IDCount is how many refused event ids the registry remembers.
func (r *Registry) IDCount() int { return r.ids.Len() }
