package agent_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
)

// A ref made under one root definition fails with ErrRootChanged in a
// process that registers a changed definition, resolves once a migration is
// recorded (capabilities cut down to the new root's), and the old root
// takes no more writes.
func TestRootChangedAndMigration(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root1 := w.openRegistered()
	solver, _, err := rt1.Create(ctx, root1, agent.Spec{
		Name:   "math_solver",
		Primer: "You solve equations.",
		Capabilities: []events.Capability{
			mathCap("sin", "cos", "tan"),
			{Kind: events.KindType, Name: "Agent"},
		},
		Tasks: []events.TaskDef{solveTask()},
	})
	require.NoError(t, err)
	ref := agent.TaskRef{Root: agent.RootID(w.fp), Path: solver.Path, Task: "solve_math_problem"}
	task, err := rt1.Resolve(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, []string{"cos", "sin", "tan"}, memberNames(t, task, events.KindModule, "math"))
	require.NotNil(t, memberNames(t, task, events.KindType, "Agent"))

	// Release 2: another primer, math without tan, no Agent type.
	v2 := events.RootDef{
		Name:   "architect",
		Primer: "You create specialist agents (release 2).",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Exclude: []string{"_*", "tan"}, Visibility: events.VisibilityLow},
		},
	}
	v2fp := v2.Fingerprint()
	require.NotEqual(t, w.fp, v2fp)

	rt2 := w.open()
	_, err = rt2.RegisterRoot(ctx, v2)
	require.NoError(t, err)

	_, err = rt2.Resolve(ctx, ref)
	require.ErrorIs(t, err, agent.ErrRootChanged)
	require.ErrorContains(t, err, "MigrateRoot")
	require.ErrorContains(t, err, w.fp)
	require.ErrorContains(t, err, v2fp)

	t.Run("MigrateToUnregisteredRoot", func(t *testing.T) {
		other := w.def
		other.Primer = "never registered"
		_, err := rt2.MigrateRoot(ctx, agent.RootID(w.fp), agent.RootID(other.Fingerprint()), "no")
		require.ErrorIs(t, err, agent.ErrRootNotRegistered)
	})

	require.NoError(t, errOf(rt2.MigrateRoot(ctx, agent.RootID(w.fp), agent.RootID(v2fp), "release 2")))

	rt3 := w.open()
	_, err = rt3.RegisterRoot(ctx, v2)
	require.NoError(t, err)
	for name, rt := range map[string]*agent.Runtime{"migrator": rt2, "fresh": rt3} {
		t.Run("Resolve/"+name, func(t *testing.T) {
			task, err := rt.Resolve(ctx, ref)
			require.NoError(t, err)
			require.True(t, task.Migrated)
			require.Equal(t, ref, task.Ref)
			require.Equal(t, "architect", task.RootName)
			require.Equal(t, "You solve equations.", task.Primer, "the agent keeps its recipe")
			require.Equal(t, solveTask(), task.Def)
			require.Equal(t, []string{"cos", "sin"}, memberNames(t, task, events.KindModule, "math"),
				"capabilities are not intersected with the new root's")
			_, ok := task.Capability(events.KindType, "Agent")
			require.False(t, ok, "the new root dropped Agent")
			require.Len(t, task.Capabilities, 1)
		})
	}

	l := w.log()
	seq := lastRootSeq(t, l, w.fp)
	require.NoError(t, inspect.View(ctx, rt1, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.Equal(t, v2fp, reg.MigratedTo)
		require.Equal(t, seq, reg.MigratedSeq)
		require.Empty(t, reg.Violations)
		return nil
	}))

	t.Run("OldRootTakesNoWrites", func(t *testing.T) {
		_, _, err := rt1.Create(ctx, root1, agent.Spec{Name: "late"})
		require.ErrorIs(t, err, agent.ErrMigrated)
		_, err = rt1.Grant(ctx, solver, mathCap("sin"))
		require.ErrorIs(t, err, agent.ErrMigrated)
		_, _, err = rt1.DefineTask(ctx, solver, parseTask())
		require.ErrorIs(t, err, agent.ErrMigrated)
		_, err = rt1.Retire(ctx, solver, "r")
		require.ErrorIs(t, err, agent.ErrMigrated)
		_, err = rt2.MigrateRoot(ctx, agent.RootID(w.fp), agent.RootID(v2fp), "again")
		require.ErrorIs(t, err, agent.ErrMigrated)
		require.Equal(t, seq, lastRootSeq(t, l, w.fp))
	})

	t.Run("ProcessStillOnOldRoot", func(t *testing.T) {
		// A process that only knows release 1 is told the root moved on.
		_, err := rt1.Resolve(ctx, ref)
		require.ErrorIs(t, err, agent.ErrMigrated)
		require.ErrorContains(t, err, v2fp[:12])
	})

	t.Run("NewRootTakesWrites", func(t *testing.T) {
		_, _, err := rt2.Create(ctx, agent.AgentRef{Root: agent.RootID(v2fp)}, agent.Spec{Name: "math_solver",
			Capabilities: []events.Capability{mathCap("sin")}})
		require.NoError(t, err)
		_, _, err = rt2.Create(ctx, agent.AgentRef{Root: agent.RootID(v2fp)}, agent.Spec{Name: "trig",
			Capabilities: []events.Capability{mathCap("tan")}})
		require.ErrorIs(t, err, agent.ErrEscalation, "release 2 does not hold tan")
	})
}

// A migration to a root of another name is refused before writing.
func TestMigrationKeepsTheRootName(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt := w.open()
	oldDef := events.RootDef{Name: "architect", Primer: "v1", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}
	old, err := rt.RegisterRoot(ctx, oldDef)
	require.NoError(t, err)
	other, err := rt.RegisterRoot(ctx, events.RootDef{Name: "librarian", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}})
	require.NoError(t, err)
	_, err = rt.MigrateRoot(ctx, old.Root, other.Root, "elsewhere")
	require.ErrorContains(t, err, "keeps the root's name")
	v2 := oldDef
	v2.Primer = "v2"
	next, err := rt.RegisterRoot(ctx, v2)
	require.NoError(t, err)
	_, err = rt.MigrateRoot(ctx, old.Root, next.Root, "release 2")
	require.NoError(t, err)
}
