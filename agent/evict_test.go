package agent_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// TestMaxLoadedRoots: with a bound of 2, loading a third root drops the
// least recently used one; using it again reloads it with the same state.
func TestMaxLoadedRoots(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	rt, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithMaxLoadedRoots(2), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	defer rt.Close()
	var roots []string
	hashes := map[string]string{}
	for i := range 3 {
		r, err := rt.RegisterRoot(ctx, events.RootDef{Name: fmt.Sprintf("root%d", i)})
		require.NoError(t, err)
		_, _, err = rt.Create(ctx, r, agent.Spec{Name: "child"})
		require.NoError(t, err)
		h, _, err := rt.StateHash(ctx, r.Root)
		require.NoError(t, err)
		roots = append(roots, string(r.Root))
		hashes[string(r.Root)] = h
	}
	loaded := map[string]bool{}
	for _, s := range rt.Stats() {
		loaded[string(s.Root)] = true
	}
	require.Len(t, loaded, 2)
	require.False(t, loaded[roots[0]], "the least recently used root is dropped")
	h, _, err := rt.StateHash(ctx, agent.RootID(roots[0]))
	require.NoError(t, err)
	require.Equal(t, hashes[roots[0]], h)
	require.Len(t, rt.Stats(), 2)
}

// TestColdReadsEvictNothing: reads naming roots this process has not
// loaded (unknown ones, or a cold resolve) do not push loaded registries
// out of the bound.
func TestColdReadsEvictNothing(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	rt, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithMaxLoadedRoots(1), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	defer rt.Close()
	r, err := rt.RegisterRoot(ctx, events.RootDef{Name: "kept"})
	require.NoError(t, err)
	_, _, err = rt.Create(ctx, r, agent.Spec{Name: "child"})
	require.NoError(t, err)
	require.Len(t, rt.Stats(), 1)
	for i := range 20 {
		unknown := fmt.Sprintf("%064x", i+1)
		_, err := rt.Resolve(ctx, agent.TaskRef{Root: agent.RootID(unknown), Path: "x", Task: "t"})
		require.Error(t, err)
	}
	stats := rt.Stats()
	require.Len(t, stats, 1, "the loaded root stays loaded")
	require.Equal(t, r.Root, stats[0].Root)
}
