package projector_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// createWith applies a version 2 AgentCreated carrying caps and tasks.
func (f *fold) createWith(path string, caps []events.Capability, tasks ...events.TaskDef) *projector.Violation {
	f.t.Helper()
	e := f.event(events.AgentCreated, path)
	e.Created = &events.CreatedData{Primer: "p " + path, Capabilities: caps, Tasks: tasks}
	return f.apply(e)
}

var printCap = events.Capability{Kind: events.KindFunc, Name: "print"}

// TestCreateV2 is the table of version 2 creations: applied whole or refused
// whole, whatever is wrong with them.
func TestCreateV2(t *testing.T) {
	// setup: parent "p" holds math sin, cos, pi and print; "old" is retired.
	setup := func(t *testing.T) *fold {
		f := newFold(t)
		ok(t, f.register())
		ok(t, f.createWith("p", []events.Capability{mathCap([]string{"sin", "cos", "pi"}, nil), printCap}))
		ok(t, f.createWith("old", []events.Capability{printCap}))
		ok(t, f.retire("old", "gone"))
		return f
	}
	for _, tc := range []struct {
		name  string
		path  string
		caps  []events.Capability
		tasks []events.TaskDef
		code  string // "" = applied
	}{
		{"caps and tasks", "p/c", []events.Capability{mathCap([]string{"sin", "pi"}, nil), printCap}, []events.TaskDef{simpleTask("a"), simpleTask("b")}, ""},
		{"no caps, no tasks", "p/c", nil, nil, ""},
		{"pattern under a literal list", "p/c", []events.Capability{mathCap([]string{"s*"}, []string{"sinh"})}, nil, projector.CodeEscalation},
		{"pattern under *", "p/c", []events.Capability{{Kind: events.KindFunc, Name: "print", Include: []string{"p*"}}}, nil, ""},
		{"one cap escalates", "p/c", []events.Capability{printCap, mathCap([]string{"sin", "tan"}, nil)}, []events.TaskDef{simpleTask("a")}, projector.CodeEscalation},
		{"cap the parent lacks", "p/c", []events.Capability{{Kind: events.KindType, Name: "Matrix"}}, nil, projector.CodeEscalation},
		{"cap the root lacks", "top", []events.Capability{{Kind: events.KindType, Name: "Matrix"}}, nil, projector.CodeEscalation},
		{"duplicate cap key", "p/c", []events.Capability{mathCap([]string{"sin"}, nil), mathCap([]string{"cos"}, nil)}, nil, projector.CodeMalformed},
		{"invalid cap", "p/c", []events.Capability{{Kind: "widget", Name: "x"}}, nil, projector.CodeMalformed},
		{"invalid pattern", "p/c", []events.Capability{mathCap([]string{"[sin"}, nil)}, nil, projector.CodeMalformed},
		{"duplicate task", "p/c", nil, []events.TaskDef{simpleTask("a"), simpleTask("a")}, projector.CodeMalformed},
		{"invalid task", "p/c", nil, []events.TaskDef{{Name: "a", Input: events.Schema{Type: "string"}}}, projector.CodeMalformed},
		{"retired parent", "old/c", []events.Capability{printCap}, nil, projector.CodeRetired},
		{"retired parent, no caps", "old/c", nil, nil, projector.CodeRetired},
		{"unknown parent", "nobody/c", []events.Capability{printCap}, nil, projector.CodeUnknown},
		{"exists", "p", nil, nil, projector.CodeExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			before := stateHashWithout(t, f.reg)
			existed := f.reg.Agents[tc.path] != nil
			v := f.createWith(tc.path, tc.caps, tc.tasks...)
			if tc.code != "" {
				violation(t, v, tc.code)
				assert.Equal(t, before, stateHashWithout(t, f.reg), "refused whole: nothing changed")
				if !existed {
					assert.NotContains(t, f.reg.Agents, tc.path)
					assert.NotContains(t, f.reg.Children(events.Parent(tc.path)), tc.path)
				}
				return
			}
			ok(t, v)
			rec := f.records[len(f.records)-1]
			a := f.reg.Agents[tc.path]
			require.NotNil(t, a)
			assert.Equal(t, events.Hash(rec.Data), a.LastHash)
			assert.Equal(t, rec.Seq, a.LastSeq)
			assert.Equal(t, rec.Seq, a.CreatedSeq)
			require.Len(t, a.Capabilities, len(tc.caps))
			for _, c := range tc.caps {
				g := a.Capabilities[c.Key()]
				require.NotNil(t, g, c.Key())
				assert.Equal(t, c.Normalized(), g.Capability, "stored normalized")
				assert.Equal(t, rec.Seq, g.Seq)
				assert.Equal(t, int64(1718000000000000000+rec.Seq), g.Time)
				assert.Equal(t, "architect", g.Actor)
			}
			require.Len(t, a.Tasks, len(tc.tasks))
			for _, task := range tc.tasks {
				assert.Equal(t, task, *a.Tasks[task.Name])
			}
			assert.Contains(t, f.reg.Children(events.Parent(tc.path)), tc.path)
			// The chain goes on from the create event.
			ok(t, f.task(tc.path, simpleTask("next")))
			checkInvariants(t, f.reg)
		})
	}
}

