package events_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

// Schema version 3 bodies: a grant's replace and a revocation's members
// round-trip, and a version 2 event carrying either does not encode or
// decode.
func TestVersion3Bodies(t *testing.T) {
	base := func(typ events.Type, v uint64) *events.Event {
		return &events.Event{ID: "01JD0000000000000000000000", Type: typ, Version: v,
			Root: strings.Repeat("ab", 32), Path: "a", Time: 1, Actor: "x", Correlation: "c"}
	}
	grant := base(events.CapabilityGranted, 3)
	grant.Granted = &events.GrantedData{Capability: events.Capability{Kind: events.KindModule, Name: "math"}, Replace: true}
	revoke := base(events.CapabilityRevoked, 3)
	revoke.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"cos", "sin"}}
	for _, e := range []*events.Event{grant, revoke} {
		b, err := events.Encode(e)
		require.NoError(t, err)
		back, err := events.Decode(b)
		require.NoError(t, err)
		require.Equal(t, e, back)

		e.Version = 2
		_, err = events.Encode(e)
		require.ErrorIs(t, err, events.ErrMalformed, "%s version 2", e.Type)
		require.ErrorContains(t, err, "since version 3")
	}
	// Absent when unset: a version 3 body without them encodes as version 2's.
	plain := base(events.CapabilityGranted, 3)
	plain.Granted = &events.GrantedData{Capability: events.Capability{Kind: events.KindModule, Name: "math"}}
	b, err := events.Encode(plain)
	require.NoError(t, err)
	require.NotContains(t, string(b), "replace")

	for name, r := range map[string]events.RevokedData{
		"pattern":  {Kind: events.KindModule, Name: "math", Members: []string{"s*"}},
		"twice":    {Kind: events.KindModule, Name: "math", Members: []string{"sin", "sin"}},
		"empty":    {Kind: events.KindModule, Name: "math", Members: []string{""}},
		"bad kind": {Kind: "class", Name: "math", Members: []string{"sin"}},
		"too many": {Kind: events.KindModule, Name: "math", Members: make([]string, events.MaxPatterns+1)},
	} {
		require.Error(t, r.Validate(), name)
	}
	require.ErrorIs(t, events.RevokedData{Kind: events.KindModule, Name: "math", Members: make([]string, events.MaxPatterns+1)}.Validate(), events.ErrTooLarge)
	require.NoError(t, events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"sin", "math.pi", "_x-1"}}.Validate())
}
