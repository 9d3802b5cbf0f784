package events_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

// TestLimits: every input over its limit is refused with ErrTooLarge and an
// error naming the input, its size and the limit; at the limit it passes.
func TestLimits(t *testing.T) {
	obj := func(fields ...events.Field) events.Schema { return events.Schema{Type: "object", Fields: fields} }
	task := func(doc string, in events.Schema) events.TaskDef {
		return events.TaskDef{Name: "t", Doc: doc, Input: in, Output: events.Schema{Type: "string"}}
	}
	nest := func(depth int) events.Schema { // depth levels of arrays inside the input object
		s := events.Schema{Type: "string"}
		for range depth - 2 {
			inner := s
			s = events.Schema{Type: "array", Items: &inner}
		}
		return obj(events.Field{Name: "f", Schema: s})
	}
	wide := func(n int) events.Schema { // an object of n-1 string fields: n schemas
		var fs []events.Field
		for i := range n - 1 {
			fs = append(fs, events.Field{Name: fmt.Sprintf("f%d", i), Schema: events.Schema{Type: "string"}})
		}
		return obj(fs...)
	}
	patterns := func(n, size int) events.Capability {
		c := events.Capability{Kind: events.KindModule, Name: "math"}
		for i := range n {
			c.Include = append(c.Include, fmt.Sprintf("%s%d", strings.Repeat("a", size-4), 1000+i))
		}
		return c
	}
	caps := func(n int) []events.Capability {
		var cs []events.Capability
		for i := range n {
			cs = append(cs, events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", i)})
		}
		return cs
	}
	tasks := func(n int) []events.TaskDef {
		var ts []events.TaskDef
		for i := range n {
			tk := task("", obj())
			tk.Name = fmt.Sprintf("t%d", i)
			ts = append(ts, tk)
		}
		return ts
	}
	root := func(primer string, cs []events.Capability, ts []events.TaskDef) events.RootDef {
		return events.RootDef{Name: "r", Primer: primer, Capabilities: cs, Tasks: ts}
	}
	create := func(primer string, cs []events.Capability, ts []events.TaskDef) error {
		return (&events.CreatedData{Primer: primer, Capabilities: cs, Tasks: ts}).CheckLimits("a/b")
	}
	for _, tc := range []struct {
		name      string
		at, over  error
		mentioned string
	}{
		{"task doc", task(strings.Repeat("d", events.MaxTaskDocBytes), obj()).Validate(),
			task(strings.Repeat("d", events.MaxTaskDocBytes+1), obj()).Validate(), "doc of task"},
		{"field doc", task("", obj(events.Field{Name: "f", Schema: events.Schema{Type: "string"}, Doc: strings.Repeat("d", events.MaxFieldDocBytes)})).Validate(),
			task("", obj(events.Field{Name: "f", Schema: events.Schema{Type: "string"}, Doc: strings.Repeat("d", events.MaxFieldDocBytes+1)})).Validate(), `doc of field "f"`},
		{"schema depth", task("", nest(events.MaxSchemaDepth)).Validate(), task("", nest(events.MaxSchemaDepth+1)).Validate(), "levels deep"},
		{"schema nodes", task("", wide(events.MaxSchemaNodes-1)).Validate(), task("", wide(events.MaxSchemaNodes)).Validate(), "types"},
		{"field name", obj(events.Field{Name: strings.Repeat("n", events.MaxSymbolLen), Schema: events.Schema{Type: "string"}}).Validate(),
			obj(events.Field{Name: strings.Repeat("n", events.MaxSymbolLen+1), Schema: events.Schema{Type: "string"}}).Validate(), "129 characters"},
		{"pattern count", patterns(events.MaxPatterns, 8).Validate(), patterns(events.MaxPatterns+1, 8).Validate(), "pattern list"},
		{"pattern length", patterns(1, events.MaxPatternBytes).Validate(), patterns(1, events.MaxPatternBytes+1).Validate(), "include pattern"},
		{"create primer", create(strings.Repeat("p", events.MaxPrimerBytes), nil, nil), create(strings.Repeat("p", events.MaxPrimerBytes+1), nil, nil), `primer of agent "a/b"`},
		{"create capabilities", create("", caps(events.MaxCapabilities), nil), create("", caps(events.MaxCapabilities+1), nil), "capability list"},
		{"create tasks", create("", nil, tasks(events.MaxTasks)), create("", nil, tasks(events.MaxTasks+1)), "task list"},
		{"root primer", root(strings.Repeat("p", events.MaxPrimerBytes), nil, nil).Validate(), root(strings.Repeat("p", events.MaxPrimerBytes+1), nil, nil).Validate(), `primer of root "r"`},
		{"root capabilities", root("", caps(events.MaxCapabilities), nil).Validate(), root("", caps(events.MaxCapabilities+1), nil).Validate(), "capability list"},
		{"root tasks", root("", nil, tasks(events.MaxTasks)).Validate(), root("", nil, tasks(events.MaxTasks+1)).Validate(), "task list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.at)
			require.ErrorIs(t, tc.over, events.ErrTooLarge)
			assert.Contains(t, tc.over.Error(), tc.mentioned)
			assert.Contains(t, tc.over.Error(), "the limit is")
		})
	}

	t.Run("root definition size", func(t *testing.T) {
		// Every part within its limit, the whole over MaxRootDefBytes.
		ts := tasks(events.MaxTasks)
		for i := range ts {
			ts[i].Doc = strings.Repeat("d", events.MaxTaskDocBytes/8)
		}
		err := root("", nil, ts).Validate()
		require.ErrorIs(t, err, events.ErrTooLarge)
		assert.Contains(t, err.Error(), `definition of root "r"`)
		assert.Contains(t, err.Error(), fmt.Sprint(events.MaxRootDefBytes))
	})
}

