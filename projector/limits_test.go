package projector_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// TestGlobGrants is the table of glob grants judged at write time: a
// pattern is applied only where every grant from the root down to the
// parent provably covers it; otherwise it is an escalation, by grant and by
// creation alike (a forged event is judged as the runtime judges it).
func TestGlobGrants(t *testing.T) {
	sinCos := mathCap([]string{"sin", "cos"}, nil)
	all := mathCap(nil, nil) // include *, exclude _*
	for _, tc := range []struct {
		name   string
		parent events.Capability // the parent's grant ("p"), under the root's math (*, _*)
		child  events.Capability
		ok     bool
	}{
		{"s* under {sin, cos}", sinCos, mathCap([]string{"s*"}, nil), false},
		{"[a-c]bs under {sin, cos}", sinCos, mathCap([]string{"[a-c]bs"}, nil), false},
		{"* under {sin, cos}", sinCos, mathCap([]string{"*"}, nil), false},
		{"a literal with a pattern under {sin, cos}", sinCos, mathCap([]string{"sin", "c?s"}, nil), false},
		{"s* under all of math", all, mathCap([]string{"s*"}, nil), true},
		{"[a-c]bs under all of math", all, mathCap([]string{"[a-c]bs"}, nil), true},
		{"* under all of math", all, mathCap(nil, nil), true},
		{"* that keeps _* under all of math", all, mathCap([]string{"*"}, []string{"cos"}), false},
		{"?* under all of math", all, mathCap([]string{"?*"}, nil), true}, // the default exclude _* covers it
		{"_* under all of math", all, mathCap([]string{"_*"}, []string{}), false},
		{"s* under all but sinh", mathCap(nil, []string{"sinh", "_*"}), mathCap([]string{"s*"}, nil), false},
		{"s* excluding sinh under all but sinh", mathCap(nil, []string{"sinh", "_*"}), mathCap([]string{"s*"}, []string{"sinh", "_*"}), true},
		{"the parent's own pattern", mathCap([]string{"s*"}, nil), mathCap([]string{"s*"}, nil), true},
		{"a narrower prefix of the parent's", mathCap([]string{"s*"}, nil), mathCap([]string{"sq*"}, nil), true},
		{"a pattern beside the parent's", mathCap([]string{"s*"}, nil), mathCap([]string{"t*"}, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFold(t)
			ok(t, f.register())
			ok(t, f.createWith("p", []events.Capability{tc.parent}))
			// By creation.
			v := f.createWith("p/c", []events.Capability{tc.child})
			// By grant, to an agent created without it.
			ok(t, f.create("p/g", ""))
			before := stateHashWithout(t, f.reg)
			g := f.grant("p/g", tc.child)
			e := f.event(events.CapabilityGranted, "p/g")
			e.Granted = &events.GrantedData{Capability: tc.child}
			check := f.reg.Check(e)
			if tc.ok {
				ok(t, v)
				ok(t, g)
				return
			}
			for _, v := range []*projector.Violation{v, g} {
				violation(t, v, projector.CodeEscalation)
				assert.Contains(t, v.Reason, "list the members by name")
			}
			assert.NotContains(t, f.reg.Agents, "p/c")
			assert.Equal(t, before, stateHashWithout(t, f.reg), "nothing applied")
			assert.ErrorIs(t, check, events.ErrEscalation)
		})
	}

	t.Run("deeper: every grant up the chain", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		ok(t, f.createWith("a", []events.Capability{mathCap(nil, nil)}))
		ok(t, f.createWith("a/b", []events.Capability{sinCos}))
		ok(t, f.createWith("a/b/c", []events.Capability{mathCap([]string{"sin"}, nil)}))
		// c's parent holds only sin, b holds {sin, cos}: s* is not covered.
		violation(t, f.grant("a/b/c", mathCap([]string{"s*"}, nil)), projector.CodeEscalation)
	})
}

