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

// With no NATS URL the runtime embeds a JetStream server on its data
// directory, holds it exclusively, and finds its agents again after a
// restart.
func TestEmbeddedMode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	def := architectDef()
	open := func() (*agent.Runtime, error) {
		return agent.Open(ctx, agent.WithDataDir(dir), agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)))
	}

	rt, err := open()
	require.NoError(t, err)
	url := rt.URL()
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, url)
	root, err := rt.RegisterRoot(ctx, def)
	require.NoError(t, err)
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "math_solver", Primer: "You solve equations.",
		Capabilities: []events.Capability{mathCap("sin", "sqrt")}, Tasks: []events.TaskDef{solveTask()}})
	require.NoError(t, err)
	ref := agent.TaskRef{Root: root.Root, Path: solver.Path, Task: "solve_math_problem"}
	wantHash, _, err := rt.StateHash(ctx, root.Root)
	require.NoError(t, err)

	second, err := open()
	if second != nil {
		_ = second.Close()
	}
	require.ErrorIs(t, err, agent.ErrStoreLocked)
	require.ErrorContains(t, err, "nats://127.0.0.1:")
	require.ErrorContains(t, err, url, "the error names the URL the holder serves")

	// The data directory is still served by the first runtime.
	_, err = rt.Resolve(ctx, ref)
	require.NoError(t, err)
	require.NoError(t, rt.Close())

	rt, err = open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	_, err = rt.RegisterRoot(ctx, def)
	require.NoError(t, err)
	task, err := rt.Resolve(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, "You solve equations.", task.Primer)
	require.Equal(t, []string{"sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	hash, _, err := rt.StateHash(ctx, root.Root)
	require.NoError(t, err)
	require.Equal(t, wantHash, hash, "registering the root again after a restart wrote something")
	require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
		require.Equal(t, []string{"math_solver"}, reg.Paths())
		return nil
	}))
	// And it still takes writes: the path exists.
	_, _, err = rt.Create(ctx, root, agent.Spec{Name: "math_solver"})
	require.ErrorIs(t, err, agent.ErrExists)
}
