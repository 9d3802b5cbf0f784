package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestSizeLimitsRefusedBeforeWrite: Create, Grant, DefineTask and
// RegisterRoot refuse input over the size limits with ErrTooLarge naming
// the input, its size and the limit, and nothing is written.
func TestSizeLimitsRefusedBeforeWrite(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	l := w.log()
	seq := lastRootSeq(t, l, w.fp)

	manyTasks := make([]events.TaskDef, events.MaxTasks)
	for i := range manyTasks {
		manyTasks[i] = solveTask()
		manyTasks[i].Name = fmt.Sprintf("t%d", i)
		manyTasks[i].Doc = strings.Repeat("d", events.MaxTaskDocBytes/2) // each within its limit, together over the event's
	}
	longDoc := solveTask()
	longDoc.Doc = strings.Repeat("d", events.MaxTaskDocBytes+1)
	manyPatterns := mathCap()
	for i := range events.MaxPatterns + 1 {
		manyPatterns.Include = append(manyPatterns.Include, fmt.Sprintf("m%d", i))
	}
	bigRoot := w.def
	bigRoot.Primer = strings.Repeat("p", events.MaxPrimerBytes+1)

	for _, tc := range []struct {
		name, mentions string
		err            error
	}{
		{"primer", `primer of agent "math_solver/big"`, errOf3(rt.Create(ctx, tr.solver, agent.Spec{Name: "big", Primer: strings.Repeat("p", events.MaxPrimerBytes+1)}))},
		{"tasks of a creation together", "encoded event", errOf3(rt.Create(ctx, tr.solver, agent.Spec{Name: "big", Tasks: manyTasks}))},
		{"task doc at creation", `doc of task "solve_math_problem"`, errOf3(rt.Create(ctx, tr.solver, agent.Spec{Name: "big", Tasks: []events.TaskDef{longDoc}}))},
		{"patterns", "pattern list", errOf(rt.Grant(ctx, tr.parser, manyPatterns))},
		{"task doc", `doc of task "solve_math_problem"`, errOf3(rt.DefineTask(ctx, tr.parser, longDoc))},
		{"root primer", `primer of root "architect"`, errOf(rt.RegisterRoot(ctx, bigRoot))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, events.ErrTooLarge)
			assert.Contains(t, tc.err.Error(), tc.mentions)
			assert.Contains(t, tc.err.Error(), "the limit is")
		})
	}
	require.Equal(t, seq, lastRootSeq(t, l, w.fp), "nothing written")
	require.Zero(t, lastRootSeq(t, l, bigRoot.Fingerprint()), "nothing written")
}

// TestForgedHugePrimer: a 1 MB primer published straight to the stream (a
// writer with publish rights bypassing the runtime) is a too_large
// violation, nothing of it is applied, and later writes apply.
func TestForgedHugePrimer(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	nc := testutil.Connect(t, w.url)
	e := &events.Event{ID: ulid.Make().String(), Type: events.AgentCreated, Version: events.SchemaVersion, Root: w.fp,
		Path: "huge", Time: 1, Actor: "mallory", Created: &events.CreatedData{Primer: strings.Repeat("p", 1_000_000)}}
	b, err := msgpack.Marshal(e) // not events.Encode: it refuses what it would not write
	require.NoError(t, err)
	seq := testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, "huge"), b, nil)

	require.NoError(t, inspect.View(agent.WithMinSeq(ctx, seq), rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.NotEmpty(t, reg.Violations)
		v := reg.Violations[len(reg.Violations)-1]
		assert.Equal(t, seq, v.Seq)
		assert.Equal(t, projector.CodeTooLarge, v.Code)
		assert.NotContains(t, reg.Agents, "huge")
		return nil
	}))
	// The path is still free, and a later write applies.
	ref, rc, err := rt.Create(ctx, root, agent.Spec{Name: "huge", Primer: "small"})
	require.NoError(t, err)
	require.Greater(t, rc.Seq, seq)
	require.NoError(t, inspect.View(agent.WithMinSeq(ctx, rc.Seq), rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.Contains(t, reg.Agents, ref.Path)
		assert.Equal(t, "small", reg.Agents[ref.Path].Primer)
		return nil
	}))
}

// TestViolationsBoundedOnStream: 2,000 garbage messages on one root leave
// a registry with the newest projector.MaxViolations violations and the
// rest counted.
func TestViolationsBoundedOnStream(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	nc := testutil.Connect(t, w.url)
	const n = 2000
	var last uint64
	for i := range n {
		last = testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, "junk"), []byte(fmt.Sprintf("garbage %d", i)), nil)
	}
	check := func(reg *projector.Registry) {
		require.Len(t, reg.Violations, projector.MaxViolations)
		assert.Equal(t, uint64(n-projector.MaxViolations), reg.ViolationsDropped)
		assert.Equal(t, last, reg.Violations[len(reg.Violations)-1].Seq)
	}
	require.NoError(t, inspect.View(agent.WithMinSeq(ctx, last), rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error { check(reg); return nil }))
	// List counts every refused event, not only the violations kept.
	page, err := rt.List(agent.WithMinSeq(ctx, last), root.Root, agent.ListOptions{Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, n, page.Violations)
	// A fresh process (a full replay) agrees, and a later write applies.
	other := w.open()
	_, err = other.RegisterRoot(ctx, w.def)
	require.NoError(t, err)
	require.NoError(t, inspect.View(agent.WithMinSeq(ctx, last), other, string(agent.RootID(w.fp)), func(reg *projector.Registry) error { check(reg); return nil }))
	_, _, err = rt.Create(ctx, root, agent.Spec{Name: "after"})
	require.NoError(t, err)
}

// TestGlobGrantsAtWriteTime: the runtime refuses a glob grant the parent's
// chain does not provably cover (ErrEscalation, telling to list members),
// with nothing written, and accepts one under a parent holding all of math.
func TestGlobGrantsAtWriteTime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root) // math_solver holds sin, cos, pi, sqrt
	l := w.log()
	seq := lastRootSeq(t, l, w.fp)
	for _, p := range []string{"s*", "[a-c]bs", "*"} {
		err := errOf(rt.Grant(ctx, tr.parser, mathCap(p)))
		require.ErrorIs(t, err, events.ErrEscalation, p)
		assert.Contains(t, err.Error(), "list the members by name")
		_, _, err = rt.Create(ctx, tr.solver, agent.Spec{Name: "globbed", Capabilities: []events.Capability{mathCap(p)}})
		require.ErrorIs(t, err, events.ErrEscalation, p)
	}
	require.Equal(t, seq, lastRootSeq(t, l, w.fp), "nothing written")

	// Under the root, which holds all of math (include *, exclude _*).
	all, _, err := rt.Create(ctx, root, agent.Spec{Name: "all", Capabilities: []events.Capability{mathCap("s*", "[a-c]bs")}})
	require.NoError(t, err)
	// Below it, the same pattern or a narrower prefix.
	_, _, err = rt.Create(ctx, all, agent.Spec{Name: "narrower", Capabilities: []events.Capability{mathCap("sq*")}})
	require.NoError(t, err)
	require.ErrorIs(t, errOf3(rt.Create(ctx, all, agent.Spec{Name: "beside", Capabilities: []events.Capability{mathCap("t*")}})), events.ErrEscalation)
}

// errOf3 drops the first two results of a write: for assertions on the
// error alone.
func errOf3[A, B any](_ A, _ B, err error) error { return err }
