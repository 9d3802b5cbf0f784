package faults_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestStreamFull opens the log with a small MaxBytes (the stream refuses
// new messages when full, it never drops old ones) and writes until an
// append fails. The error says the stream is full and names the limit;
// the write that failed stored nothing (not even part of its batch);
// everything acknowledged before is intact (the runtime's registry equals
// a fresh fold, every event reads back, no violation); and the runtime,
// and a fresh one, keep serving reads.
func TestStreamFull(t *testing.T) {
	ctx := context.Background()
	s := seed(t)
	const limit = 32 << 10
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	rt := openRuntime(t, url, agent.WithStream(natsstore.Config{MaxBytes: limit}))
	root, err := rt.RegisterRoot(ctx, rootDef("full"))
	require.NoError(t, err)
	l := newLoad(rt, root, s, 10*time.Second)
	for i := 0; l.step(ctx); i++ {
		require.Less(t, i, 10_000, "a stream of %d bytes still takes writes", limit)
	}
	attempts := l.snapshot()
	failed := attempts[len(attempts)-1]
	t.Logf("write %d (%s, %d events) failed: %v", len(attempts), failed.what, failed.events, failed.err)
	requireFull(t, failed.err, limit)

	lg := openLog(t, url, natsstore.Config{})
	state, err := lg.StreamState(ctx)
	require.NoError(t, err)
	require.LessOrEqual(t, state.Bytes, uint64(limit))
	st := agreeWith(t, ctx, lg, rt, string(root.Root), "the runtime after the stream filled up")
	st.requireUniqueIDs(t)
	require.Empty(t, st.reg.Violations)
	checkAttempts(t, st, attempts)
	require.Zero(t, st.corrs[failed.corr], "the write that failed stored events")
	require.Equal(t, state.Msgs, uint64(len(st.recs)), "every stored event reads back")

	// Writes go on failing cleanly (a write smaller than the one refused
	// may still fit) and store nothing.
	for i := range 3 {
		before, err := lg.StreamState(ctx)
		require.NoError(t, err)
		var do func(context.Context) error
		require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
			_, _, do = chooseWrite(reg, rt, root, l.rng, fmt.Sprintf("after_full_%d", i))
			return nil
		}))
		if err := do(ctx); err != nil {
			requireFull(t, err, limit)
			after, err := lg.StreamState(ctx)
			require.NoError(t, err)
			require.Equal(t, before.LastSeq, after.LastSeq, "a refused write stored something")
		}
	}

	// Reads go on: the registry, a resolve, and a fresh runtime's load.
	var ref agent.TaskRef
	require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
		for _, p := range reg.Paths() {
			if _, ok := reg.Agents[p].Tasks["t0"]; ok && !reg.Agents[p].Retired {
				ref = agent.TaskRef{Root: root.Root, Path: p, Task: "t0"}
			}
		}
		return nil
	}))
	require.NotEmpty(t, ref.Path, "some agent has task t0")
	task, err := rt.Resolve(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, ref, task.Ref)
	fresh := openRuntime(t, url)
	final := agreeWith(t, ctx, lg, fresh, string(root.Root), "a fresh runtime")
	agreeWith(t, ctx, lg, rt, string(root.Root), "the runtime")
	final.requireUniqueIDs(t)
	require.Empty(t, final.reg.Violations)
	t.Logf("stream of at most %d bytes full after %d writes: %d events (%d bytes) intact and readable, the refused write (%d events) stored none",
		limit, len(attempts)-1, len(final.recs), state.Bytes, failed.events)
}

// requireFull requires the error of a write the full stream refused: the
// sentinel, the server's reason, the stream and its limit.
func requireFull(t *testing.T, err error, limit int) {
	t.Helper()
	require.ErrorIs(t, err, natsstore.ErrFull)
	require.ErrorContains(t, err, "maximum bytes exceeded")
	require.ErrorContains(t, err, fmt.Sprintf("stream AGENTREG is full (maximum bytes exceeded, max_bytes %d)", limit))
}
