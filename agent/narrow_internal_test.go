package agent

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// narrowed intersects a migrated agent's capabilities with every root the
// migration came through: a child whose grant the old root bounded to
// [sin] (an include pattern from a history written before patterns were
// checked at write time) keeps [sin] under a new root holding all of math,
// and a capability the old root lacks is dropped.
func TestNarrowed(t *testing.T) {
	math := func(include ...string) events.Capability {
		return events.Capability{Kind: events.KindModule, Name: "math", Include: include}.Normalized()
	}
	child := math("*")
	underNew := []projector.Effective{
		{Capability: child, Chain: []events.Capability{math("*"), child}},                              // the new root holds all of math
		{Capability: events.Capability{Kind: events.KindType, Name: "Agent"}.Normalized(), Chain: nil}, // the old root lacks it
	}
	old := events.RootDef{Name: "architect", Capabilities: []events.Capability{math("sin")}}
	got := narrowed(underNew, []events.RootDef{old})
	require.Len(t, got, 1, "a capability the old root lacks is dropped")
	for _, m := range []string{"sin", "cos", "sqrt"} {
		require.Equal(t, m == "sin", got[0].Allows(m), "member %s", m)
	}
	require.Equal(t, underNew[:1], narrowed(underNew[:1], nil), "no migration: unchanged")
}
