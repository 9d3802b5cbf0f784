package projector

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/agentreg/agentreg/events"
)

func TestIntersected(t *testing.T) {
	mod := func(include, exclude []string) events.Capability {
		return events.Capability{Kind: events.KindModule, Name: "math", Include: include, Exclude: exclude}
	}
	cases := []struct {
		name          string
		chain         []events.Capability
		include, excl []string
		exact         bool
	}{
		{"own grant only", []events.Capability{mod(nil, nil)}, []string{"*"}, []string{"_*"}, true},
		{"child names under parent star", []events.Capability{mod(nil, nil), mod([]string{"sqrt", "add"}, nil)}, []string{"add", "sqrt"}, []string{"_*"}, true},
		{"child star under parent names", []events.Capability{mod([]string{"add"}, []string{}), mod(nil, []string{"x"})}, []string{"add"}, []string{"x"}, true},
		{"prefix under prefix", []events.Capability{mod([]string{"s*"}, nil), mod([]string{"sq*", "add"}, nil)}, []string{"sq*"}, []string{"_*"}, true},
		{"disjoint names", []events.Capability{mod([]string{"add"}, nil), mod([]string{"sub"}, nil)}, []string{}, []string{"*"}, true},
		{"excludes unite", []events.Capability{mod(nil, []string{"pow"}), mod(nil, []string{"sqrt"})}, []string{"*"}, []string{"pow", "sqrt"}, true},
		{"explicit empty exclude stays empty", []events.Capability{mod(nil, []string{}), mod([]string{"add"}, []string{})}, []string{"add"}, []string{}, true},
		{"inexpressible overlap", []events.Capability{mod([]string{"a*"}, nil), mod([]string{"*b"}, nil)}, []string{}, []string{"*"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := Effective{Capability: tc.chain[len(tc.chain)-1].Normalized(), Chain: tc.chain}
			got, exact := e.Intersected()
			assert.Equal(t, tc.include, got.Include)
			assert.Equal(t, tc.excl, got.Exclude)
			assert.Equal(t, tc.exact, exact)
			// Whatever the single grant allows, the chain allows too.
			for _, m := range []string{"add", "sub", "sqrt", "pow", "ab", "_x", "x", "sq"} {
				if got.Allows(m) {
					assert.True(t, e.Allows(m), "intersected grant allows %q the chain refuses", m)
				} else if exact {
					assert.False(t, e.Allows(m), "exact intersection refuses %q the chain allows", m)
				}
			}
		})
	}
}

func TestEffectiveMembers(t *testing.T) {
	e := Effective{Chain: []events.Capability{
		{Kind: events.KindModule, Name: "math"},
		{Kind: events.KindModule, Name: "math", Include: []string{"s*", "add"}, Exclude: []string{"sin"}},
	}}
	assert.Equal(t, []string{"add", "sqrt"}, e.Members([]string{"sqrt", "sin", "add", "mul", "_pi", "add"}))
}