// TestTooLarge: events over the size limits that reach the stream anyway
// (a writer with publish rights bypassing the runtime) are too_large
// violations, not applied; later events apply as usual.
func TestTooLarge(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))

	// Over the event size: not even decoded.
	e := f.event(events.AgentCreated, "b")
	e.Created = &events.CreatedData{Primer: strings.Repeat("p", 1_000_000)}
	v := violation(t, f.publish(f.subject("b"), rawEncode(t, e)), projector.CodeTooLarge)
	assert.Contains(t, v.Reason, fmt.Sprint(events.MaxEventBytes))
	assert.NotContains(t, f.reg.Agents, "b")

	// Under the event size, over a limit of its own: refused with its id.
	big := strings.Repeat("p", events.MaxPrimerBytes+1)
	v = violation(t, f.create("b", big), projector.CodeTooLarge)
	assert.Contains(t, v.Reason, `primer of agent "b"`)
	assert.NotEmpty(t, v.EventID)
	assert.NotContains(t, f.reg.Agents, "b")

	task := simpleTask("solve")
	task.Doc = strings.Repeat("d", events.MaxTaskDocBytes+1)
	violation(t, f.task("a", task), projector.CodeTooLarge)
	cp := mathCap([]string{strings.Repeat("s", events.MaxPatternBytes+1)}, nil)
	violation(t, f.grant("a", cp), projector.CodeTooLarge)

	// Later events are fine.
	ok(t, f.create("b", "a small primer"))
	ok(t, f.task("a", simpleTask("solve")))
	assert.Equal(t, "a small primer", f.reg.Agents["b"].Primer)

	t.Run("tasks per agent", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		ok(t, f.create("a", ""))
		for i := range events.MaxTasks {
			ok(t, f.task("a", simpleTask(fmt.Sprintf("t%d", i))))
		}
		v := violation(t, f.task("a", simpleTask("one_more")), projector.CodeTooLarge)
		assert.Contains(t, v.Reason, fmt.Sprint(events.MaxTasks))
		ok(t, f.task("a", simpleTask("t0"))) // a redefinition adds none
	})

	t.Run("capabilities per agent", func(t *testing.T) {
		// An agent holds only its root's capabilities: at most as many.
		f := newFold(t)
		caps := []events.Capability{}
		for i := range events.MaxCapabilities {
			caps = append(caps, events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", i)})
		}
		f.def.Capabilities = caps
		f.root = f.def.Fingerprint()
		f.reg = projector.New(f.root)
		ok(t, f.register())
		ok(t, f.create("a", ""))
		for _, c := range caps[:events.MaxCapabilities] {
			ok(t, f.grant("a", c))
		}
		ok(t, f.replace("a", caps[0])) // a replacement adds none
		assert.Len(t, f.reg.Agents["a"].Capabilities, events.MaxCapabilities)
		violation(t, f.grant("a", events.Capability{Kind: events.KindFunc, Name: "other"}), projector.CodeEscalation)
	})
}

// TestViolationsBounded: a flood of garbage on one root leaves the newest
// MaxViolations violations and counts the rest; the count survives a
// snapshot, and a clone does not see the original's later violations.
func TestViolationsBounded(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	const n = 2000
	var clone *projector.Registry
	for i := range n {
		f.seq++
		f.reg.Apply(events.Record{Seq: f.seq, Subject: f.subject("a"), Data: []byte(fmt.Sprintf("garbage %d", i))})
		if i == 1500 {
			clone = f.reg.Clone()
		}
	}
	require.Len(t, f.reg.Violations, projector.MaxViolations)
	assert.Equal(t, uint64(n-projector.MaxViolations), f.reg.ViolationsDropped)
	assert.Equal(t, f.seq, f.reg.Violations[len(f.reg.Violations)-1].Seq, "the newest is kept")
	assert.Equal(t, f.seq-projector.MaxViolations+1, f.reg.Violations[0].Seq)
	for i := 1; i < len(f.reg.Violations); i++ {
		require.Equal(t, f.reg.Violations[i-1].Seq+1, f.reg.Violations[i].Seq, "in stream order")
	}

	// The clone taken at garbage 1500 is untouched by what came after.
	require.Len(t, clone.Violations, projector.MaxViolations)
	assert.Equal(t, uint64(1501-projector.MaxViolations), clone.ViolationsDropped)
	assert.Equal(t, uint64(2+1500), clone.Violations[len(clone.Violations)-1].Seq)
	assert.Equal(t, uint64(2+1500-projector.MaxViolations+1), clone.Violations[0].Seq)

	b, err := f.reg.Marshal()
	require.NoError(t, err)
	back, err := projector.Unmarshal(b)
	require.NoError(t, err)
	assert.Equal(t, f.reg.ViolationsDropped, back.ViolationsDropped)
	assert.Equal(t, f.reg.Violations, back.Violations)
	assert.Less(t, len(b), 200<<10, "the snapshot stays small")

	// A later good event still applies and a later bad one is recorded.
	ok(t, f.create("a", ""))
	f.seq++
	f.reg.Apply(events.Record{Seq: f.seq, Subject: f.subject("a"), Data: []byte("more")})
	assert.Equal(t, f.seq, f.reg.Violations[len(f.reg.Violations)-1].Seq)
	assert.Equal(t, uint64(n-projector.MaxViolations+1), f.reg.ViolationsDropped)

	t.Run("long strings are cut", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		e := f.event(events.CapabilityGranted, "nobody")
		e.ID = strings.Repeat("i", 100_000)
		e.Granted = &events.GrantedData{Capability: mathCap([]string{"sin"}, nil)}
		v := violation(t, f.publish(f.subject("nobody"), rawEncode(t, e)), projector.CodeUnknown)
		assert.LessOrEqual(t, len(v.EventID), 128)
		assert.LessOrEqual(t, len(v.Reason), 1024)
	})
}
