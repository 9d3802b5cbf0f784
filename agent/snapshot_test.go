package agent_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/snapshot"
)

// countingLog counts the records a runtime reads from the log (the tail's
// newest part comes from the follower's ring of recent records instead).
type countingLog struct {
	*natsstore.Log
	read atomic.Int64
}

func (c *countingLog) ReadRootUpTo(ctx context.Context, root string, from, bound uint64, fn func(events.Record) error) error {
	return c.Log.ReadRootUpTo(ctx, root, from, bound, func(r events.Record) error {
		c.read.Add(1)
		return fn(r)
	})
}

// Automatic snapshots are taken; a fresh runtime restores from the newest
// one to the writer's state hash, and skips a corrupt one.
func TestSnapshots(t *testing.T) {
	if *noFollow {
		t.Skip("a runtime that does not follow keeps no registry for its writes: it takes snapshots only when asked")
	}
	ctx := context.Background()
	w := newWorld(t)
	writer, root := w.openRegistered(agent.WithSnapshotEvery(5))
	tr := buildTree(t, writer, root)
	for i := range 8 {
		def := solveTask()
		def.Name = fmt.Sprintf("task_%d", i)
		_, _, err := writer.DefineTask(ctx, tr.parser, def)
		require.NoError(t, err)
	}
	wantHash, wantSeq, err := writer.StateHash(ctx, agent.RootID(w.fp))
	require.NoError(t, err)

	l := w.log()
	snaps, err := natsstore.OpenSnapshots(ctx, l)
	require.NoError(t, err)
	// Snapshots are built and stored in the background: wait for them.
	var headers []snapshot.Header
	require.Eventually(t, func() bool {
		headers, err = snaps.List(ctx, w.fp)
		require.NoError(t, err)
		return len(headers) >= 2
	}, 10*time.Second, 10*time.Millisecond, "with a snapshot every 5 events, %d events give at least two", wantSeq)
	for i, h := range headers {
		require.Equal(t, w.fp, h.Root)
		require.LessOrEqual(t, h.Seq, wantSeq)
		if i > 0 {
			require.Less(t, h.Seq, headers[i-1].Seq, "List is not newest first: %+v", headers)
		}
	}
	// The events: RootRegistered, one per create (2), 1 + 8 task definitions.
	const total = 12
	require.Equal(t, uint64(total), wantSeq)

	// fresh opens a runtime reading through a counting log; it registers
	// no root: StateHash needs none.
	fresh := func(t *testing.T) (*agent.Runtime, *countingLog, *syncBuffer) {
		t.Helper()
		cl := &countingLog{Log: w.log()}
		s, err := natsstore.OpenSnapshots(ctx, cl.Log)
		require.NoError(t, err)
		lg, buf := capturingLogger(t)
		rt, err := agent.Open(ctx, agent.WithLog(cl, s), agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(lg))
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt, cl, buf
	}

	t.Run("RestoreFromNewest", func(t *testing.T) {
		rt, cl, buf := fresh(t)
		hash, seq, err := rt.StateHash(ctx, agent.RootID(w.fp))
		require.NoError(t, err)
		require.Equal(t, wantSeq, seq)
		require.Equal(t, wantHash, hash)
		from, ok := rt.RestoredFrom(agent.RootID(w.fp))
		require.True(t, ok)
		require.Equal(t, headers[0], from, "did not restore from the newest snapshot")
		require.LessOrEqual(t, cl.read.Load(), int64(total-headers[0].Count), "read more of the log than the tail after the snapshot")
		require.NotContains(t, buf.String(), "snapshot skipped")
	})

	// Corrupt the newest snapshot's body in place: same object name,
	// flipped bytes.
	obj, err := l.JetStream().ObjectStore(ctx, "AGENTREG_SNAPSHOTS")
	require.NoError(t, err)
	body, err := obj.GetBytes(ctx, headers[0].Name())
	require.NoError(t, err)
	for i := range body {
		body[i] ^= 0xff
	}
	_, err = obj.PutBytes(ctx, headers[0].Name(), body)
	require.NoError(t, err)

	t.Run("CorruptNewestSkipped", func(t *testing.T) {
		rt, cl, buf := fresh(t)
		hash, seq, err := rt.StateHash(ctx, agent.RootID(w.fp))
		require.NoError(t, err)
		require.Equal(t, wantSeq, seq)
		require.Equal(t, wantHash, hash)
		from, ok := rt.RestoredFrom(agent.RootID(w.fp))
		require.True(t, ok)
		require.Equal(t, headers[1], from, "did not fall back to the next older snapshot")
		require.LessOrEqual(t, cl.read.Load(), int64(total-headers[1].Count), "read more of the log than the tail after the snapshot")
		require.Contains(t, buf.String(), "snapshot skipped")
		require.Contains(t, buf.String(), headers[0].Name())
		// The rebuilt state is the real one: refs resolve.
		_, err = rt.RegisterRoot(ctx, w.def)
		require.NoError(t, err)
		task, err := rt.Resolve(ctx, agent.TaskRef{Root: agent.RootID(w.fp), Path: tr.parser.Path, Task: "task_7"})
		require.NoError(t, err)
		require.Equal(t, []string{"sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	})

	t.Run("InvalidRoot", func(t *testing.T) {
		// A wildcard must not read every root's events into a snapshot.
		for _, bad := range []string{"*", ">", "", "ABC"} {
			_, err := writer.Snapshot(ctx, agent.RootID(bad))
			require.ErrorIs(t, err, agent.ErrInvalidName, "root %q", bad)
		}
		lister, err := obj.List(ctx)
		require.NoError(t, err)
		for _, o := range lister {
			require.True(t, strings.HasPrefix(o.Name, w.fp+"."), "stray snapshot object %q", o.Name)
		}
	})

	t.Run("ExplicitSnapshot", func(t *testing.T) {
		h, err := writer.Snapshot(ctx, agent.RootID(w.fp))
		require.NoError(t, err)
		require.Equal(t, wantSeq, h.Seq)
		require.Equal(t, uint64(total), h.Count)
		rt, cl, _ := fresh(t)
		hash, _, err := rt.StateHash(ctx, agent.RootID(w.fp))
		require.NoError(t, err)
		require.Equal(t, wantHash, hash)
		from, ok := rt.RestoredFrom(agent.RootID(w.fp))
		require.True(t, ok)
		require.Equal(t, h, from)
		require.Zero(t, cl.read.Load(), "a snapshot at the head leaves no tail to read")
	})
}
