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
		roots = append(roots, r.Root)
		hashes[r.Root] = h
	}
	loaded := map[string]bool{}
	for _, s := range rt.Stats() {
		loaded[s.Root] = true
	}
	require.Len(t, loaded, 2)
	require.False(t, loaded[roots[0]], "the least recently used root is dropped")
	h, _, err := rt.StateHash(ctx, roots[0])
	require.NoError(t, err)
	require.Equal(t, hashes[roots[0]], h)
	require.Len(t, rt.Stats(), 2)
}