// TestEventSizeLimit: Encode writes no event over MaxEventBytes and Decode
// reads none, both with ErrTooLarge.
func TestEventSizeLimit(t *testing.T) {
	e := *goldenEvents()["AgentRetired"]
	e.Retired = &events.RetiredData{Reason: strings.Repeat("r", events.MaxEventBytes)}
	_, err := events.Encode(&e)
	require.ErrorIs(t, err, events.ErrTooLarge)
	assert.Contains(t, err.Error(), e.ID)
	assert.Contains(t, err.Error(), fmt.Sprint(events.MaxEventBytes))

	e.Retired.Reason = strings.Repeat("r", events.MaxEventBytes-1000)
	b, err := events.Encode(&e)
	require.NoError(t, err)
	_, err = events.Decode(b)
	require.NoError(t, err)
	_, err = events.Decode(append(b, make([]byte, events.MaxEventBytes-len(b)+1)...))
	require.ErrorIs(t, err, events.ErrTooLarge)
	require.NotErrorIs(t, err, events.ErrMalformed)
}

// TestCoversPattern is the table of the conservative glob rule.
func TestCoversPattern(t *testing.T) {
	math := func(include, exclude []string) events.Capability {
		return events.Capability{Kind: events.KindModule, Name: "math", Include: include, Exclude: exclude}.Normalized()
	}
	all := math(nil, nil) // include *, exclude _*
	sinCos := math([]string{"sin", "cos"}, nil)
	for _, tc := range []struct {
		name  string
		c     events.Capability
		p     string
		minus []string // the grant's own excludes
		want  bool
	}{
		{"s* under a literal list", sinCos, "s*", []string{"_*"}, false},
		{"class under a literal list", sinCos, "[a-c]bs", []string{"_*"}, false},
		{"star under a literal list", sinCos, "*", []string{"_*"}, false},
		{"s* under all", all, "s*", nil, true},
		{"class under all", all, "[a-c]bs", nil, true},
		{"? may be _", all, "?in", nil, false},
		{"? under all, excluding _* too", all, "?in", []string{"_*"}, true},
		{"star under all, excluding _* too", all, "*", []string{"_*"}, true},
		{"star under all, not excluding _*", all, "*", nil, false},
		{"?* may start with _", all, "?*", nil, false},
		{"class holding _", all, "[_a]x", nil, false},
		{"negated class may be _", all, "[^a]x", nil, false},
		{"escaped _", all, `\_x`, nil, false},
		{"escaped s", all, `\s*`, nil, true},
		{"exclude covered by a wider own exclude", all, "*", []string{"_*", "x"}, true},
		{"own exclude * covers _*", all, "a*", []string{"*"}, true},
		{"same pattern", math([]string{"s*"}, nil), "s*", nil, true},
		{"literal prefix and *", math([]string{"s*"}, nil), "si*", nil, true},
		{"literal prefix, class after", math([]string{"s*"}, nil), "s[a-z]n", nil, true},
		{"prefix does not hold", math([]string{"s*"}, nil), "*n", nil, false},
		{"class at the prefix", math([]string{"s*"}, nil), "[st]in", nil, false},
		{"class that may be a slash", math([]string{"s*"}, nil), "s[!-0]", nil, false},
		{"parent excludes sinh", math(nil, []string{"sinh", "_*"}), "s*", nil, false},
		{"parent excludes sinh, disjoint pattern", math(nil, []string{"sinh", "_*"}), "si?", nil, true},
		{"parent excludes sinh, grant excludes it too", math(nil, []string{"sinh", "_*"}), "s*", []string{"sinh"}, true},
		{"suffixes disjoint", math(nil, []string{"*_test"}), "*_prod", nil, true},
		{"suffixes overlap", math(nil, []string{"*_test"}), "*t", nil, false},
		{"non-ASCII pattern", all, "s\u00e9*", nil, false},
		{"malformed pattern", all, "[s", nil, false},
		{"unset include and exclude take the defaults", events.Capability{Kind: events.KindModule, Name: "math"}, "s*", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			budget := events.GlobBudget
			assert.Equal(t, tc.want, tc.c.CoversPattern(tc.p, tc.minus, &budget))
		})
	}

	t.Run("a search past the budget refuses", func(t *testing.T) {
		c := math(nil, []string{strings.Repeat("a*", 100) + "b"})
		p := strings.Repeat("a*", 100) + "c"
		budget := events.GlobBudget
		assert.True(t, c.CoversPattern(p, nil, &budget), "disjoint: the last character differs")
		budget = 10
		assert.False(t, c.CoversPattern(p, nil, &budget))
	})
}