// TestCreateV2EqualsBatch: one version 2 create folds to the same agent as
// the version 1 batch it replaces (create, one grant per capability, one
// task per task), but for the sequences and hashes.
func TestCreateV2EqualsBatch(t *testing.T) {
	caps := []events.Capability{mathCap([]string{"sin", "pi", "sin"}, nil), printCap}
	tasks := []events.TaskDef{simpleTask("solve"), simpleTask("explain")}

	v1 := newFold(t)
	v1.version = 1
	ok(t, v1.register())
	ok(t, v1.create("a", "p a"))
	for _, c := range caps {
		ok(t, v1.grant("a", c))
	}
	for _, task := range tasks {
		ok(t, v1.task("a", task))
	}

	v2 := newFold(t)
	ok(t, v2.register())
	ok(t, v2.createWith("a", caps, tasks...))

	e1, err := v1.reg.Effective("a")
	require.NoError(t, err)
	e2, err := v2.reg.Effective("a")
	require.NoError(t, err)
	assert.Equal(t, e1, e2)
	a1, a2 := v1.reg.Agents["a"], v2.reg.Agents["a"]
	assert.Equal(t, a1.Primer, a2.Primer)
	require.Equal(t, len(a1.Tasks), len(a2.Tasks))
	for name, task := range a1.Tasks {
		assert.Equal(t, task, a2.Tasks[name])
	}

	t.Run("interned", func(t *testing.T) {
		// A second agent with the same grants and tasks shares them.
		ok(t, v2.createWith("b", caps, tasks...))
		a, b := v2.reg.Agents["a"], v2.reg.Agents["b"]
		assert.Same(t, a.Tasks["solve"], b.Tasks["solve"])
		ga, gb := a.Capabilities["module:math"].Capability, b.Capabilities["module:math"].Capability
		assert.Same(t, &ga.Include[0], &gb.Include[0])
	})

	t.Run("snapshot round trip", func(t *testing.T) {
		b, err := v2.reg.Marshal()
		require.NoError(t, err)
		got, err := projector.Unmarshal(b)
		require.NoError(t, err)
		assert.Equal(t, projector.WithoutIndex(v2.reg), projector.WithoutIndex(got))
	})
}

// TestMixedVersions: version 1 events fold exactly as before next to
// version 2 ones; a version 1 create with caps is malformed.
func TestMixedVersions(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	f.version = 1
	ok(t, f.create("a", "A"))
	ok(t, f.grant("a", mathCap([]string{"sin", "cos"}, nil)))
	f.version = 2
	ok(t, f.grant("a", printCap))
	ok(t, f.createWith("a/b", []events.Capability{mathCap([]string{"sin"}, nil), printCap}, simpleTask("t")))
	f.version = 1
	ok(t, f.task("a/b", simpleTask("u")))

	e := f.event(events.AgentCreated, "c")
	e.Created = &events.CreatedData{Capabilities: []events.Capability{printCap}}
	v := violation(t, f.publish(f.subject("c"), rawEncode(t, e)), projector.CodeMalformed)
	assert.Contains(t, v.Reason, "since version 2")
	assert.NotContains(t, f.reg.Agents, "c")
	ok(t, f.create("c", ""))

	ok(t, f.revoke("a", events.KindModule, "math"))
	assert.NotContains(t, f.reg.Agents["a/b"].Capabilities, "module:math", "a version 1 revoke cascades over a version 2 create's grants")
	assert.Contains(t, f.reg.Agents["a/b"].Capabilities, "fn:print")
	f.version = 2
	ok(t, f.retire("a", "done"))
	assert.True(t, f.reg.Agents["a/b"].Retired)
	assert.Len(t, f.reg.Violations, 1)
}
